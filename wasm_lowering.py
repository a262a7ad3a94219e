"""Load time: a decoded, validated module -> a flat micro-program -> prompt tokens.

Everything here is what a WebAssembly engine does when it loads a module: lay out frames and
globals, resolve branch targets, turn structured control flow into jumps, place data segments.
Nothing depends on the arguments' values or on the path execution will take.

Frame layout (slots hold one value each, i32 or i64): with frame base fb, a function with np
params has its header at fb-1, param i at fb-1-np+i, declared local j at fb+j and operand-stack
height h at fb+nlocals+h. A call at stack height h (arguments included) makes the callee's frame
base fb + nlocals + h + 1, so the caller's argument slots are the callee's parameters and the
callee's results land where the arguments were. Globals are absolute slots 0..G-1.
"""
from dataclasses import dataclass, field

try:
    from .wasm_binary import WasmError, decode_module
    from .wasm_vocab import INSTR_LEN, MAX_PAGES, N_PC, OP, TRAPS, instr_tokens, pc_token
except ImportError:  # loaded as a plain module
    from wasm_binary import WasmError, decode_module
    from wasm_vocab import INSTR_LEN, MAX_PAGES, N_PC, OP, TRAPS, instr_tokens, pc_token

class InvocationError(ValueError):
    """The module is fine but the call is not: an unknown export, wrong arguments."""


I32_BINARY = {
    "i32.add": "ADD", "i32.sub": "SUB", "i32.mul": "MUL", "i32.and": "AND", "i32.or": "OR", "i32.xor": "XOR",
    "i32.eq": "EQ", "i32.ne": "NE", "i32.lt_s": "LT_S", "i32.lt_u": "LT_U", "i32.gt_s": "GT_S",
    "i32.gt_u": "GT_U", "i32.le_s": "LE_S", "i32.le_u": "LE_U", "i32.ge_s": "GE_S", "i32.ge_u": "GE_U",
}
I64_BINARY = {"i64.add": "ADD64", "i64.sub": "SUB64", "i64.and": "AND64", "i64.or": "OR64", "i64.xor": "XOR64"}
I64_UNARY = {"i64.clz": "CLZ64", "i64.ctz": "CTZ64", "i64.popcnt": "POPCNT64"}
I64_COMPARE = {"i64.eq": "EQ64", "i64.ne": "NE64", "i64.lt_s": "LT_S64", "i64.lt_u": "LT_U64", "i64.gt_s": "GT_S64",
               "i64.gt_u": "GT_U64", "i64.le_s": "LE_S64", "i64.le_u": "LE_U64", "i64.ge_s": "GE_S64",
               "i64.ge_u": "GE_U64"}
