"""Executor 1 of 3: a plain-Python interpreter of the micro-program that writes the exact token
trace the transformer must generate. It shares nothing with the weight compiler but the
vocabulary, so a disagreement points at the semantics, not at the construction."""
from wasm_vocab import EOS, EXTENDS, FB_LIMIT, LOADS, OP, TRAPS, pc_token, trap_token

M32, M64 = (1 << 32) - 1, (1 << 64) - 1


def _s32(v):
    return v - (1 << 32) if v >> 31 else v


def _clz(v):
    return 32 - v.bit_length()


def _ctz(v):
    return 32 if v == 0 else (v & -v).bit_length() - 1


def _alu(name, a, b, c):
    """Value micro-ops on u32 operands; returns the result or the name of a trap."""
    sa, sb, sc = _s32(a), _s32(b), _s32(c)
    if name == "DIV_U" and b == 0:
        return "integer divide by zero"
    table = {
        "ADD": lambda: a + b, "SUB": lambda: a - b, "MUL": lambda: a * b, "DIV_U": lambda: a // b,
        "AND": lambda: a & b, "OR": lambda: a | b, "XOR": lambda: a ^ b,
        "EQ": lambda: int(a == b), "NE": lambda: int(a != b),
        "LT_S": lambda: int(sa < sb), "LT_U": lambda: int(a < b), "GT_S": lambda: int(sa > sb),
        "GT_U": lambda: int(a > b), "LE_S": lambda: int(sa <= sb), "LE_U": lambda: int(a <= b),
        "GE_S": lambda: int(sa >= sb), "GE_U": lambda: int(a >= b),
        "EQZ": lambda: int(a == 0), "CLZ": lambda: _clz(a), "CTZ": lambda: _ctz(a),
        "POPCNT": lambda: bin(a).count("1"),
        "POW2": lambda: 1 << (a & 31), "POW2N": lambda: 1 << ((32 - (a & 31)) & 31),
        "ABS": lambda: abs(sa), "CNOT": lambda: ~a if sa < 0 else a, "SFIX": lambda: ~c if sa < 0 else c,
        "SIGNFIX": lambda: -c if (sa < 0) != (sb < 0) else c,
        "SIGNA": lambda: -c if sa < 0 else c, "MSUB": lambda: a - b * c,
    }
    return table[name]() & M32


def _s64(v):
    return v - (1 << 64) if v >> 63 else v


I64_OPS = {
    "ADD64": lambda a, b: a + b, "SUB64": lambda a, b: a - b,
    "AND64": lambda a, b: a & b, "OR64": lambda a, b: a | b, "XOR64": lambda a, b: a ^ b,
    "CLZ64": lambda a, b: 64 - a.bit_length(), "CTZ64": lambda a, b: 64 if a == 0 else (a & -a).bit_length() - 1,
    "POPCNT64": lambda a, b: bin(a).count("1"),
    "EQZ64": lambda a, b: int(a == 0), "EQ64": lambda a, b: int(a == b), "NE64": lambda a, b: int(a != b),
    "LT_U64": lambda a, b: int(a < b), "GT_U64": lambda a, b: int(a > b),
    "LE_U64": lambda a, b: int(a <= b), "GE_U64": lambda a, b: int(a >= b),
    "LT_S64": lambda a, b: int(_s64(a) < _s64(b)), "GT_S64": lambda a, b: int(_s64(a) > _s64(b)),
    "LE_S64": lambda a, b: int(_s64(a) <= _s64(b)), "GE_S64": lambda a, b: int(_s64(a) >= _s64(b)),
}


