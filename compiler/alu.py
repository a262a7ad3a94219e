"""What each value-producing micro-op computes, as exact integer quantities.

Every op maps to (lo, hi): the low and high 32 bits of the value its record emits (stores: the
bytes written; frame records: the new frame base and, for RET, the return pc). Bitwise ops read
byte tables through cross attention (compiler/tables.py); MUL sums byte products and reduces
them mod 2**32 with a floor table; DIV_U's quotient bytes come from the output layer's exact
floor division (see `division_terms`). Adding an op means adding its line here (and its
micro-op in wasm_vocab and the reference interpreter, and its lowering); the weights' list of
supported micro-ops follows from the graph reading the op's flag.
"""
from . import tables
from .graph import lin
from .primitives import GATE, equals, step, when

TWO32 = 1 << 32


def piecewise(g, name, x, f, lo, hi, cond=()):
    """The exact piecewise-linear interpolation of integer function f on integers lo..hi."""
    w = when(*cond)
    neurons = [(1, 1 + w, f(lo))] if f(lo) else []
    slope = 0
    for i in range(lo, hi):
        s = f(i + 1) - f(i)
        if s != slope:
            neurons.append((s - slope, x - i + w, 1))
            slope = s
    return g.ffn(name, neurons or [(0, lin(0), 0)])


def lookup(m, name, index):
    """A cross head reading table row `index` (an exact row number) of the constant memory."""
    return m.g.head(name, "cross", q=(index, 1), k=(2 * m.t, -m.t2), v=(m.tok_byte, 0))[0]


def floor_key(m):
    """Keys of the floor table: row R_FLOOR + i sits at the odd centre C = 512 i + 255, so the row
    nearest to u = 2x is i = floor(x / 256)."""
    r = tables.R_FLOOR
    C = 512 * (m.t - r) + 255
    C_sq = 262144 * m.t2 + (261120 - 524288 * r) * m.t + (262144 * r * r - 261120 * r + 65025)
    return 2 * C, -C_sq