I32_UNARY = {"i32.eqz": "EQZ", "i32.clz": "CLZ", "i32.ctz": "CTZ", "i32.popcnt": "POPCNT"}
# i32 operators that run as a few micro-instructions: (op, a slot, b slot, c slot, result slot) with
# slots relative to the first operand (a = +0, b = +1; +2.. are free scratch slots above them)
I32_SEQUENCES = {
    "i32.div_u": [("DIV_U", 0, 0)],
    "i32.rem_u": [("DIV_U", 0, 2), ("MSUB", 0, 0)],
    "i32.div_s": [("CHKOVF", 0, 0), ("ABS", 0, 2), ("ABS", 1, 3), ("DIV_U", 2, 2), ("SIGNFIX", 0, 0)],
    "i32.rem_s": [("ABS", 0, 2), ("ABS", 1, 3), ("DIV_U", 2, 4), ("MSUB", 2, 2), ("SIGNA", 0, 0)],
    "i32.shl": [("POW2", 1, 1), ("MUL", 0, 0)],
    "i32.shr_u": [("POW2", 1, 1), ("DIV_U", 0, 0)],
    "i32.shr_s": [("CNOT", 0, 2), ("POW2", 1, 3), ("DIV_U", 2, 2), ("SFIX", 0, 0)],
    # rotl a s = (a << s) | (a >> ((32 - s) mod 32)), the two halves being disjoint unless s == 0
    "i32.rotl": [("POW2N", 1, 3), ("MOVE32", 0, 2), ("DIV_U", 2, 2), ("POW2", 1, 1), ("MUL", 0, 0),
                 ("MOVE32", 2, 1), ("OR", 0, 0)],
    "i32.rotr": [("POW2", 1, 3), ("MOVE32", 0, 2), ("DIV_U", 2, 2), ("POW2N", 1, 1), ("MUL", 0, 0),
                 ("MOVE32", 2, 1), ("OR", 0, 0)],
}
LOADS = {"i32.load": "LOAD32", "i32.load8_s": "LOAD8_S", "i32.load8_u": "LOAD8_U",
         "i32.load16_s": "LOAD16_S", "i32.load16_u": "LOAD16_U", "i64.load": "LOAD64",
         "i64.load8_s": "LOAD64_8S", "i64.load8_u": "LOAD64_8U", "i64.load16_s": "LOAD64_16S",
         "i64.load16_u": "LOAD64_16U", "i64.load32_s": "LOAD64_32S", "i64.load32_u": "LOAD64_32U"}
EXTENDS = {"i32.extend8_s": ("EXT8S", "i32"), "i32.extend16_s": ("EXT16S", "i32"),
           "i64.extend8_s": ("EXT64_8S", "i64"), "i64.extend16_s": ("EXT64_16S", "i64"),
           "i64.extend32_s": ("EXT64_32S", "i64"), "i64.extend_i32_s": ("EXT64_32S", "i64")}
STORES = {"i32.store": "STORE32", "i32.store8": "STORE8", "i32.store16": "STORE16", "i64.store": "STORE64",
          "i64.store8": "STORE8", "i64.store16": "STORE16", "i64.store32": "STORE32"}
WIDE = {"i64": True, "i32": False}


@dataclass
class MicroInstr:
    op: object            # a wasm_vocab.MicroOp
    sa: int = 0
    sr: int = 0
    x: int = 0
    y: int = 0
    src: str = ""         # the WebAssembly instruction it came from, e.g. "f3+0x41 i32.add"


@dataclass
class Invocation:
    func: str
    args: tuple
    result_types: tuple
    enter_pc: int = 0
    error: str = ""               # why this invocation cannot run (non-strict lowering only)


@dataclass
class Program:
    instrs: list
    globals_init: list           # (slot, value as unsigned 64-bit int, type)
    data: list                   # (address, bytes)
    mem_pages: int
    fb_root: int
    invocations: list = field(default_factory=list)
    func_names: dict = field(default_factory=dict)

    def prompt_ids(self, k=0):
        """The prompt: the program, records that set up globals, data and memory size (shaped
        like trace records of prompt-only micro-instructions), then the ENTER record of
        invocation k (normally 0; later ones are appended after each run's EOS)."""
        ids = []
        for ins in self.instrs:
            ids += instr_tokens(ins.op.code, ins.sa, ins.sr, ins.x, ins.y)
        ids += self.enter_ids(0)          # a frame base for the set-up records below
        for pc, ins in enumerate(self.instrs):
            name = ins.op.name
            if name.startswith("GINIT"):
                value = ins.x | (ins.y << 32)
                ids += [pc_token(pc), *value.to_bytes(ins.op.width, "big")]
            elif name == "DATA":
                ids += [pc_token(pc), *self.data[ins.sa][1]]
            elif name == "MEMSIZE":
                ids += [pc_token(pc), *self.mem_pages.to_bytes(4, "big")]
        return ids + self.enter_ids(k)

    def enter_ids(self, k):
        """The record that starts invocation k: the runner appends it after the previous EOS."""
        return [pc_token(self.invocations[k].enter_pc), *self.fb_root.to_bytes(4, "big")]


