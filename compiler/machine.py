"""The interpreter's semantics as a computation graph.

Layer by layer (each quantity lands in the first layer where its inputs exist):
  1  rec:       the latest record marker -> this record's pc and start; offset inside the record
  2  win.c:     the byte at offset c of the current record (c = 1..13): record fields and values
  3  fetch:     the micro-instruction at the record's pc (op, sa, sr, x, y) from the prompt
  4  frame:     the frame base fb (latest frame record) and the memory size
  5  operands:  slot values by "latest write to slot" (parabolic keys), the frame header
  6  memory:    bytes of linear memory by "latest write to address"
  7  emit:      the next token: a payload byte (floor division done by the output layer), the
                next pc, a trap or EOS
Op semantics live in `alu.py` (one function per group of micro-ops); this file is the plumbing.
"""
from wasm_vocab import (EOS, FB_LIMIT, INSTR, INSTR_LEN, LOADS, MAX_PAGES, MICRO_OPS, N_PC, OP, PC_BASE,
                        SLOT_BIAS, TRAP_BASE, TRAPS, VOCAB_SIZE)

from . import alu
from .graph import Graph, lin
from .primitives import GATE, both, equals, gated, member, step, tent_neurons, when

BIG = 1 << 50         # logit bias of the token class to emit (traps: 2 BIG)
KEY_OFF = 1 << 40     # key penalty for tokens that are not writers of the kind a head looks for
MEM_KEY_OFF = 1 << 50
WINDOW = INSTR_LEN - 1
OPS_BY_KIND = {}
for _m in MICRO_OPS:
    OPS_BY_KIND.setdefault(_m.kind, []).append(_m)


def be(bytes_):
    """Big-endian number from byte expressions."""
    total = lin(0)
    for b in bytes_:
        total = total * 256 + b
    return total