def build(m):
    g, f = m.g, m.f
    a, b, c = m.a_lo, m.b_lo, m.c_lo
    A, Bb = m.a_bytes, m.b_bytes
    carry = step(g, "alu.add_carry", a + b, TWO32)
    lt_u = step(g, "alu.lt_u", b - a, 1)
    gt_u = step(g, "alu.gt_u", a - b, 1)
    lt_s = step(g, "alu.lt_s", m.b_slo - m.a_slo, 1)
    gt_s = step(g, "alu.gt_s", m.a_slo - m.b_slo, 1)
    eq = equals(g, "alu.eq", a - b)
    m.a_zero = g.ffn("alu.a_is_zero", [(1, 1 - a, 1)])
    c_zero = g.ffn("alu.c_is_zero", [(1, 1 - c, 1)])
    a_neg = step(g, "alu.a_neg", -m.a_slo, 1)
    b_neg = step(g, "alu.b_neg", -m.b_slo, 1)
    pick_b = g.ffn("alu.select_lo", [(1, 1 - c, b - a)])
    pick_b_hi = g.ffn("alu.select_hi", [(1, 1 - c, m.b_hi - m.a_hi)])
    # a declared local counts only if written in this frame (after the call that made it)
    local_hit = equals(g, "alu.local_slot_hit", m.a_wA - m.A_a)
    local_fresh = step(g, "alu.local_in_frame", m.a_wt - m.h_t, 1)
    abs_a = g.ffn("alu.abs", [(1, m.a_slo, 1), (1, -m.a_slo, 1)])
    # the product of two operands is formed only where MSUB needs it (elsewhere it could exceed
    # 2**53); there it is at most a
    bc = g.ffn("alu.b_times_c", [(1, c + when(f["MSUB"]), b)])
    clz = 32 - sum((step(g, f"alu.clz_{j}", a, 1 << j) for j in range(32)), lin(0))
    # MUL: column sums of byte products; the top column is reduced mod 256 with a floor table
    cols = [g.ffn(f"alu.mul_col{k}", [(1, A[i], Bb[k - i]) for i in range(k + 1)]) for k in range(4)]
    top_div = g.head("alu.mul_floor", "cross", q=(2 * cols[3], 1), k=floor_key(m), v=(m.t - tables.R_FLOOR, 0))[0]
    # byte-table lookups: AND (and so OR, XOR), POPCNT, CTZ
    def row_terms(ops, X, Y):
        """Table rows for byte k: AND/OR/XOR read the AND table, POPCNT and CTZ their own."""
        terms = []
        for k in range(4):
            t = [(1, 1 + when(f[op]), tables.R_AND + 256 * X[k] + Y[k]) for op in ops[:3]]
            t += [(1, 1 + when(f[ops[3]]), tables.R_POP + X[k]), (1, 1 + when(f[ops[4]]), tables.R_CTZ + X[k])]
            terms.append(t)
        return terms
    i32_ops, i64_ops = ("AND", "OR", "XOR", "POPCNT", "CTZ"), ("AND64", "OR64", "XOR64", "POPCNT64", "CTZ64")
    low = [t32 + t64 for t32, t64 in zip(row_terms(i32_ops, A, Bb), row_terms(i64_ops, A, Bb))]
    q = [g.ffn(f"alu.lookup_row{k}", low[k]) for k in range(4)]
    L = [lookup(m, f"alu.lookup{k}", q[k]) for k in range(4)]
    AH, BH = m.a_hbytes, m.b_hbytes                        # the high halves' bytes, second bank
    qh = [g.ffn(f"alu.lookup_hi_row{k}", t) for k, t in enumerate(row_terms(i64_ops, AH, BH))]
    LH = [lookup(m, f"alu.lookup_hi{k}", qh[k]) for k in range(4)]
    # i64 bit counts: trailing zeros continue into the high half when the low half is zero
    hi_zero_below = [g.ffn(f"alu.hi_bytes_zero{k}", [(1, 1 - a - sum(AH[:k], lin(0)), 1)]) for k in range(4)]
    clz_hi = 32 - sum((step(g, f"alu.clz_hi_{j}", m.a_hi, 1 << j) for j in range(32)), lin(0))
    hi_is_zero = g.ffn("alu.hi_is_zero", [(1, 1 - m.a_hi, 1)])
    prefix_zero = [lin(1)] + [g.ffn(f"alu.low_bytes_zero{k}", [(1, 1 - sum(A[:k], lin(0)), 1)]) for k in (1, 2, 3)]
    # POW2 / POW2N: 2**s = 2**(s mod 8) * 256**(s div 8), s from the low byte of a
    pow_row = g.ffn("alu.pow_row", [(1, 1 + when(f["POW2"]), tables.R_POW + A[0]),
                                     (1, 1 + when(f["POW2N"]), tables.R_POW + 256 - A[0])])
    pow_r = lookup(m, "alu.pow", pow_row)
    byte_of_shift = []
    for qq in range(4):
        up = piecewise(g, f"alu.shift_bytes{qq}", A[0], lambda x: int((x % 32) // 8 == qq), 0, 255, [f["POW2"]])
        dn = piecewise(g, f"alu.shift_bytes_n{qq}", A[0], lambda x: int(((-x) % 32) // 8 == qq), 0, 255, [f["POW2N"]])
        byte_of_shift.append(up + dn)

    # sign extensions, memory.size / memory.grow, br_table's clamped index
    s8 = step(g, "alu.byte0_neg", A[0], 128)
    s16 = step(g, "alu.low16_neg", m.a_lo16, 1 << 15)
    fits = step(g, "alu.grow_fits", m.x - m.pages - a, 0)
    m.brtable_over = g.ffn("alu.brtable_over", [(1, a - m.x + when(f["BRTABLE"]), 1)])
    m.calli_over = g.ffn("alu.calli_over", [(1, a - m.sr + when(f["CALLI"]), 1)])
    ones = TWO32 - 1
    # i64: the high halves decide unless equal
    h_lt_u = step(g, "alu.hi_lt_u", m.b_hi - m.a_hi, 1)
    h_gt_u = step(g, "alu.hi_gt_u", m.a_hi - m.b_hi, 1)
    h_lt_s = step(g, "alu.hi_lt_s", m.b_shi - m.a_shi, 1)
    h_gt_s = step(g, "alu.hi_gt_s", m.a_shi - m.b_shi, 1)
    h_eq = equals(g, "alu.hi_eq", m.a_hi - m.b_hi)
    h_wrap = step(g, "alu.hi_add_wraps", m.a_hi + m.b_hi, TWO32)
    h_full = equals(g, "alu.hi_add_is_max", m.a_hi + m.b_hi - ones)
    eqz64 = g.ffn("alu.eqz64", [(1, 1 - a - m.a_hi, 1)])

    a64 = (a, m.a_hi)
    and_ = sum((L[k] * 256 ** k for k in range(4)), lin(0))
    S = cols[0] + 256 * cols[1] + 65536 * cols[2] + (1 << 24) * (cols[3] - 256 * top_div)
    results = {
        "CONST32": (m.x, 0), "CONST64": (m.x, m.y), "GINIT32": (m.x, 0), "GINIT64": (m.x, m.y),
        "MOVE32": (a, 0), "MOVE64": a64, "GGET32": (a, 0), "GGET64": a64, "GSET32": (a, 0), "GSET64": a64,
        "RESULT32": (a, 0), "RESULT64": a64, "LGET32": (a, 0), "LGET64": a64,
        "ADD": (a + b - TWO32 * carry, 0), "SUB": (a - b + TWO32 * lt_u, 0),
        "EQ": (eq, 0), "NE": (1 - eq, 0), "EQZ": (m.a_zero, 0),
        "LT_U": (lt_u, 0), "GT_U": (gt_u, 0), "LE_U": (1 - gt_u, 0), "GE_U": (1 - lt_u, 0),
        "LT_S": (lt_s, 0), "GT_S": (gt_s, 0), "LE_S": (1 - gt_s, 0), "GE_S": (1 - lt_s, 0),
        "SELECT32": (a + pick_b, 0), "SELECT64": (a + pick_b, m.a_hi + pick_b_hi),
        "STORE8": (m.b_lo8, 0), "STORE16": (m.b_lo16, 0), "STORE32": (b, 0), "STORE64": (b, m.b_hi),
        "CALL": (m.fb + m.x, 0), "CALLI": (m.fb + m.x, 0), "RET": (m.h_fb, m.h_pc + 1),
        "AND": (and_, 0), "OR": (a + b - and_, 0), "XOR": (a + b - 2 * and_, 0),
        "POPCNT": (sum(L, lin(0)), 0), "CLZ": (clz, 0), "ABS": (abs_a, 0), "MSUB": (a - bc, 0),
        "EXT8S": (A[0] + (TWO32 - 256) * s8, 0), "EXT16S": (m.a_lo16 + (TWO32 - 65536) * s16, 0),
        "EXT64_8S": (A[0] + (TWO32 - 256) * s8, ones * s8), "EXT64_16S": (m.a_lo16 + (TWO32 - 65536) * s16, ones * s16),
        "EXT64_32S": (a, ones * a_neg), "MSIZE": (m.pages, 0),
    }
    extra = {"LGET32": [local_hit, local_fresh], "LGET64": [local_hit, local_fresh]}
    lo_terms, hi_terms = [], []
    for name, (lo, hi) in results.items():
        gate = 1 + when(f[name], *extra.get(name, []))
        lo_terms.append((1, gate, lo))
        if not (isinstance(hi, int) and hi == 0):
            hi_terms.append((1, gate, hi))
    # ops whose value needs a condition inside the selection
    fm = f["MUL"]
    lo_terms.append((1, 1 + when(fm), S))
    # S < 2**35; its wraps past 2**32 are counted in a dim of their own (a step with coefficient
    # 2**32 would form products past 2**53) and subtracted where the value is emitted
    wraps = []
    for j in range(1, 8):
        wraps += [(1, S - j * TWO32 + 1 + when(fm), 1), (-1, S - j * TWO32 + when(fm), 1)]
    m.X_wraps = g.ffn("alu.mul_wraps", wraps)
    lo_terms += [(1, prefix_zero[k] + when(f["CTZ"]), L[k]) for k in range(4)]
    and_hi = sum((LH[k] * 256 ** k for k in range(4)), lin(0))
    lo_terms += [(1, 1 + when(f["AND64"]), and_), (1, 1 + when(f["OR64"]), a + b - and_),
                 (1, 1 + when(f["XOR64"]), a + b - 2 * and_), (1, 1 + when(f["POPCNT64"]), sum(L + LH, lin(0))),
                 (1, 1 + when(f["CLZ64"]), clz_hi), (1, 1 + when(f["CLZ64"], hi_is_zero), clz)]
    lo_terms += [(1, prefix_zero[k] + when(f["CTZ64"]), L[k]) for k in range(4)]
    lo_terms += [(1, hi_zero_below[k] + when(f["CTZ64"]), LH[k]) for k in range(4)]
    hi_terms += [(1, 1 + when(f["AND64"]), and_hi), (1, 1 + when(f["OR64"]), m.a_hi + m.b_hi - and_hi),
                 (1, 1 + when(f["XOR64"]), m.a_hi + m.b_hi - 2 * and_hi)]
    lo_terms += [(1, pow_r + when(f[op], byte_of_shift[k]), 256 ** k) for k in range(4) for op in ("POW2", "POW2N")]
    for op, src in (("CNOT", a), ("SFIX", c)):              # a < 0 ? ~src : src
        lo_terms += [(1, 1 + when(f[op]), src), (1, 1 + when(f[op], a_neg), TWO32 - 1 - 2 * src)]
    fs = f["SIGNFIX"]                                       # signs differ ? -c mod 2**32 : c
    lo_terms.append((1, 1 + when(fs), c))
    for p, n in ((a_neg, b_neg), (b_neg, a_neg)):
        lo_terms += [(1, 1 + when(fs, p) - GATE * n, TWO32 - 2 * c), (-TWO32, 1 + when(fs, p, c_zero) - GATE * n, 1)]
    fg, fk = f["GROW"], f["GROWCHK"]                        # grow: the new size; the result: old size or -1
    lo_terms += [(1, 1 + when(fg), m.pages), (1, 1 + when(fg, fits), a),
                 (1, 1 + when(fk), ones), (1, 1 + when(fk, fits), m.pages - ones)]
    # 64-bit comparisons (i32 results): high-half flag, or equal high halves and the low-half flag
    for name, hi_flag, lo_flag, negate in (("LT_U64", h_lt_u, lt_u, False), ("GT_U64", h_gt_u, gt_u, False),
                                           ("GE_U64", h_lt_u, lt_u, True), ("LE_U64", h_gt_u, gt_u, True),
                                           ("LT_S64", h_lt_s, lt_u, False), ("GT_S64", h_gt_s, gt_u, False),
                                           ("GE_S64", h_lt_s, lt_u, True), ("LE_S64", h_gt_s, gt_u, True)):
        sgn = -1 if negate else 1
        lo_terms += [(1, 1 + when(f[name]), (1 - hi_flag) if negate else hi_flag),
                     (sgn, 1 + when(f[name], h_eq, lo_flag), 1)]
    lo_terms += [(1, 1 + when(f["EQ64"], h_eq, eq), 1), (1, 1 + when(f["NE64"]), 1),
                 (-1, 1 + when(f["NE64"], h_eq, eq), 1), (1, 1 + when(f["EQZ64"]), eqz64)]
    fadd, fsub = f["ADD64"], f["SUB64"]
    lo_terms += [(1, 1 + when(fadd), a + b - TWO32 * carry), (1, 1 + when(fsub), a - b + TWO32 * lt_u)]
    hi_terms += [(1, 1 + when(fadd), m.a_hi + m.b_hi + carry - TWO32 * h_wrap),
                 (-TWO32, 1 + when(fadd, h_full, carry), 1),
                 (1, 1 + when(fsub), m.a_hi - m.b_hi - lt_u + TWO32 * h_lt_u),
                 (TWO32, 1 + when(fsub, h_eq, lt_u), 1)]
    fa = f["SIGNA"]                                         # a < 0 ? -c mod 2**32 : c
    lo_terms += [(1, 1 + when(fa), c), (1, 1 + when(fa, a_neg), TWO32 - 2 * c), (-TWO32, 1 + when(fa, a_neg, c_zero), 1)]
    m.X_lo = g.ffn("alu.X_lo", lo_terms)
    m.X_hi = g.ffn("alu.X_hi", hi_terms)
    # traps raised before the first payload byte
    m.alu_traps = {
        "integer divide by zero": g.ffn("trap.div_zero", [(1, 1 - b + when(f["DIV_U"], m.o[0]), 1)]),
    }
    b_max = step(g, "alu.b_is_minus1", b, TWO32 - 1)
    a_min = equals(g, "alu.a_is_int_min", a - (1 << 31))
    m.overflow_parts = (b_max, a_min)


def division_terms(m, role):
    """DIV_U payload byte i = floor(A / B): A = floor(a / 256**(3-i)) - b * (quotient so far), B = b."""
    A_terms, B_terms = [], []
    for i in range(4):
        k = 3 - i
        high = sum((m.a_bytes[j] * 256 ** (j - k) for j in range(k, 4)), lin(0))
        A_terms.append((1, 1 + when(role[i]), high))
        A_terms += [(-(256 ** (i - p)), m.w[p + 1] + when(role[i]), m.b_lo) for p in range(i)]
        B_terms.append((1, 1 + when(role[i]), m.b_lo))
    return A_terms, B_terms