def _table_elements(module, tableidx, ins):
    """The table's contents after instantiation: None for empty slots."""
    n_imported = sum(1 for imp in module.imports if imp.kind == "table")
    if tableidx < n_imported:
        raise WasmError("unsupported imported table", ins.offset)
    size = module.tables[tableidx][0]
    slots = [None] * size
    for seg_table, offset, items in module.elements:
        if seg_table != tableidx:
            continue
        start = _const_value(module, offset, [])
        if start + len(items) > size:
            raise WasmError("element segment does not fit the table", ins.offset)
        slots[start:start + len(items)] = items
    if any(f is not None and f < _n_imported_funcs(module) for f in slots):
        raise WasmError("unsupported imported function in a table", ins.offset)
    return slots


def _n_imported_funcs(module):
    return sum(1 for imp in module.imports if imp.kind == "func")


def _const_value(module, expr, globals_init):
    kind, val = expr[0], expr[1]
    if kind == "const":
        return val
    if kind == "global.get":
        for slot, value, _ in globals_init:
            if slot == val:
                return value
    raise WasmError(f"unsupported constant expression {kind}", 0)


class _Ctl:
    """A control frame of the function being lowered."""

    def __init__(self, kind, base, params=(), results=(), label_pc=None, dead=False):
        self.kind, self.base, self.params, self.results = kind, base, params, results
        self.label_pc = label_pc          # loops: the pc a branch jumps back to
        self.patches = []                 # jumps to the end of the block, patched at `end`
        self.else_jz = None               # ifs: the JZ that skips the then-branch
        self.dead = dead                  # the block itself sits in unreachable code

    @property
    def label_types(self):
        return self.params if self.kind == "loop" else self.results