class _ReadFlags(dict):
    """The op flags; remembers which ops the graph gives a meaning to (reads the flag of)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)


class Machine:
    """Builds the graph; attributes are the named quantities later sections use."""

    def __init__(self):
        self.g = Graph()
        self.tokens()
        self.records()
        self.fetch()
        self.frames()
        self.operands()
        alu.build(self)
        self.memory()
        self.emit()
        # the micro-ops these weights compute: those the graph reads the flag of, and the prompt's
        # own records (recognised by their op code)
        self.supported = self.f.read | {"ENTER", "MEMSIZE"}

    # ---- layer 0: what each token is ---------------------------------------------------
    def tokens(self):
        g = self.g
        self.tok_byte = g.embed("tok.byte", lambda i: i if i < 256 else 0)
        self.is_marker = g.embed("tok.is_marker", lambda i: int(i == INSTR or i >= PC_BASE))
        self.is_instr_tok = g.embed("tok.is_instr", lambda i: int(i == INSTR))
        self.is_byte = g.embed("tok.is_byte", lambda i: int(i < 256))
        self.pc_val = g.embed("tok.pc", lambda i: i - PC_BASE if i >= PC_BASE else 0)
        self.tok_ok = g.embed("tok.byte_or_pc", lambda i: int(i < 256 or i >= PC_BASE))
        self.is_trap_tok = g.embed("tok.is_trap", lambda i: int(TRAP_BASE <= i < TRAP_BASE + len(TRAPS)))
        self.t = g.position("pos.t", "t")
        self.t2 = g.position("pos.t2", "t2")

    # ---- layers 1-2: records, offsets and windows ----------------------------------------
    def records(self):
        g = self.g
        mk = (self.is_marker, 0)
        self.rec_t, self.rec_pc = g.head("rec", "hardmax", q=(1, 0), k=mk, v=(self.t, self.pc_val))
        self.rec_instr, _ = g.head("rec.kind", "hardmax", q=(1, 0), k=mk, v=(self.is_instr_tok, 0))
        self.in_pc = 1 - self.rec_instr                 # inside a PC record (not the program)
        off = self.t - self.rec_t
        self.off = off
        off_sq = g.ffn("rec.off_sq", [(1, off, off)])
        self.o = {c: equals(g, f"rec.off_is_{c}", off - c) for c in range(WINDOW + 1)}
        self.off_ge1 = step(g, "rec.off_ge1", off, 1)
        self.w = {c: g.head(f"win.{c}", "hardmax", q=(c, 1), k=(2 * off, -off_sq), v=(self.tok_byte, 0))[0]
                  for c in range(1, WINDOW + 1)}
        w, o = self.w, self.o
        # the value a record's last payload byte holds (4- or 8-byte payloads)
        self.W4 = be(w[c] for c in range(1, 5))
        W8 = be(w[c] for c in range(5, 9))
        self.wlo = g.ffn("wr.lo", [(1, o[4], self.W4), (1, o[8], W8)])
        self.whi = gated(g, "wr.hi", [o[8]], self.W4)
        self.wlo16 = g.ffn("wr.lo16", [(1, o[4], be([w[3], w[4]])), (1, o[8], be([w[7], w[8]]))])
        self.wlo8 = g.ffn("wr.lo8", [(1, o[4], w[4]), (1, o[8], w[8])])
        self.wbytes = [self.wlo8] + [g.ffn(f"wr.byte{k}", [(1, o[4], w[4 - k]), (1, o[8], w[8 - k])]) for k in (1, 2, 3)]
        self.whbytes = [gated(g, f"wr.hi_byte{k}", [o[8]], w[4 - k]) for k in range(4)]
        sign = g.ffn("wr.sign", [(1, w[1] - 127 + when(o[4]), 1), (-1, w[1] - 128 + when(o[4]), 1),
                                 (1, w[5] - 127 + when(o[8]), 1), (-1, w[5] - 128 + when(o[8]), 1)])
        self.wslo = self.wlo - (1 << 32) * sign
        sign_hi = g.ffn("wr.sign_hi", [(1, w[1] - 127 + when(o[8]), 1), (-1, w[1] - 128 + when(o[8]), 1)])
        self.wshi = self.whi - (1 << 32) * sign_hi
        # a frame record's new frame base: bytes 1-4 (ENTER, CALL) or 3-6 (RET)
        # (zero inside the program records, so the frame base is sane everywhere)
        self.wfb = g.ffn("wr.fb", [(1, o[4] + self.in_pc - 1, self.W4),
                                   (1, o[6] + self.in_pc - 1, be(w[c] for c in range(3, 7)))])

    # ---- layer 3: the micro-instruction ---------------------------------------------------
    def fetch(self):
        g, w = self.g, self.w
        q = (INSTR_LEN * self.rec_pc + INSTR_LEN - 1, 1)
        k = (2 * self.t, -self.t2)
        f_sa = be([w[2], w[3]]) - SLOT_BIAS
        f_sr = be([w[4], w[5]]) - SLOT_BIAS
        self.op, self.sa = g.head("fetch.op_sa", "hardmax", q=q, k=k, v=(w[1], f_sa))
        self.sr, self.x = g.head("fetch.sr_x", "hardmax", q=q, k=k, v=(f_sr, be(w[c] for c in range(6, 10))))
        self.y, _ = g.head("fetch.y", "hardmax", q=q, k=k, v=(be(w[c] for c in range(10, 14)), 0))
        self.f = _ReadFlags({m.name: equals(g, f"op.{m.name}", self.op - m.code, cond=[self.in_pc])
                             for m in MICRO_OPS})
        o = self.o
        self.wr_frame = g.ffn("wr.is_frame", tent_neurons(self.op - OP["ENTER"].code, cond=[self.in_pc, o[4]])
                              + tent_neurons(self.op - OP["CALL"].code, cond=[self.in_pc, o[4]])
                              + tent_neurons(self.op - OP["CALLI"].code, cond=[self.in_pc, o[4]])
                              + tent_neurons(self.op - OP["RET"].code, cond=[self.in_pc, o[6]]))
        self.wr_hdr = g.ffn("wr.is_header", tent_neurons(self.op - OP["CALL"].code, cond=[self.in_pc, o[4]])
                            + tent_neurons(self.op - OP["CALLI"].code, cond=[self.in_pc, o[4]]))
        self.wr_msz = g.ffn("wr.is_memsize", tent_neurons(self.op - OP["MEMSIZE"].code, cond=[self.in_pc, o[4]])
                            + tent_neurons(self.op - OP["GROW"].code, cond=[self.in_pc, o[4]]))
        vals = {n: [m.code for m in MICRO_OPS if m.kind in ("value", "load") and m.width == n] for n in (4, 8)}
        v4, v8 = self._m("op.value4", vals[4]), self._m("op.value8", vals[8])
        self.wr_value = g.ffn("wr.is_value", [(1, v4 + o[4] - 1, 1), (1, v8 + o[8] - 1, 1)])

    def _m(self, name, codes):
        """A cached membership flag of the current op."""
        if name not in self.g.names:
            return member(self.g, name, self.op, codes, cond=[self.in_pc])
        return lin(self.g.names[name])

    # ---- layer 4: frames --------------------------------------------------------------------
    def frames(self):
        g, f = self.g, self.f
        self.fb, _ = g.head("frame", "hardmax", q=(1, 0), k=(self.wr_frame, 0), v=(self.wfb, 0))
        msz = gated(g, "wr.memsize", [self.wr_msz], self.W4)
        self.pages, _ = g.head("memsize", "hardmax", q=(1, 0), k=(self.wr_msz, 0), v=(msz, 0))
        absolute_src = f["GGET32"] + f["GGET64"]
        absolute_dst = f["GSET32"] + f["GSET64"] + f["GINIT32"] + f["GINIT64"]
        self.A_a = gated(g, "slot.a_base", [1 - absolute_src], self.fb) + self.sa
        fb_r = g.ffn("slot.r_base", [(1, 1 - absolute_dst, self.fb)])
        self.A_r = fb_r + self.sr
        # A_r^2 = fb (fb + 2 sr) [not absolute] + sr^2
        self.A_r_sq = g.ffn("slot.r_sq", [(1, self.fb + when(1 - absolute_dst), self.fb + 2 * self.sr),
                                          (1, self.sr, self.sr), (1, -self.sr, -self.sr)])
        z = self.fb + self.x - FB_LIMIT - 1
        self.t_stack = g.ffn("trap.stack", [(1, z + 1 + when(f[c], self.o[0]), 1) for c in ("CALL", "CALLI")]
                             + [(-1, z + when(f[c], self.o[0]), 1) for c in ("CALL", "CALLI")])

    # ---- layer 5: operands and the frame header --------------------------------------------
    def operands(self):
        g = self.g
        k = (2 * self.A_r, -self.A_r_sq - KEY_OFF * (1 - self.wr_value))

        def read(name, slot, *pairs):
            return [g.head(f"{name}.{i}", "hardmax", q=(slot, 1), k=k, v=v) for i, v in enumerate(pairs)]

        (self.a_lo, self.a_hi), (self.a_slo, self.a_lo16), (self.a_wt, self.a_wA) = read(
            "opa", self.A_a, (self.wlo, self.whi), (self.wslo, self.wlo16), (self.t, self.A_r))
        (self.b_lo, self.b_hi), (self.b_slo, self.b_lo16), (self.b_lo8, self.b_shi) = read(
            "opb", self.A_a + 1, (self.wlo, self.whi), (self.wslo, self.wlo16), (self.wlo8, self.wshi))
        ((self.a_shi, _),) = read("opa.shi", self.A_a, (self.wshi, 0))
        hb = self.whbytes
        self.a_hbytes = [x for pair in read("opa.hi_bytes", self.A_a, (hb[0], hb[1]), (hb[2], hb[3])) for x in pair]
        self.b_hbytes = [x for pair in read("opb.hi_bytes", self.A_a + 1, (hb[0], hb[1]), (hb[2], hb[3])) for x in pair]
        ((self.c_lo, self.c_slo),) = read("opc", self.A_a + 2, (self.wlo, self.wslo))
        wb = self.wbytes
        self.a_bytes = [x for pair in read("opa.bytes", self.A_a, (wb[0], wb[1]), (wb[2], wb[3])) for x in pair]
        self.b_bytes = [x for pair in read("opb.bytes", self.A_a + 1, (wb[0], wb[1]), (wb[2], wb[3])) for x in pair]
        # (the square only where a header is written: elsewhere wfb may be any 32-bit value)
        hdr_sq = g.ffn("wr.hdr_sq", [(1, self.wfb - 1 + when(self.wr_hdr), self.wfb - 1)])
        kh = (2 * (self.wfb - 1), -hdr_sq - KEY_OFF * (1 - self.wr_hdr))
        qh = (self.fb - 1, 1)
        self.h_fb, self.h_pc = g.head("header", "hardmax", q=qh, k=kh, v=(self.wfb - self.x, self.rec_pc))
        self.h_t, _ = g.head("header.t", "hardmax", q=qh, k=kh, v=(self.t, 0))

    # ---- layer 6: linear memory -----------------------------------------------------------
    def memory(self):
        g, f, o = self.g, self.f, self.o
        E = self.a_lo + self.x
        self.E = E
        self.E_c = E - g.ffn("mem.clamp", [(1, E - 65536 * MAX_PAGES, 1)])   # (only out-of-bounds E is cut)
        mem_bytes = 65536 * self.pages
        oob = []
        for m in OPS_BY_KIND["load"] + OPS_BY_KIND["store"]:
            w = LOADS[m.name][0] if m.kind == "load" else m.width
            z = E + w - mem_bytes - 1 + when(f[m.name], o[0])
            oob += [(1, z + 1, 1), (-1, z, 1)]
        self.t_oob = g.ffn("trap.oob", oob)
        # writers: store bytes (most significant first) and data-segment bytes
        addr_terms, sq_terms, roles = [], [], []
        for m in OPS_BY_KIND["store"]:
            for i in range(1, m.width + 1):
                # (a byte token: a trap record puts TRAP and EOS where a store's bytes would be)
                role = both(g, f"mem.role.{m.name}.{i}", f[m.name], o[i], self.is_byte)
                roles.append(role)
                addr = E + (m.width - i)
                addr_terms.append((1, 1 + when(role), addr))
                sq_terms.append((1, addr + when(role), addr))
        role = both(g, "mem.role.DATA", f["DATA"], self.off_ge1, self.is_byte)
        roles.append(role)
        addr = self.x + self.off - 1
        addr_terms.append((1, 1 + when(role), addr))
        sq_terms.append((1, addr + when(role), addr))
        maddr = g.ffn("mem.addr", addr_terms)
        maddr_sq = g.ffn("mem.addr_sq", sq_terms)
        wr_mem = sum(roles, lin(0))
        k = (2 * maddr, -maddr_sq - MEM_KEY_OFF * (1 - wr_mem))
        self.mb, self.mvalid = [], []
        for i in range(8):
            b, a = g.head(f"mem.{i}", "hardmax", q=(self.E_c + i, 1), k=k, v=(self.tok_byte, maddr))
            self.mb.append(b)
            self.mvalid.append(equals(g, f"mem.hit.{i}", a - self.E_c - i))

    # ---- layer 7: the next token ------------------------------------------------------------
    def emit(self):
        g, f, o, w = self.g, self.f, self.o, self.w
        ok = self.tok_ok
        roles_B, A_terms, byte_roles = [], [], []
        # payload bytes of values, stores and frame records: floor((X - prefix) / B)
        payload_ops = {}
        for m in MICRO_OPS:
            if m.kind in ("value", "store", "frame", "memsize") and m.name not in ("ENTER", "DIV_U"):
                payload_ops.setdefault(m.width, []).append(m.code)
        for n, codes in payload_ops.items():
            grp = self._m(f"op.payload{n}", codes)
            for i in range(n):
                role = both(g, f"emit.role.{n}.{i}", grp, o[i], ok)
                byte_roles.append(role)
                hi = n > 4 and i < n - 4
                first = 0 if hi else max(0, n - 4)
                top = (n - 5) if hi else (n - 1)
                prefix = sum((w[j + 1] * 256 ** (top - j) for j in range(first, i)), lin(0))
                X = self.X_hi if hi else self.X_lo - (1 << 32) * self.X_wraps
                A_terms.append((1, role, X - prefix))
                roles_B.append(role * 256 ** (top - i))
        # loads: each payload byte is a memory byte, a sign byte or zero
        for m in OPS_BY_KIND["load"]:
            n = m.width
            wbytes, signed = LOADS[m.name]
            for i in range(n):
                role = both(g, f"emit.role.{m.name}.{i}", f[m.name], o[i], ok)
                byte_roles.append(role)
                roles_B.append(role * 1)
                k = n - 1 - i
                if k < wbytes:
                    A_terms.append((1, 1 + when(role, self.mvalid[k]), self.mb[k]))
                elif signed:
                    s = wbytes - 1
                    A_terms += [(255, self.mb[s] - 127 + when(role, self.mvalid[s]), 1),
                                (-255, self.mb[s] - 128 + when(role, self.mvalid[s]), 1)]
        # DIV_U: quotient bytes by long division, floor(A / b)
        div_roles = [both(g, f"emit.role.DIV_U.{i}", f["DIV_U"], o[i], ok) for i in range(4)]
        byte_roles += div_roles
        dA, dB = alu.division_terms(self, div_roles)
        self.A = g.ffn("emit.A", A_terms + dA)
        self.B = sum(roles_B, lin(0)) + g.ffn("emit.B", dB)
        self.emit_byte = sum(byte_roles, lin(0))
        # the next pc, at the end of a record
        ends = {}
        for m in MICRO_OPS:
            if m.name not in ("HALT", "UNREACHABLE", "DATA"):
                ends.setdefault(m.width, []).append(m.code)
        at_end = [both(g, f"emit.end.{n}", self._m(f"op.width{n}", codes), o[n], ok) for n, codes in ends.items()]
        self.emit_pc = sum(at_end, lin(0))
        nxt = self.rec_pc + 1
        z = self.a_zero
        jump = self.y - nxt
        self.next_pc = g.ffn("emit.next_pc", [
            (1, self.emit_pc, nxt),
            (1, 1 + when(self.emit_pc, f["JUMP"]), jump),
            (1, 1 + when(self.emit_pc, f["CALL"]), jump),
            (1, 1 + when(self.emit_pc, f["JZ"], z), jump),
            (1, 1 + when(self.emit_pc, f["JNZ"]), jump),
            (-1, 1 + when(self.emit_pc, f["JNZ"], z), jump),
            (1, 1 + when(self.emit_pc, f["RET"]), be([w[1], w[2]]) - nxt),
            (1, 1 + when(self.emit_pc, f["BRTABLE"]), self.y + self.a_lo - self.brtable_over - nxt),
            (1, 1 + when(self.emit_pc, f["CALLI"]), self.y + self.a_lo - self.calli_over - nxt),
        ])
        self.emit_eos = both(g, "emit.eos", f["HALT"], o[0], ok) + self.is_trap_tok
        self.traps = {name: lin(0) for name in TRAPS}
        self.traps["wasm `unreachable` instruction executed"] = both(g, "trap.unreachable", f["UNREACHABLE"], o[0], ok)
        self.traps["out of bounds memory access"] = self.t_oob
        for i, name in enumerate(TRAPS):           # TRAP x: the trap of a dispatch-table entry
            self.traps[name] = self.traps[name] + equals(g, f"trap.op.{i}", self.x - i, cond=[f["TRAP"], o[0], ok])
        self.traps["call stack exhausted"] = self.t_stack
        self.traps["integer overflow"] = both(g, "trap.overflow", *self.overflow_parts, f["CHKOVF"], o[0], ok)
        for name, flag in self.alu_traps.items():
            self.traps[name] = self.traps[name] + flag

    def logits(self):
        """token id -> Lin over the final residual."""
        out = {}
        for v in range(256):
            out[v] = BIG * self.emit_byte + 2 * v * self.A + v - (v * v + v) * self.B
        for p in range(N_PC):
            out[PC_BASE + p] = BIG * self.emit_pc + 2 * p * self.next_pc - p * p
        out[EOS] = BIG * self.emit_eos
        for i, name in enumerate(TRAPS):
            out[TRAP_BASE + i] = 2 * BIG * self.traps[name]
        for v in range(VOCAB_SIZE):
            out.setdefault(v, lin(-BIG))
        return out
