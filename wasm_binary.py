"""Decoder and validator for WebAssembly binary modules (standard library only).

Scope: MVP 1.0 binary format and validation, plus sign-extension ops, the
non-trapping float-to-int ops (0xFC 0-7), multi-value, mutable-global
import/export, the reference-types parts the spec corpus uses (funcref/externref,
several tables, call_indirect's table index, select t, table.get/set, ref.null/
is_null/func), passive/declarative segments and the data count section.  Other
post-MVP instructions (0xFC 8-17 bulk-memory/table ops, SIMD, ...) raise a
WasmError starting with 'unsupported'.  At most one memory; at most 50000 locals.

Segments: Module.elements holds (tableidx, offset, items) and Module.data holds
(memidx, offset, bytes).  offset is an init-expression tuple ('const', v) or
('global.get', i) for active segments; passive/declarative segments have
tableidx/memidx None and offset ('passive',) or ('declarative',).  Element items
are function indices (None for ref.null, ('global.get', i) for a global).
Instr.imm for memory.size/grow is (0,) (the memory index); for select t it is (t,).

Everything is iterative (no recursion) and every failure, whatever the input
bytes, is reported as WasmError('<what> at byte offset N').
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional

__all__ = ('WasmError', 'FuncType', 'Instr', 'Function', 'Global', 'Import',
           'Module', 'decode_module')

MAX_PAGES = 65536          # 4 GiB of 64 KiB pages
MAX_LOCALS = 50000         # implementation limit (same as wasmtime's)


class WasmError(ValueError):
    """A malformed or invalid module; str() is one line ending in 'at byte offset N'."""

    def __init__(self, msg, offset=0):
        msg = ' '.join(str(msg).split())
        super().__init__(f'{msg} at byte offset {offset}')
        self.msg = msg
        self.offset = offset

    def __reduce__(self):
        return (type(self), (self.msg, self.offset))


@dataclass(frozen=True)
class FuncType:
    params: tuple
    results: tuple

    def __str__(self):
        return f"[{' '.join(self.params)}] -> [{' '.join(self.results)}]"


@dataclass(slots=True)
class Instr:
    op: str
    imm: tuple
    offset: int
    height: Optional[int] = None
    end: Optional[int] = None
    else_: Optional[int] = None


@dataclass
class Function:
    index: int
    type: FuncType
    locals: tuple
    body: list
    offset: int


@dataclass
class Global:
    type: str
    mutable: bool
    init: tuple


@dataclass
class Import:
    module: str
    name: str
    kind: str
    desc: object


@dataclass
class Module:
    types: list = field(default_factory=list)
    imports: list = field(default_factory=list)
    funcs: list = field(default_factory=list)
    func_types: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    memories: list = field(default_factory=list)
    globals: list = field(default_factory=list)
    global_types: list = field(default_factory=list)
    exports: dict = field(default_factory=dict)
    start: Optional[int] = None
    elements: list = field(default_factory=list)
    data: list = field(default_factory=list)


# ----------------------------------------------------------------- tables --

_VALTYPES = MappingProxyType({0x7F: 'i32', 0x7E: 'i64', 0x7D: 'f32', 0x7C: 'f64',
                              0x70: 'funcref', 0x6F: 'externref'})
_REFTYPES = MappingProxyType({0x70: 'funcref', 0x6F: 'externref'})
_NUMTYPES = frozenset(('i32', 'i64', 'f32', 'f64'))
_EXTERN_KINDS = ('func', 'table', 'memory', 'global')
# section id -> position in the required order (the data count section, 12,
# sits between the element and code sections)
_SECTION_ORDER = MappingProxyType({1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8,
                                   9: 9, 12: 10, 10: 11, 11: 12})
_SECTION_NAMES = ('custom', 'type', 'import', 'function', 'table', 'memory', 'global',
                  'export', 'start', 'element', 'code', 'data', 'data count')
# opcodes that exist in later proposals but are not supported here
_UNSUPPORTED = frozenset((0x06, 0x07, 0x08, 0x09, 0x0A, 0x12, 0x13, 0x14, 0x15, 0x18,
                          0x19, 0x1F, 0xD3, 0xD4, 0xD5, 0xD6, 0xFB, 0xFD, 0xFE))


def _build_ops():
    """opcode -> (mnemonic, kind, a, b).
    kind 'num': a = popped types, b = pushed types;
    kind 'load'/'store': a = value type, b = natural alignment (log2 bytes).
    0xFC-prefixed opcodes are keyed 0xFC00 + sub-opcode."""
    ops = {}
    tys = ('i32', 'i64', 'f32', 'f64')

    def num(start, prefix, names, pops, pushes):
        for i, n in enumerate(names.split()):
            ops[start + i] = (prefix + n, 'num', pops, pushes)

    cmp_i = 'eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u'
    bin_i = 'add sub mul div_s div_u rem_s rem_u and or xor shl shr_s shr_u rotl rotr'
    cmp_f, un_f = 'eq ne lt gt le ge', 'abs neg ceil floor trunc nearest sqrt'
    bin_f = 'add sub mul div min max copysign'
    for t, base in (('i32', 0x45), ('i64', 0x50)):
        num(base, t + '.', 'eqz', (t,), ('i32',))
        num(base + 1, t + '.', cmp_i, (t, t), ('i32',))
    for t, base in (('f32', 0x5B), ('f64', 0x61)):
        num(base, t + '.', cmp_f, (t, t), ('i32',))
    for t, base in (('i32', 0x67), ('i64', 0x79)):
        num(base, t + '.', 'clz ctz popcnt', (t,), (t,))
        num(base + 3, t + '.', bin_i, (t, t), (t,))
    for t, base in (('f32', 0x8B), ('f64', 0x99)):
        num(base, t + '.', un_f, (t,), (t,))
        num(base + 7, t + '.', bin_f, (t, t), (t,))

    def conv(start, names):             # 'dst.op_src...': pops src (or dst), pushes dst
        for i, n in enumerate(names.split()):
            src = next((t for t in tys if t in n[4:]), n[:3])
            ops[start + i] = (n, 'num', (src,), (n[:3],))

    conv(0xA7, 'i32.wrap_i64 i32.trunc_f32_s i32.trunc_f32_u i32.trunc_f64_s '
               'i32.trunc_f64_u i64.extend_i32_s i64.extend_i32_u i64.trunc_f32_s '
               'i64.trunc_f32_u i64.trunc_f64_s i64.trunc_f64_u f32.convert_i32_s '
               'f32.convert_i32_u f32.convert_i64_s f32.convert_i64_u f32.demote_f64 '
               'f64.convert_i32_s f64.convert_i32_u f64.convert_i64_s f64.convert_i64_u '
               'f64.promote_f32 i32.reinterpret_f32 i64.reinterpret_f64 '
               'f32.reinterpret_i32 f64.reinterpret_i64')
    conv(0xC0, 'i32.extend8_s i32.extend16_s i64.extend8_s i64.extend16_s i64.extend32_s')
    conv(0xFC00, 'i32.trunc_sat_f32_s i32.trunc_sat_f32_u i32.trunc_sat_f64_s '
                 'i32.trunc_sat_f64_u i64.trunc_sat_f32_s i64.trunc_sat_f32_u '
                 'i64.trunc_sat_f64_s i64.trunc_sat_f64_u')
    mem = ('i32.load i64.load f32.load f64.load i32.load8_s i32.load8_u i32.load16_s '
           'i32.load16_u i64.load8_s i64.load8_u i64.load16_s i64.load16_u i64.load32_s '
           'i64.load32_u i32.store i64.store f32.store f64.store i32.store8 i32.store16 '
           'i64.store8 i64.store16 i64.store32')
    for i, n in enumerate(mem.split()):        # natural alignment from the access size
        kind = 'load' if 'load' in n else 'store'
        bits = n[4 + len(kind):].split('_')[0] or n[1:3]
        ops[0x28 + i] = (n, kind, n[:3], {'8': 0, '16': 1, '32': 2, '64': 3}[bits])
    return MappingProxyType(ops)


_OPS = _build_ops()


# ----------------------------------------------------------------- reader --

class _Reader:
    __slots__ = ('data', 'pos', 'end', 'eofmsg')

    def __init__(self, data, pos, end, eofmsg='unexpected end of section or function'):
        self.data, self.pos, self.end, self.eofmsg = data, pos, end, eofmsg

    def eof(self):
        raise WasmError(self.eofmsg, min(self.pos, self.end))

    def byte(self):
        pos = self.pos
        if pos >= self.end:
            self.eof()
        self.pos = pos + 1
        return self.data[pos]

    def bytes(self, n):
        pos = self.pos
        if n > self.end - pos:
            self.eof()
        self.pos = pos + n
        return self.data[pos:pos + n]

    def leb(self, bits, signed):
        data, pos, end = self.data, self.pos, self.end
        if pos < end and data[pos] < 0x80:               # fast path: one byte
            b = data[pos]
            self.pos = pos + 1
            return b - 0x80 if signed and b & 0x40 else b
        maxn = (bits + 6) // 7
        result = shift = 0
        for i in range(maxn):
            if pos >= end:
                self.pos = pos
                self.eof()
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            raise WasmError('integer representation too long', pos - 1)
        if i == maxn - 1:            # last byte: its unused bits must be 0 (unsigned)
            used = bits - 7 * i      # or copies of the sign bit (signed)
            mask = (0x7F >> (used - 1)) << (used - 1) if signed else (0x7F >> used) << used
            if b & mask not in ((0, mask) if signed else (0,)):
                raise WasmError('integer too large', pos - 1)
        if signed and result >> (shift - 1) & 1:
            result -= 1 << shift
        self.pos = pos
        return result

    def u32(self):
        return self.leb(32, False)

    def index(self, limit, what):
        """A u32 index that must be < limit, else 'unknown <what> N'."""
        at = self.pos
        i = self.leb(32, False)
        if i >= limit:
            raise WasmError(f'unknown {what} {i}', at)
        return i

    def flag(self, allowed, what):
        at = self.pos
        b = self.byte()
        if b not in allowed:
            raise WasmError(f'malformed {what} 0x{b:02x}', at)
        return b

    def name(self):
        n = self.u32()
        at = self.pos
        try:
            return self.bytes(n).decode('utf-8')
        except UnicodeDecodeError as e:
            raise WasmError('malformed UTF-8 encoding', at + e.start) from None

    def valtype(self):
        at = self.pos
        b = self.byte()
        if b in _VALTYPES:
            return _VALTYPES[b]
        raise WasmError('unsupported value type v128' if b == 0x7B else
                        f'malformed value type 0x{b:02x}', at)

    def reftype(self):
        return _REFTYPES[self.flag(_REFTYPES, 'reference type')]


# ---------------------------------------------------------------- decoder --

def _err_if(cond, msg, at):
    if cond:
        raise WasmError(msg, at)


def decode_module(data) -> Module:
    """Decode and validate a binary module; raise WasmError if malformed or invalid."""
    return _Decoder(memoryview(data).tobytes()).run()


class _Decoder:
    def __init__(self, data):
        self.data, self.m = data, Module()
        self.func_tidx = None          # types from the function section
        self.n_imported_funcs = self.n_imported_globals = 0
        self.data_count = None
        self.refs = set()              # functions referenced outside code (for ref.func)

    def run(self):
        data, m = self.data, self.m
        r = _Reader(data, 0, len(data), 'unexpected end')
        _err_if(len(data) >= 4 and data[:4] != b'\0asm', 'magic header not detected', 0)
        r.bytes(4)
        _err_if(len(data) >= 8 and data[4:8] != b'\1\0\0\0', 'unknown binary version', 4)
        r.bytes(4)
        seen, last = set(), 0
        while r.pos < len(data):
            id_at = r.pos
            sid = r.byte()
            size = r.u32()
            if size > len(data) - r.pos:
                raise WasmError(f'section size out of bounds (length {size})', r.pos)
            s = _Reader(data, r.pos, r.pos + size)
            if sid == 0:
                s.name()
                s.pos = s.end
            else:
                rank = _SECTION_ORDER.get(sid)
                _err_if(rank is None, f'malformed section id {sid}', id_at)
                _err_if(sid in seen, f'duplicate {_SECTION_NAMES[sid]} section', id_at)
                if rank < last:
                    raise WasmError(f'section out of order ({_SECTION_NAMES[sid]})', id_at)
                seen.add(sid)
                last = rank
                getattr(self, '_sec%d' % sid)(s)
            _err_if(s.pos != s.end, 'section size mismatch', s.pos)
            r.pos = s.end
        if self.func_tidx and 10 not in seen:
            raise WasmError('function and code section have inconsistent lengths', len(data))
        if self.data_count and 11 not in seen:
            raise WasmError('data count and data section have inconsistent lengths', len(data))
        return m

    # -- helpers
    def _limits(self, s, is_memory):
        flag = s.flag((0, 1), 'limits flags')
        at = s.pos
        lo = s.u32()
        hi_at = s.pos
        hi = s.u32() if flag else None
        if is_memory:
            for v, a in ((lo, at), (hi, hi_at)):
                if v is not None and v > MAX_PAGES:
                    raise WasmError('memory size must be at most 65536 pages (4GiB)', a)
        if hi is not None and lo > hi:
            raise WasmError('size minimum must not be greater than maximum', at)
        return lo, hi

    def _table(self, s):
        et = s.reftype()
        t = self._limits(s, False) + (et,)
        self.m.tables.append(t)
        return t

    def _memory(self, s, at):
        lim = self._limits(s, True)
        _err_if(self.m.memories, 'multiple memories', at)
        self.m.memories.append(lim)
        return lim

    def _globaltype(self, s):
        return s.valtype(), bool(s.flag((0, 1), 'mutability'))

    def _const_expr(self, s, expected):
        """One constant instruction followed by 'end'; returns the init tuple."""
        at = s.pos
        op = s.byte()
        if op == 0x41 or op == 0x42:
            t, init = _VALTYPES[0x7F - (op - 0x41)], ('const', s.leb(32 << (op - 0x41), True))
        elif op == 0x43 or op == 0x44:
            t, init = _VALTYPES[0x7D - (op - 0x43)], ('const', int.from_bytes(
                s.bytes(4 << (op - 0x43)), 'little'))
        elif op == 0x23:
            i = s.index(self.n_imported_globals, 'global')
            t, mut = self.m.global_types[i]
            _err_if(mut, 'constant expression required', at)
            init = ('global.get', i)
        elif op == 0xD0:
            t = s.reftype()
            init = ('ref.null', t)
        elif op == 0xD2:
            t, init = 'funcref', ('ref.func', s.index(len(self.m.func_types), 'function'))
            self.refs.add(init[1])
        elif op == 0x0B:
            raise WasmError(f'type mismatch: expected {expected} but nothing on stack', at)
        else:
            raise WasmError('constant expression required', at)
        _err_if(t != expected, f'type mismatch: expected {expected}, found {t}', at)
        at = s.pos
        op = s.byte()
        if op in (0x41, 0x42, 0x43, 0x44, 0x23, 0xD0, 0xD2):
            raise WasmError('type mismatch: values remaining on stack at end of '
                            'constant expression', at)
        _err_if(op != 0x0B, 'constant expression required', at)
        return init

    # -- sections
    def _sec1(self, s):                                   # type
        for _ in range(s.u32()):
            s.flag((0x60,), 'function type form')
            params = tuple(s.valtype() for _ in range(s.u32()))
            self.m.types.append(FuncType(params, tuple(s.valtype() for _ in range(s.u32()))))

    def _sec2(self, s):                                   # import
        m = self.m
        for _ in range(s.u32()):
            at = s.pos
            mod, name = s.name(), s.name()
            kind = s.flag((0, 1, 2, 3), 'import kind')
            if kind == 0:
                desc = m.types[s.index(len(m.types), 'type')]
                m.func_types.append(desc)
                self.n_imported_funcs += 1
            elif kind == 1:
                desc = self._table(s)
            elif kind == 2:
                desc = self._memory(s, at)
            else:
                desc = self._globaltype(s)
                m.global_types.append(desc)
                self.n_imported_globals += 1
            m.imports.append(Import(mod, name, _EXTERN_KINDS[kind], desc))

    def _sec3(self, s):                                   # function
        types = self.m.types
        self.func_tidx = [types[s.index(len(types), 'type')] for _ in range(s.u32())]
        self.m.func_types.extend(self.func_tidx)

    def _sec4(self, s):                                   # table
        for _ in range(s.u32()):
            self._table(s)

    def _sec5(self, s):                                   # memory
        for _ in range(s.u32()):
            self._memory(s, s.pos)

    def _sec6(self, s):                                   # global
        for _ in range(s.u32()):
            t, mut = self._globaltype(s)
            init = self._const_expr(s, t)
            self.m.global_types.append((t, mut))
            self.m.globals.append(Global(t, mut, init))

    def _sec7(self, s):                                   # export
        m = self.m
        spaces = (m.func_types, m.tables, m.memories, m.global_types)
        for _ in range(s.u32()):
            at = s.pos
            name = s.name()
            kind = s.flag((0, 1, 2, 3), 'export kind')
            idx = s.index(len(spaces[kind]), ('function', 'table', 'memory', 'global')[kind])
            _err_if(name in m.exports, f'duplicate export name {name!r}', at)
            m.exports[name] = (_EXTERN_KINDS[kind], idx)
            if kind == 0:
                self.refs.add(idx)

    def _sec8(self, s):                                   # start
        at = s.pos
        idx = s.index(len(self.m.func_types), 'function')
        if self.m.func_types[idx] != FuncType((), ()):
            raise WasmError('invalid start function: must have type [] -> []', at)
        self.m.start = idx

    def _sec9(self, s):                                   # element
        m = self.m
        for _ in range(s.u32()):
            at = s.pos
            flags = s.u32()
            _err_if(flags > 7, f'malformed elements segment kind {flags}', at)
            table = None
            if not flags & 1:                               # active
                table = s.index(len(m.tables), 'table') if flags & 2 else 0
                _err_if(table >= len(m.tables), 'unknown table 0', at)
                offset = self._const_expr(s, 'i32')
            else:
                offset = ('declarative',) if flags & 2 else ('passive',)
            et = 'funcref'
            if flags & 4:                                   # vec(expr)
                if flags & 3:
                    et = s.reftype()
                items = []
                for _ in range(s.u32()):
                    e = self._const_expr(s, et)
                    items.append(e[1] if e[0] == 'ref.func' else
                                 None if e[0] == 'ref.null' else e)
            else:                                           # vec(funcidx)
                if flags & 3:
                    s.flag((0,), 'element kind')
                items = [s.index(len(m.func_types), 'function') for _ in range(s.u32())]
                self.refs.update(items)
            if table is not None and m.tables[table][2] != et:
                raise WasmError(f'type mismatch: element segment of {et} for table of '
                                f'{m.tables[table][2]}', at)
            m.elements.append((table, offset, tuple(items)))

    def _sec12(self, s):                                  # data count
        self.data_count = s.u32()

    def _sec10(self, s):                                  # code
        m = self.m
        at = s.pos
        n = s.u32()
        tidx = self.func_tidx or []
        _err_if(n != len(tidx), 'function and code section have inconsistent lengths', at)
        for i in range(n):
            size = s.u32()
            start = s.pos
            _err_if(size > s.end - start, 'function body size out of bounds', start)
            b = _Reader(self.data, start, start + size)
            locs = []
            for _ in range(b.u32()):
                cat = b.pos
                cnt = b.u32()
                t = b.valtype()
                _err_if(cnt + len(locs) > MAX_LOCALS, 'too many locals', cat)
                locs.extend([t] * cnt)
            ft = tidx[i]
            body = _validate_body(b, m, ft, ft.params + tuple(locs), self.refs)
            m.funcs.append(Function(self.n_imported_funcs + i, ft, tuple(locs), body, start))
            s.pos = b.end

    def _sec11(self, s):                                  # data
        m = self.m
        at = s.pos
        n = s.u32()
        if self.data_count is not None and n != self.data_count:
            raise WasmError('data count and data section have inconsistent lengths', at)
        for _ in range(n):
            at = s.pos
            flags = s.u32()
            _err_if(flags > 2, f'malformed data segment kind {flags}', at)
            if flags == 1:
                mem, offset = None, ('passive',)
            else:
                mem = s.index(len(m.memories), 'memory') if flags == 2 else 0
                _err_if(mem >= len(m.memories), 'unknown memory 0', at)
                offset = self._const_expr(s, 'i32')
            m.data.append((mem, offset, s.bytes(s.u32())))


# ------------------------------------------------------------- validation --

# control frame fields
_KIND, _START, _END, _HEIGHT, _UNREACH, _DEAD, _IDX, _ELSE = range(8)
_SIMPLE = MappingProxyType({0x00: 'unreachable', 0x01: 'nop', 0x0F: 'return', 0x1A: 'drop'})


def _validate_body(r, m, ftype, local_types, refs):
    """Decode and type-check one function body (the spec's validation algorithm)."""
    vals = []          # operand stack of value types; None = unknown (polymorphic)
    ctrls = []         # control frames (lists indexed by the constants above)
    body = []
    ops, types, funcs, tables = _OPS, m.types, m.func_types, m.tables
    index = r.index
    off = r.pos

    def fail(msg, at=None):
        raise WasmError(msg, off if at is None else at)

    def pop(expect=None):
        fr = ctrls[-1]
        if len(vals) == fr[_HEIGHT]:
            if fr[_UNREACH]:
                return None
            fail(f"type mismatch: expected {expect or 'a value'} but nothing on stack")
        t = vals.pop()
        if t != expect and t is not None and expect is not None:
            fail(f'type mismatch: expected {expect}, found {t}')
        return t

    def pop_vals(ts):
        return [pop(t) for t in reversed(ts)][::-1]

    def push_ctrl(kind, params, results, idx, dead):
        ctrls.append([kind, params, results, len(vals), False, dead, idx, None])
        vals.extend(params)

    def pop_ctrl():
        fr = ctrls[-1]
        pop_vals(fr[_END])
        if len(vals) != fr[_HEIGHT]:
            fail('type mismatch: values remaining on stack at end of block')
        return ctrls.pop()

    def label():
        d = index(len(ctrls), 'label')
        fr = ctrls[-1 - d]
        return d, fr[_START] if fr[_KIND] == 'loop' else fr[_END]

    def unreachable():
        fr = ctrls[-1]
        del vals[fr[_HEIGHT]:]
        fr[_UNREACH] = True

    def blocktype():
        at = r.pos
        b = r.byte()
        if b == 0x40 or b in _VALTYPES:
            return FuncType((), () if b == 0x40 else (_VALTYPES[b],))
        r.pos = at
        i = r.leb(33, True)
        if i < 0:
            fail('unsupported value type v128' if b == 0x7B else 'malformed block type', at)
        if i >= len(types):
            fail(f'unknown type {i}', at)
        return types[i]

    def need_memory():
        _err_if(not m.memories, 'unknown memory 0', off)

    push_ctrl('func', (), ftype.results, None, False)
    while True:
        off = r.pos
        op = r.byte()
        top = ctrls[-1]
        height = None if top[_UNREACH] or top[_DEAD] else len(vals)
        idx = len(body)
        if op == 0xFC:
            sub = r.u32()
            op = 0xFC00 + min(sub, 0xFF)
        info = ops.get(op)
        imm = ()
        if info is not None:
            name, kind, a, b = info
            if kind == 'num':
                for t in reversed(a):
                    pop(t)
                vals.extend(b)
            else:                                          # load/store: memarg
                at = r.pos
                imm = (r.u32(), r.u32())
                need_memory()
                _err_if(imm[0] > b, 'alignment must not be larger than natural', at)
                if kind == 'store':
                    pop(a)
                pop('i32')
                if kind == 'load':
                    vals.append(a)
        elif 0x20 <= op <= 0x22:                           # local.get/set/tee
            imm = (index(len(local_types), 'local'),)
            t = local_types[imm[0]]
            if op != 0x20:
                pop(t)
            if op != 0x21:
                vals.append(t)
            name = ('local.get', 'local.set', 'local.tee')[op - 0x20]
        elif 0x41 <= op <= 0x44:                           # t.const (floats: raw bits)
            name = ('i32.const', 'i64.const', 'f32.const', 'f64.const')[op - 0x41]
            imm = (r.leb(32 << (op - 0x41), True) if op < 0x43 else
                   int.from_bytes(r.bytes(4 << (op - 0x43)), 'little'),)
            vals.append(name[:3])
        elif 0x02 <= op <= 0x04:                           # block/loop/if
            bt = blocktype()
            name, imm = ('block', 'loop', 'if')[op - 2], (bt,)
            if op == 0x04:
                pop('i32')
            pop_vals(bt.params)
            push_ctrl(name, bt.params, bt.results, idx, height is None)
        elif op == 0x05:                                   # else
            _err_if(top[_KIND] != 'if', 'else found outside of an `if` block', off)
            pop_ctrl()
            push_ctrl('else', top[_START], top[_END], top[_IDX], top[_DEAD])
            ctrls[-1][_ELSE] = body[top[_IDX]].else_ = idx
            name = 'else'
        elif op == 0x0B:                                   # end
            pop_ctrl()
            if top[_KIND] == 'if' and top[_START] != top[_END]:
                fail('type mismatch: if without else must leave its parameters unchanged')
            vals.extend(top[_END])
            for j in (top[_IDX], top[_ELSE]):
                if j is not None:
                    body[j].end = idx
            body.append(Instr('end', (), off, height))
            if not ctrls:
                _err_if(r.pos != r.end, 'operators remaining after end of function', r.pos)
                return body
            continue
        elif op == 0x0C or op == 0x0D:                     # br/br_if
            d, lt = label()
            if op == 0x0D:
                pop('i32')
            pop_vals(lt)
            if op == 0x0D:
                vals.extend(lt)
            else:
                unreachable()
            name, imm = ('br', 'br_if')[op - 0x0C], (d,)
        elif op == 0x0E:                                   # br_table
            labels = [label() for _ in range(r.u32())]
            default, dt = label()
            pop('i32')
            for d, lt in labels:
                if len(lt) != len(dt):
                    fail('type mismatch: br_table targets have inconsistent arity')
                vals.extend(pop_vals(lt))
            pop_vals(dt)
            unreachable()
            name, imm = 'br_table', (tuple(d for d, _ in labels), default)
        elif op in _SIMPLE:                                # unreachable/nop/return/drop
            name = _SIMPLE[op]
            if op == 0x1A:
                pop()
            elif op != 0x01:
                if op == 0x0F:
                    pop_vals(ftype.results)
                unreachable()
        elif op == 0x10 or op == 0x11:                     # call/call_indirect
            if op == 0x10:
                name, imm = 'call', (index(len(funcs), 'function'),)
                ft = funcs[imm[0]]
            else:
                name, imm = 'call_indirect', (index(len(types), 'type'), r.pos)
                imm = (imm[0], index(len(tables), 'table'))
                if tables[imm[1]][2] != 'funcref':
                    fail(f'type mismatch: call_indirect on a table of {tables[imm[1]][2]}')
                ft = types[imm[0]]
                pop('i32')
            pop_vals(ft.params)
            vals.extend(ft.results)
        elif op == 0x1B or op == 0x1C:                     # select, select t
            if op == 0x1C:
                at = r.pos
                imm = tuple(r.valtype() for _ in range(r.u32()))
                _err_if(len(imm) != 1, 'invalid result arity for typed select', at)
            pop('i32')
            t1 = pop(imm[0] if imm else None)
            t2 = pop(imm[0] if imm else None)
            if not imm and any(t is not None and t not in _NUMTYPES for t in (t1, t2)):
                fail('type mismatch: select only takes integral/float operands')
            if t1 is not None and t2 is not None and t1 != t2:
                fail(f'type mismatch: select operands {t2} and {t1} differ')
            vals.append(imm[0] if imm else t1 if t1 is not None else t2)
            name = 'select'
        elif op == 0x23 or op == 0x24:                     # global.get/set
            imm = (index(len(m.global_types), 'global'),)
            t, mut = m.global_types[imm[0]]
            if op == 0x23:
                vals.append(t)
            elif not mut:
                fail('global is immutable: cannot modify it with `global.set`')
            else:
                pop(t)
            name = ('global.get', 'global.set')[op - 0x23]
        elif op == 0x25 or op == 0x26:                     # table.get/set
            imm = (index(len(tables), 'table'),)
            if op == 0x26:
                pop(tables[imm[0]][2])
            pop('i32')
            if op == 0x25:
                vals.append(tables[imm[0]][2])
            name = ('table.get', 'table.set')[op - 0x25]
        elif op == 0x3F or op == 0x40:                     # memory.size/grow
            _err_if(r.byte() != 0, 'zero byte expected', r.pos - 1)
            need_memory()
            if op == 0x40:
                pop('i32')
            vals.append('i32')
            name, imm = ('memory.size', 'memory.grow')[op - 0x3F], (0,)
        elif op == 0xD0:                                   # ref.null t
            imm = (r.reftype(),)
            vals.append(imm[0])
            name = 'ref.null'
        elif op == 0xD1:                                   # ref.is_null
            t = pop()
            if t in _NUMTYPES:
                fail(f'type mismatch: expected a reference type, found {t}')
            vals.append('i32')
            name = 'ref.is_null'
        elif op == 0xD2:                                   # ref.func x
            imm = (index(len(funcs), 'function'),)
            if imm[0] not in refs:
                fail(f'undeclared function reference {imm[0]}')
            vals.append('funcref')
            name = 'ref.func'
        elif op >= 0xFC00:
            fail(f'unsupported opcode 0xfc {sub}')
        else:
            fail(f"{'unsupported' if op in _UNSUPPORTED else 'illegal'} opcode 0x{op:02x}")
        body.append(Instr(name, imm, off, height))