class _FunctionLowering:
    def __init__(self, out, module, fn, callees, supported=None):
        self.out, self.module, self.fn, self.callees = out, module, fn, callees
        mem = module.memories[0] if module.memories else (0, 0)
        self.max_pages = min(mem[1] if mem[1] is not None else MAX_PAGES, MAX_PAGES)
        self.supported = supported
        self.np = len(fn.type.params)
        self.nl = len(fn.locals)
        self.local_types = list(fn.type.params) + list(fn.locals)
        self.types = []       # operand types by height, for reachable code

    def local_slot(self, i):
        return i - 1 - self.np if i < self.np else i - self.np

    def slot(self, h):
        return self.nl + h

    def emit(self, name, ins, **kw):
        if self.supported is not None and name not in self.supported:
            raise WasmError(f"unsupported instruction {ins.op} (not yet computed by the weights)", ins.offset)
        self.out.append(MicroInstr(OP[name], src=f"func {self.fn.index} @{ins.offset:#x} {ins.op}", **kw))
        return len(self.out) - 1

    def move(self, ins, ty, src_slot, dst_slot):
        self.emit("MOVE64" if self._wide(ty, ins) else "MOVE32", ins, sa=src_slot, sr=dst_slot)

    def branch(self, ins, h, depth, frames, conditional=False):
        """A (conditional) branch with the operand stack at height h (condition already popped)."""
        ctl = frames[-1 - depth]
        arity = len(ctl.label_types)
        moves = [(h - arity + k, ctl.base + k) for k in range(arity) if h - arity + k != ctl.base + k]
        if conditional and not moves:
            at = self.emit("JNZ", ins, sa=self.slot(h))
        else:
            skip = self.emit("JZ", ins, sa=self.slot(h)) if conditional else None
            for src, dst in moves:
                self.move(ins, self.types[src], self.slot(src), self.slot(dst))
            at = self.emit("JUMP", ins)
            if skip is not None:
                self.out[skip].y = len(self.out)
        if ctl.kind == "loop":
            self.out[at].y = ctl.label_pc
        else:
            ctl.patches.append(at)

    def br_table(self, ins, h, depths, frames):
        """BRTABLE jumps to entry min(index, n) of a jump table; entries whose branch moves values
        jump on to a stub that moves them, then to the label."""
        self.emit("BRTABLE", ins, sa=self.slot(h), x=len(depths) - 1, y=len(self.out) + 1)
        entries = [self.emit("JUMP", ins) for _ in depths]
        for at, depth in zip(entries, depths):
            ctl = frames[-1 - depth]
            arity = len(ctl.label_types)
            if any(h - arity + k != ctl.base + k for k in range(arity)):
                self.out[at].y = len(self.out)
                self.branch(ins, h, depth, frames)
            elif ctl.kind == "loop":
                self.out[at].y = ctl.label_pc
            else:
                ctl.patches.append(at)

    def do_return(self, ins, h):
        results = self.fn.type.results
        for k, ty in enumerate(results):
            self.move(ins, ty, self.slot(h - len(results) + k), k - 1 - self.np)
        self.emit("RET", ins)

    def dispatch_tables(self):
        """One table per call_indirect: entry i jumps to element i's function or traps as
        wasmtime does; the last entry (index out of range) traps with undefined element."""
        for at, ft, tableidx, ins in self.dispatch:
            elements = _table_elements(self.module, tableidx, ins)
            self.out[at].y, self.out[at].sr = len(self.out), len(elements)
            for func in elements:
                if func is None:
                    self.emit("TRAP", ins, x=TRAPS.index("uninitialized element"))
                elif self.module.func_types[func] != ft:
                    self.emit("TRAP", ins, x=TRAPS.index("indirect call type mismatch"))
                else:
                    self.callees.append((self.emit("JUMP", ins), func))
            self.emit("TRAP", ins, x=TRAPS.index("undefined element: out of bounds table access"))

    def run(self):
        self.dispatch = []
        frames = [_Ctl("func", 0, results=self.fn.type.results)]
        for ins in self.fn.body:
            op, h = ins.op, ins.height
            if op == "end":
                self.end(frames, ins)
            elif op == "else":
                ctl = frames[-1]
                if not ctl.dead:
                    if h is not None:
                        ctl.patches.append(self.emit("JUMP", ins))
                    self.out[ctl.else_jz].y = len(self.out)
                    ctl.else_jz = None
                    del self.types[ctl.base:]
                    self.types += list(ctl.params)
            elif h is None:
                if op in ("block", "loop", "if"):
                    frames.append(_Ctl(op, 0, dead=True))
            else:
                del self.types[h:]
                self.step(ins, op, h, frames)
        self.dispatch_tables()
        return self.out

    def end(self, frames, ins):
        ctl = frames.pop()
        if ctl.kind == "func":          # branches to the function's label return from it
            for at in ctl.patches:
                self.out[at].y = len(self.out)
            if ins.height is not None or ctl.patches:
                self.do_return(ins, len(self.fn.type.results))
            return
        if ctl.dead:
            return
        if ctl.else_jz is not None:
            self.out[ctl.else_jz].y = len(self.out)
        for at in ctl.patches:
            self.out[at].y = len(self.out)
        del self.types[ctl.base:]
        self.types += list(ctl.results)

    def step(self, ins, op, h, frames):
        types, slot = self.types, self.slot
        if op in ("nop", "drop"):
            return
        if op in ("block", "loop", "if"):
            ft = ins.imm[0]
            if op == "if":
                h -= 1
                ctl = _Ctl("if", h - len(ft.params), ft.params, ft.results)
                ctl.else_jz = self.emit("JZ", ins, sa=slot(h))
            else:
                ctl = _Ctl(op, h - len(ft.params), ft.params, ft.results,
                           label_pc=len(self.out) if op == "loop" else None)
            frames.append(ctl)
            return
        if op == "br":
            self.branch(ins, h, ins.imm[0], frames)
        elif op == "br_if":
            self.branch(ins, h - 1, ins.imm[0], frames, conditional=True)
        elif op == "return":
            self.do_return(ins, h)
        elif op == "unreachable":
            self.emit("UNREACHABLE", ins)
        elif op == "call":
            f = ins.imm[0]
            ft = self.module.func_types[f]
            if f < _n_imported_funcs(self.module):
                raise WasmError("unsupported call to an imported function", ins.offset)
            self.callees.append((self.emit("CALL", ins, x=slot(h) + 1), f))
            del types[h - len(ft.params):]
            types += list(ft.results)
        elif op == "call_indirect":
            typeidx, tableidx = ins.imm
            ft = self.module.types[typeidx]
            h -= 1                                         # the table index, on top of the arguments
            at = self.emit("CALLI", ins, sa=-1, x=slot(h) + 1)
            self.dispatch.append((at, ft, tableidx, ins))
            del types[h - len(ft.params):]
            types += list(ft.results)
        elif op == "local.get":
            i = ins.imm[0]
            ty = self.local_types[i]
            wide = self._wide(ty, ins)
            name = ("LGET" if i >= self.np else "MOVE") + ("64" if wide else "32")
            self.emit(name, ins, sa=self.local_slot(i), sr=slot(h))
            types.append(ty)
        elif op in ("local.set", "local.tee"):
            i = ins.imm[0]
            self.move(ins, self.local_types[i], slot(h - 1), self.local_slot(i))
            if op == "local.set":
                types.pop()
        elif op == "global.get":
            g = ins.imm[0]
            ty = self.module.global_types[g][0]
            self.emit("GGET64" if self._wide(ty, ins) else "GGET32", ins, sa=g, sr=slot(h))
            types.append(ty)
        elif op == "global.set":
            g = ins.imm[0]
            ty = self.module.global_types[g][0]
            self.emit("GSET64" if self._wide(ty, ins) else "GSET32", ins, sa=slot(h - 1), sr=g)
            types.pop()
        elif op == "i32.const":
            self.emit("CONST32", ins, x=ins.imm[0] & 0xFFFFFFFF, sr=slot(h))
            types.append("i32")
        elif op == "i64.const":
            v = ins.imm[0] & 0xFFFFFFFFFFFFFFFF
            self.emit("CONST64", ins, x=v & 0xFFFFFFFF, y=v >> 32, sr=slot(h))
            types.append("i64")
        elif op in I32_SEQUENCES:
            base = slot(h - 2)
            for name, a, r in I32_SEQUENCES[op]:
                self.emit(name, ins, sa=base + a, sr=base + r)
            types.pop()
        elif op in I32_BINARY:
            self.emit(I32_BINARY[op], ins, sa=slot(h - 2), sr=slot(h - 2))
            types.pop()
        elif op in I64_BINARY or op in I64_COMPARE:
            self.emit(I64_BINARY.get(op) or I64_COMPARE[op], ins, sa=slot(h - 2), sr=slot(h - 2))
            types.pop()
            types[h - 2] = "i64" if op in I64_BINARY else "i32"
        elif op in I64_UNARY:
            self.emit(I64_UNARY[op], ins, sa=slot(h - 1), sr=slot(h - 1))
        elif op == "i64.eqz":
            self.emit("EQZ64", ins, sa=slot(h - 1), sr=slot(h - 1))
            types[h - 1] = "i32"
        elif op in I32_UNARY:
            self.emit(I32_UNARY[op], ins, sa=slot(h - 1), sr=slot(h - 1))
        elif op in ("select", "select_t"):
            name = "SELECT64" if self._wide(types[h - 3], ins) else "SELECT32"
            self.emit(name, ins, sa=slot(h - 3), sr=slot(h - 3))
            del types[h - 2:]
        elif op in LOADS:
            self.emit(LOADS[op], ins, sa=slot(h - 1), sr=slot(h - 1), x=ins.imm[0][1] if isinstance(ins.imm[0], tuple) else ins.imm[1])
            types[h - 1] = "i64" if op.startswith("i64") else "i32"
        elif op in STORES:
            self.emit(STORES[op], ins, sa=slot(h - 2), x=ins.imm[0][1] if isinstance(ins.imm[0], tuple) else ins.imm[1])
            del types[h - 2:]
        elif op in EXTENDS:
            name, ty = EXTENDS[op]
            self.emit(name, ins, sa=slot(h - 1), sr=slot(h - 1))
            types[h - 1] = ty
        elif op == "memory.size":
            self.emit("MSIZE", ins, sr=slot(h))
            types.append("i32")
        elif op == "memory.grow":                  # result into a scratch slot, grow, move it down
            top = self.max_pages
            self.emit("GROWCHK", ins, sa=slot(h - 1), sr=slot(h), x=top)
            self.emit("GROW", ins, sa=slot(h - 1), x=top)
            self.emit("MOVE32", ins, sa=slot(h), sr=slot(h - 1))
        elif op == "br_table":
            labels, default = ins.imm
            self.br_table(ins, h - 1, list(labels) + [default], frames)
        elif op == "i32.wrap_i64":
            self.emit("MOVE32", ins, sa=slot(h - 1), sr=slot(h - 1))
            types[h - 1] = "i32"
        elif op == "i64.extend_i32_u":
            self.emit("MOVE64", ins, sa=slot(h - 1), sr=slot(h - 1))
            types[h - 1] = "i64"
        else:
            raise WasmError(f"unsupported instruction {op}", ins.offset)

    def _wide(self, ty, ins):
        if ty not in WIDE:
            raise WasmError(f"unsupported value type {ty}", ins.offset)
        return WIDE[ty]