class ReferenceMachine:
    """Runs a wasm_lowering.Program one micro-instruction at a time, keeping the state (slots,
    memory, frames) across invocations exactly as the trace does."""

    def __init__(self, program):
        self.p = program
        self.mem = bytearray(program.mem_pages * 65536)
        for addr, blob in program.data:
            self.mem[addr:addr + len(blob)] = blob
        self.slots = {slot: value for slot, value, _ in program.globals_init}
        self.written_in = {}     # slot -> serial of the frame that last wrote it
        self.headers = {}        # header slot -> (caller fb, call pc, caller serial)
        self.steps = 0
        self.next_serial = 0     # frames are numbered across invocations: a new frame never
                                 # mistakes a slot written by an earlier one for its own

    def run(self, k=0, max_tokens=None):
        """Generated tokens of invocation k (after its ENTER record, which is prompt)."""
        out = []
        inv = self.p.invocations[k]
        self.fb, self.serial = self.p.fb_root, self.next_serial
        self.next_serial += 1
        pc = inv.enter_pc + 1
        while max_tokens is None or len(out) < max_tokens:
            out.append(pc_token(pc))
            pc, payload, end = self.step(pc)
            out += payload
            if end:
                break
        return out if max_tokens is None else out[:max_tokens]

    def write_slot(self, slot, value):
        self.slots[slot] = value
        self.written_in[slot] = self.serial

    def step(self, pc):
        """Execute instruction pc; return (next pc, payload tokens, finished)."""
        ins = self.p.instrs[pc]
        name, kind, width = ins.op.name, ins.op.kind, ins.op.width
        self.steps += 1
        fb = self.fb
        a = self.slots.get(fb + ins.sa, 0)
        if name in ("GGET32", "GGET64"):
            a = self.slots[ins.sa]
        b = self.slots.get(fb + ins.sa + 1, 0)
        c = self.slots.get(fb + ins.sa + 2, 0)
        trap = None
        if kind in ("value", "load"):
            wide = width == 8
            if name.startswith("CONST"):
                v = ins.x | (ins.y << 32)
            elif name.startswith(("MOVE", "GGET", "GSET", "RESULT")):
                v = a
            elif name.startswith("LGET"):
                v = a if self.written_in.get(fb + ins.sa) == self.serial else 0
            elif name.startswith("SELECT"):
                v = a if c & M32 else b
            elif name in LOADS:
                w, signed = LOADS[name]
                addr = (a & M32) + ins.x
                if addr + w > len(self.mem):
                    trap = "out of bounds memory access"
                else:
                    v = int.from_bytes(self.mem[addr:addr + w], "little")
                    if signed and v >> (8 * w - 1):
                        v -= 1 << (8 * w)
            elif name in I64_OPS:
                v = I64_OPS[name](a & M64, b & M64)
            elif name in EXTENDS:
                bits = EXTENDS[name]
                v = a & ((1 << bits) - 1)
                v = v - (1 << bits) if v >> (bits - 1) else v
            elif name == "MSIZE":
                v = len(self.mem) // 65536
            elif name == "GROWCHK":
                pages = len(self.mem) // 65536
                v = pages if pages + (a & M32) <= ins.x else -1
            else:
                v = _alu(name, a & M32, b & M32, c & M32)
                if isinstance(v, str):
                    trap = v
            if trap is None:
                v &= M64 if wide else M32
                dest = ins.sr if name.startswith("GSET") else fb + ins.sr
                self.write_slot(dest, v)
                return pc + 1, list(v.to_bytes(width, "big")), False
        elif kind == "store":
            addr = (a & M32) + ins.x
            if addr + width > len(self.mem):
                trap = "out of bounds memory access"
            else:
                v = b & ((1 << (8 * width)) - 1)
                self.mem[addr:addr + width] = v.to_bytes(width, "little")
                return pc + 1, list(v.to_bytes(width, "big")), False
        elif name == "TRAP":
            trap = TRAPS[ins.x]
        elif name in ("CALL", "CALLI"):
            new_fb = fb + ins.x
            if new_fb > FB_LIMIT:
                trap = "call stack exhausted"
            else:
                index = self.slots.get(new_fb - 1, 0)
                self.headers[new_fb - 1] = (fb, pc, self.serial)
                self.fb, self.serial = new_fb, self.next_serial
                self.next_serial += 1
                self.written_in[new_fb - 1] = self.serial
                target = ins.y
                if name == "CALLI":                       # the index sits where the header now is
                    target += min(index & M32, ins.sr)
                return target, list(new_fb.to_bytes(4, "big")), False
        elif name == "RET":
            caller_fb, call_pc, caller_serial = self.headers[fb - 1]
            self.fb, self.serial = caller_fb, caller_serial
            ret = call_pc + 1
            return ret, [*ret.to_bytes(2, "big"), *caller_fb.to_bytes(4, "big")], False
        elif name == "GROW":
            pages = len(self.mem) // 65536
            if pages + (a & M32) <= ins.x:
                self.mem.extend(bytes(65536 * (a & M32)))
                pages += a & M32
            return pc + 1, list(pages.to_bytes(4, "big")), False
        elif name == "JUMP":
            return ins.y, [], False
        elif name == "BRTABLE":
            return ins.y + min(a & M32, ins.x), [], False
        elif name in ("JZ", "JNZ"):
            taken = ((a & M32) == 0) == (name == "JZ")
            return (ins.y if taken else pc + 1), [], False
        elif name == "CHKOVF":
            if (a & M32, b & M32) == (0x80000000, 0xFFFFFFFF):
                trap = "integer overflow"
            else:
                return pc + 1, [], False
        elif name == "UNREACHABLE":
            trap = "wasm `unreachable` instruction executed"
        elif name == "HALT":
            return pc, [EOS], True
        else:
            raise NotImplementedError(name)
        return pc, [trap_token(trap), EOS], True


def reference_trace(program, k=0, max_tokens=None):
    return ReferenceMachine(program).run(k, max_tokens)
