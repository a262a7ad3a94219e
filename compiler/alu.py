"""What each value-producing micro-op computes, as exact integer quantities.

Every op maps to (lo, hi): the low and high 32 bits of the value its record emits (stores: the
bytes written; frame records: the new frame base and, for RET, the return pc). Adding an op
means adding its line here (and its micro-op in wasm_vocab / its lowering).
"""
from .primitives import equals, step, when

TWO32 = 1 << 32


def build(m):
    g, f = m.g, m.f
    a, b, c = m.a_lo, m.b_lo, m.c_lo
    carry = step(g, "alu.add_carry", a + b, TWO32)
    lt_u = step(g, "alu.lt_u", b - a, 1)
    gt_u = step(g, "alu.gt_u", a - b, 1)
    lt_s = step(g, "alu.lt_s", m.b_slo - m.a_slo, 1)
    gt_s = step(g, "alu.gt_s", m.a_slo - m.b_slo, 1)
    eq = equals(g, "alu.eq", a - b)
    m.a_zero = g.ffn("alu.a_is_zero", [(1, 1 - a, 1)])
    pick_b = g.ffn("alu.select_lo", [(1, 1 - c, b - a)])
    pick_b_hi = g.ffn("alu.select_hi", [(1, 1 - c, m.b_hi - m.a_hi)])
    # a declared local counts only if written in this frame (after the call that made it)
    local_hit = equals(g, "alu.local_slot_hit", m.a_wA - m.A_a)
    local_fresh = step(g, "alu.local_in_frame", m.a_wt - m.h_t, 1)

    a64 = (a, m.a_hi)
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
        "CALL": (m.fb + m.x, 0), "RET": (m.h_fb, m.h_pc + 1),
    }
    extra = {"LGET32": [local_hit, local_fresh], "LGET64": [local_hit, local_fresh]}
    lo_terms, hi_terms = [], []
    for name, (lo, hi) in results.items():
        gate = 1 + when(f[name], *extra.get(name, []))
        lo_terms.append((1, gate, lo))
        if not (isinstance(hi, int) and hi == 0):
            hi_terms.append((1, gate, hi))
    m.X_lo = g.ffn("alu.X_lo", lo_terms)
    m.X_hi = g.ffn("alu.X_hi", hi_terms)
    m.alu_traps = {}
    m.supported = set(results) | {"HALT", "UNREACHABLE", "JUMP", "JZ", "JNZ", "ENTER", "MEMSIZE", "DATA",
                                  "LOAD32", "LOAD8_S", "LOAD8_U", "LOAD16_S", "LOAD16_U", "LOAD64"}