SPECTEST_GLOBALS = {"global_i32": 666, "global_i64": 666}


def _stub(instrs, module, k, func, ft, args, entry, by_index, supported):
    """ENTER, [start], the arguments, CALL, RESULT per result, HALT; then every function the call
    can reach that is not laid out yet."""
    src = "invoke"
    instrs.append(MicroInstr(OP["ENTER"], src=src))
    callees = []
    if k == 0 and module.start is not None:
        instrs.append(MicroInstr(OP["CALL"], x=1, src="start"))
        callees.append((len(instrs) - 1, module.start))
    for i, (ty, v) in enumerate(args):
        if ty == "i64":
            v &= 0xFFFFFFFFFFFFFFFF
            instrs.append(MicroInstr(OP["CONST64"], sr=i, x=v & 0xFFFFFFFF, y=v >> 32, src=src))
        elif ty == "i32":
            instrs.append(MicroInstr(OP["CONST32"], sr=i, x=v & 0xFFFFFFFF, src=src))
        else:
            raise WasmError(f"unsupported argument type {ty}", 0)
    instrs.append(MicroInstr(OP["CALL"], x=len(args) + 1, src=src))
    callees.append((len(instrs) - 1, func))
    nres = len(ft.results)
    for i, ty in enumerate(ft.results):
        if ty not in WIDE:
            raise WasmError(f"unsupported result type {ty}", 0)
        instrs.append(MicroInstr(OP["RESULT64" if WIDE[ty] else "RESULT32"], sa=i, sr=nres + i, src=src))
    instrs.append(MicroInstr(OP["HALT"], src=src))
    while callees:
        at, f = callees.pop()
        if f not in entry:
            if f < _n_imported_funcs(module):
                raise WasmError("unsupported call to an imported function", 0)
            entry[f] = len(instrs)
            _FunctionLowering(instrs, module, by_index[f], callees, supported).run()
        instrs[at].y = entry[f]


def lower(module, invocations, strict=True, supported=None):
    """module: a decoded wasm_binary.Module; invocations: [(export name, [(type, value), ...]), ...].
    supported: the micro-op names the weights compute (None: all); strict=False turns an invocation
    that needs anything unsupported into one that stops at once, with `Invocation.error` saying why.

    Returns the Program whose prompt runs invocation 0; `Program.enter_ids(k)` starts invocation k
    in the same trace, so later calls see the memory and globals earlier calls left behind."""
    mem_pages = 0
    if module.memories:
        mem_pages = module.memories[0][0]
        if mem_pages > MAX_PAGES:
            raise WasmError(f"unsupported memory of {mem_pages} pages (at most {MAX_PAGES})", 0)
    globals_init = []
    for g, imp in enumerate(i for i in module.imports if i.kind == "global"):
        if imp.module != "spectest" or imp.name not in SPECTEST_GLOBALS:
            raise WasmError(f"unsupported global import {imp.module}.{imp.name}", 0)
        globals_init.append((g, SPECTEST_GLOBALS[imp.name], imp.desc[0]))
    for gl in module.globals:
        if gl.type not in WIDE:
            globals_init.append((len(globals_init), 0, gl.type))
            continue
        mask = 0xFFFFFFFF if gl.type == "i32" else 0xFFFFFFFFFFFFFFFF
        value = _const_value(module, gl.init, globals_init) & mask
        globals_init.append((len(globals_init), value, gl.type))
    n_globals = len(globals_init)
    data = []
    for memidx, offset_expr, blob in module.data:
        addr = _const_value(module, offset_expr, globals_init) & 0xFFFFFFFF
        if addr + len(blob) > mem_pages * 65536:
            raise WasmError("data segment does not fit: out of bounds memory access", 0)
        data.append((addr, bytes(blob)))

    fb_root = n_globals + 1
    instrs = []
    for slot, value, ty in globals_init:
        wide = WIDE.get(ty)
        if wide is None:
            continue                      # a float global: never read by integer code
        instrs.append(MicroInstr(OP["GINIT64" if wide else "GINIT32"], sr=slot,
                                 x=value & 0xFFFFFFFF, y=value >> 32, src=f"global {slot}"))
    for i, (addr, blob) in enumerate(data):
        if blob:
            instrs.append(MicroInstr(OP["DATA"], sa=i, x=addr, src=f"data segment {i}"))
    instrs.append(MicroInstr(OP["MEMSIZE"], src="memory"))
    entry, invs = {}, []
    by_index = {f.index: f for f in module.funcs}
    for k, (name, args) in enumerate(invocations):
        exp = module.exports.get(name)
        if exp is None or exp[0] != "func":
            funcs = ", ".join(n for n, (kind, _) in module.exports.items() if kind == "func") or "none"
            raise InvocationError(f"unknown export {name!r} (exported functions: {funcs})")
        ft = module.func_types[exp[1]]
        if len(args) != len(ft.params) or any(t != p for (t, _), p in zip(args, ft.params)):
            want = " ".join(ft.params) or "nothing"
            got = " ".join(t for t, _ in args) or "nothing"
            raise InvocationError(f"{name!r} takes {want}, got {got}")
        inv = Invocation(name, tuple(v for _, v in args), tuple(ft.results), len(instrs))
        invs.append(inv)
        mark, known = len(instrs), dict(entry)
        try:
            _stub(instrs, module, k, exp[1], ft, args, entry, by_index, supported)
        except WasmError as e:
            if strict:
                raise
            del instrs[mark + 1:]                       # keep ENTER + HALT: a stub that just stops
            instrs.append(MicroInstr(OP["HALT"], src=f"invoke {name}"))
            entry.clear()
            entry.update(known)
            inv.error = str(e)
    if len(instrs) > N_PC:
        raise WasmError(f"unsupported: the program needs {len(instrs)} micro-instructions (at most {N_PC})", 0)
    names = {idx: name for name, (kind, idx) in module.exports.items() if kind == "func"}
    return Program(instrs, globals_init, data, mem_pages, fb_root, invs, names)


def load_program(wasm_bytes, invocations, strict=True, supported=None):
    return lower(decode_module(wasm_bytes), invocations, strict, supported)
