"""Tests for wasm_binary: decoding + validation of WebAssembly binaries."""
import glob
import json
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from wasm_binary import (FuncType, Instr, Module, WasmError,  # noqa: E402
                         decode_module)

wasmtime = pytest.importorskip('wasmtime')

SPEC = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'corpus', 'spec')
if not os.path.isdir(SPEC):
    SPEC = '/work/shared/corpus/spec'
SPEC_FILES = sorted(glob.glob(os.path.join(SPEC, '*', '*.wasm')))


@pytest.fixture(scope='module')
def engine():
    """wasmtime restricted to the proposals this decoder covers (reference types and
    bulk memory cannot be switched off in wasmtime; we decode the former)."""
    cfg = wasmtime.Config()
    for feat in ('wasm_multi_memory', 'wasm_gc', 'wasm_function_references', 'wasm_simd',
                 'wasm_relaxed_simd', 'wasm_threads', 'wasm_memory64', 'wasm_tail_call',
                 'wasm_exceptions', 'wasm_wide_arithmetic', 'wasm_custom_page_sizes',
                 'wasm_stack_switching'):
        try:
            setattr(cfg, feat, False)
        except AttributeError:      # older/newer wasmtime without this knob
            pass
    return wasmtime.Engine(cfg)


def wasmtime_ok(engine, b):
    try:
        wasmtime.Module.validate(engine, b)
        return True
    except Exception:
        return False


def wat(text):
    return bytes(wasmtime.wat2wasm(text))


def reject(b, fragment=None):
    with pytest.raises(WasmError) as ei:
        decode_module(b)
    msg = str(ei.value)
    assert '\n' not in msg and msg.endswith(f'at byte offset {ei.value.offset}')
    assert 0 <= ei.value.offset <= len(b)
    if fragment is not None:
        assert fragment in msg, msg
    return ei.value


# ---------------------------------------------------------- raw builders --

def uleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vec(items):
    return uleb(len(items)) + b''.join(items)


def sec(sid, payload):
    return bytes([sid]) + uleb(len(payload)) + payload


def name(s):
    return uleb(len(s)) + s


HEADER = b'\0asm\1\0\0\0'
T_VOID = b'\x60\x00\x00'                     # [] -> []
T_I32 = b'\x60\x00\x01\x7f'                  # [] -> [i32]


def module(types=(T_VOID,), bodies=(), extra=()):
    """types: encoded functypes; bodies: (typeidx, locals_bytes, code_bytes)."""
    out = HEADER + sec(1, vec(list(types)))
    if bodies:
        out += sec(3, vec([uleb(t) for t, _, _ in bodies]))
    for sid, payload in extra:
        out += sec(sid, payload)
    if bodies:
        out += sec(10, vec([uleb(len(l + c)) + l + c for _, l, c in bodies]))
    return out


def func(code, t=0, locs=b'\x00'):
    return module(bodies=[(t, locs, code)])


# ------------------------------------------------------------ spec corpus --

def test_spec_corpus_agrees_with_wasmtime(engine):
    assert len(SPEC_FILES) > 900
    disagree = []
    for fn in SPEC_FILES:
        b = open(fn, 'rb').read()
        try:
            decode_module(b)
            ours = True
        except WasmError as e:
            ours = str(e)
        if (ours is True) != wasmtime_ok(engine, b):
            disagree.append((os.path.basename(fn), ours))
    assert not disagree


def test_spec_modules_decode():
    n = 0
    for js in glob.glob(os.path.join(SPEC, '*', '*.json')):
        for cmd in json.load(open(js))['commands']:
            if cmd['type'] == 'module' and cmd['filename'].endswith('.wasm'):
                m = decode_module(open(os.path.join(os.path.dirname(js), cmd['filename']),
                                       'rb').read())
                assert isinstance(m, Module)
                n += 1
    assert n >= 90


def test_spec_fields():
    m = decode_module(open(os.path.join(SPEC, 'call_indirect', 'call_indirect.1.wasm'), 'rb').read())
    assert len(m.tables) == 3 and all(t[2] == 'funcref' for t in m.tables)
    assert [e[0] for e in m.elements] == [0, 1, 2, 2]
    ci = [i for f in m.funcs for i in f.body if i.op == 'call_indirect']
    assert {i.imm[1] for i in ci} == {0, 1, 2}
    m = decode_module(open(os.path.join(SPEC, 'memory_grow', 'memory_grow.0.wasm'), 'rb').read())
    assert m.memories == [(0, None)]
    assert m.exports['grow'] == ('func', m.exports['grow'][1])
    assert all(ft == f.type for f in m.funcs for ft in [m.func_types[f.index]])


# ---------------------------------------------------------- hand-written --

SINK = r'''
(module
  (type $t (func (param i32) (result i32)))
  (type $pp (func (param i32) (result i32 i64)))
  (import "env" "f" (func $imp (param i32) (result i32)))
  (import "env" "g" (global $gi i32))
  (import "env" "gm" (global $gm (mut i32)))
  (table 2 10 funcref)
  (memory 1 2)
  (global $g (mut i64) (i64.const -5))
  (global $h i32 (global.get $gi))
  (global $f f32 (f32.const 1.0))
  (export "run" (func $run))
  (export "mem" (memory 0))
  (export "gm" (global $gm))
  (export "tab" (table 0))
  (start $init)
  (elem (i32.const 0) $run $imp)
  (data (i32.const 16) "hello")
  (func $init)
  (func $run (param i32) (result i32) (local i64 f64)
    local.get 0
    i32.load8_s offset=4
    i32.extend8_s
    local.get 0
    i32.const 0
    call_indirect (type $t)
    i32.add
    block $b (param i32) (result i32 i64)
      i64.const -9223372036854775808
      local.get 0
      br_table $b $b $b
    end
    global.set $g
    i32.const 1
    i32.store16 offset=2 align=1
    f64.const 0.5
    f64.sqrt
    i64.trunc_f64_s
    local.tee 1
    i32.wrap_i64
    memory.size
    memory.grow
    local.get 0
    select
    global.get $gm
    i32.add
    call $imp))
'''


def test_sink_fields(engine):
    b = wat(SINK)
    assert wasmtime_ok(engine, b)
    m = decode_module(b)
    assert m.types == [FuncType(('i32',), ('i32',)), FuncType(('i32',), ('i32', 'i64')),
                       FuncType((), ())]
    assert [(i.module, i.name, i.kind) for i in m.imports] == \
        [('env', 'f', 'func'), ('env', 'g', 'global'), ('env', 'gm', 'global')]
    assert m.imports[2].desc == ('i32', True)
    assert len(m.func_types) == 3 and [f.index for f in m.funcs] == [1, 2]
    assert m.tables == [(2, 10, 'funcref')] and m.memories == [(1, 2)]
    assert m.global_types == [('i32', False), ('i32', True), ('i64', True), ('i32', False),
                              ('f32', False)]
    assert m.globals[0].init == ('const', -5) and m.globals[1].init == ('global.get', 0)
    assert m.globals[2].init == ('const', 0x3F800000)
    assert m.exports == {'run': ('func', 2), 'mem': ('memory', 0), 'gm': ('global', 1),
                         'tab': ('table', 0)}
    assert m.start == 1
    assert m.elements == [(0, ('const', 0), (2, 0))]
    assert m.data == [(0, ('const', 16), b'hello')]
    run = m.funcs[1]
    assert run.locals == ('i64', 'f64') and run.type == FuncType(('i32',), ('i32',))
    ops = {i.op: i for i in run.body}
    assert ops['i32.load8_s'].imm == (0, 4)
    assert ops['i32.store16'].imm == (0, 2)
    assert ops['call_indirect'].imm == (0, 0)
    assert ops['i64.const'].imm == (-(1 << 63),)
    assert ops['br_table'].imm == ((0, 0), 0)
    assert ops['f64.const'].imm == (0x3FE0000000000000,)
    assert ops['block'].imm == (FuncType(('i32',), ('i32', 'i64')),)
    assert run.body[-1].op == 'end' and run.body[-1].height == 1
    assert all(b[i.offset] == 0x0B for i in run.body if i.op == 'end')
    assert b[ops['call_indirect'].offset] == 0x11 and b[ops['memory.grow'].offset] == 0x40
    # heights: the block takes i32 (height 1), leaves i32 i64 (height 2); its
    # body ends in br_table, so its 'end' is unreachable
    blk = ops['block']
    assert blk.height == 1 and run.body[blk.end].op == 'end' and run.body[blk.end].height is None
    assert ops['global.set'].height == 2


HEIGHTS = r'''
(module
  (type $l (func (param i32) (result i32)))
  (func (param i32) (result i32)
    i32.const 10
    block (result i32)
      i32.const 1
      local.get 0
      br_if 0
      drop
      i32.const 2
      br 0
      i32.const 3
      drop
    end
    i32.add
    local.get 0
    if (result i32)
      i32.const 4
    else
      unreachable
    end
    i32.add
    loop (type $l)
      i32.const 1
      i32.add
    end
    return
    block
      i32.const 5
      drop
    end))
'''


def test_heights_and_structure(engine):
    b = wat(HEIGHTS)
    assert wasmtime_ok(engine, b)
    body = decode_module(b).funcs[0].body
    ops = [i.op for i in body]
    assert ops == ['i32.const', 'block', 'i32.const', 'local.get', 'br_if', 'drop',
                   'i32.const', 'br', 'i32.const', 'drop', 'end', 'i32.add', 'local.get',
                   'if', 'i32.const', 'else', 'unreachable', 'end', 'i32.add', 'loop',
                   'i32.const', 'i32.add', 'end', 'return', 'block', 'i32.const', 'drop',
                   'end', 'end']
    N = None
    assert [i.height for i in body] == [0, 1, 1, 2, 3, 2, 1, 2, N, N, N, 2, 1, 2, 1, 2, 1,
                                        N, 2, 1, 1, 2, 1, 1, N, N, N, N, N]
    assert body[1].end == 10 and body[1].else_ is None
    assert body[13].end == 17 and body[13].else_ == 15 and body[15].end == 17
    assert body[19].end == 22 and body[19].imm == (FuncType(('i32',), ('i32',)),)
    assert body[24].end == 27
    assert body[4].imm == (0,) and body[3].imm == (0,)
    assert all(isinstance(i, Instr) for i in body)
    assert b[body[13].offset] == 0x04 and b[body[15].offset] == 0x05


def test_c_like_program(engine):
    b = wat(r'''
      (module (memory (export "memory") 2) (global $sp (mut i32) (i32.const 65536))
        (func $fib (param i32) (result i32)
          local.get 0 i32.const 2 i32.lt_s
          if (result i32) local.get 0
          else local.get 0 i32.const 1 i32.sub call $fib
               local.get 0 i32.const 2 i32.sub call $fib i32.add end)
        (func (export "run") (result i32) i32.const 20 call $fib))''')
    m = decode_module(b)
    assert m.exports == {'memory': ('memory', 0), 'run': ('func', 1)}
    assert [len(f.body) for f in m.funcs] == [17, 3]
    assert m.funcs[0].body[3].op == 'if' and m.funcs[0].body[3].imm[0].results == ('i32',)


# ---------------------------------------------------------------- malformed

def test_header_and_sections():
    reject(b'', 'unexpected end')
    reject(b'\0as', 'unexpected end')
    reject(b'\0asm', 'unexpected end')
    reject(b'\0asn\1\0\0\0', 'magic header not detected')
    reject(b'\0asm\2\0\0\0', 'unknown binary version')
    assert decode_module(HEADER).funcs == []
    reject(HEADER + b'\x0d\x00', 'malformed section id')
    reject(HEADER + sec(1, b'\x00') + sec(1, b'\x00'), 'duplicate')
    reject(HEADER + sec(3, b'\x00') + sec(1, b'\x00'), 'out of order')
    reject(HEADER + sec(1, b'\x00\x00'), 'section size mismatch')
    reject(HEADER + b'\x01\x05\x00', 'out of bounds')
    reject(HEADER + sec(1, vec([T_VOID])) + sec(3, vec([b'\x00'])),
           'function and code section have inconsistent lengths')
    reject(HEADER + sec(1, vec([T_VOID])) + sec(10, vec([b'\x02\x00\x0b'])),
           'function and code section have inconsistent lengths')
    reject(HEADER + sec(12, b'\x01') + sec(11, b'\x00'), 'data count')
    reject(HEADER + sec(12, b'\x01'), 'data count')
    assert decode_module(HEADER + sec(0, name(b'abc') + b'\xff\xfe')).types == []
    reject(HEADER + sec(0, name(b'a\xffc')), 'malformed UTF-8 encoding')
    reject(HEADER + sec(0, b''), 'unexpected end of section or function')
    reject(HEADER + sec(2, vec([name(b'\xc0\x80') + name(b'x') + b'\x02\x00\x01'])),
           'malformed UTF-8')
    reject(HEADER + sec(2, vec([name(b'm') + name(b'x') + b'\x04\x00'])), 'import kind')
    reject(HEADER + sec(1, vec([b'\x61\x00\x00'])), 'malformed function type')
    reject(HEADER + sec(1, vec([b'\x60\x01\x7b\x00'])), 'unsupported')
    reject(HEADER + sec(1, vec([b'\x60\x01\x55\x00'])), 'malformed value type')


def test_leb128_rules():
    ok = module(extra=[(5, b'\x01\x00\x80\x80\x80\x80\x00')])          # 5-byte u32 = 0
    assert decode_module(ok).memories == [(0, None)]
    reject(module(extra=[(5, b'\x01\x00\x80\x80\x80\x80\x10')]), 'integer too large')
    reject(module(extra=[(5, b'\x01\x00\x80\x80\x80\x80\x80\x00')]),
           'integer representation too long')
    reject(HEADER + b'\x01\x80\x80\x80\x80\x70', 'integer too large')
    assert decode_module(func(b'\x41\xff\xff\xff\xff\x7f\x1a\x0b')).funcs[0].body[0].imm == (-1,)
    assert decode_module(func(b'\x41\xff\xff\xff\xff\x07\x1a\x0b')).funcs[0].body[0].imm == \
        ((1 << 31) - 1,)
    assert decode_module(func(b'\x41\x80\x80\x80\x80\x78\x1a\x0b')).funcs[0].body[0].imm == (-(1 << 31),)
    reject(func(b'\x41\xff\xff\xff\xff\x4f\x1a\x0b'), 'integer too large')
    reject(func(b'\x41\x80\x80\x80\x80\x08\x1a\x0b'), 'integer too large')
    reject(func(b'\x41\x80\x80\x80\x80\x80\x00\x1a\x0b'), 'integer representation too long')
    assert decode_module(func(b'\x42' + b'\xff' * 9 + b'\x7f\x1a\x0b')).funcs[0].body[0].imm == (-1,)
    reject(func(b'\x42' + b'\xff' * 9 + b'\x41\x1a\x0b'), 'integer too large')
    reject(func(b'\x42' + b'\x80' * 9 + b'\x01\x1a\x0b'), 'integer too large')
    # s33 block type index
    assert decode_module(module(types=[T_VOID], bodies=[(0, b'\x00', b'\x02\x80\x80\x80\x80\x00\x0b\x0b')]))
    reject(module(bodies=[(0, b'\x00', b'\x02\x80\x80\x80\x80\x10\x0b\x0b')]), 'integer too large')
    reject(module(bodies=[(0, b'\x00', b'\x02\x01\x0b\x0b')]), 'unknown type 1')


def test_validation_errors():
    reject(func(b'\x20\x05\x1a\x0b'), 'unknown local 5')
    reject(func(b'\x41\x00\x0b'), 'type mismatch')
    reject(module(types=[T_I32], bodies=[(0, b'\x00', b'\x0b')]), 'type mismatch')
    reject(module(types=[T_I32], bodies=[(0, b'\x00', b'\x42\x00\x0b')]), 'type mismatch')
    reject(func(b'\x6a\x0b'), 'type mismatch')
    reject(func(b'\x0c\x01\x0b'), 'unknown label 1')
    reject(func(b'\x10\x03\x0b'), 'unknown function 3')
    reject(func(b'\x41\x00\x28\x02\x00\x1a\x0b'), 'unknown memory')
    mem = [(5, b'\x01\x00\x01')]
    assert decode_module(module(bodies=[(0, b'\x00', b'\x41\x00\x28\x02\x00\x1a\x0b')], extra=mem))
    reject(module(bodies=[(0, b'\x00', b'\x41\x00\x28\x03\x00\x1a\x0b')], extra=mem),
           'alignment must not be larger than natural')
    reject(module(bodies=[(0, b'\x00', b'\x41\x00\x2c\x01\x00\x1a\x0b')], extra=mem),
           'alignment must not be larger than natural')
    reject(module(bodies=[(0, b'\x00', b'\x3f\x01\x1a\x0b')], extra=mem), 'zero byte expected')
    reject(func(b'\x41\x00\x05\x0b'), 'else')
    reject(func(b'\x41\x00\x04\x7f\x41\x00\x0b\x1a\x0b'), 'type mismatch')   # if w/o else
    reject(func(b'\x0b\x0b'), 'operators remaining')
    reject(func(b'\x01'), 'unexpected end')
    reject(func(b'\xff\x0b'), 'illegal opcode')
    reject(func(b'\xfc\x0a\x00\x00\x0b'), 'unsupported')                 # memory.copy
    reject(func(b'\xfd\x00\x0b'), 'unsupported')
    reject(func(b'\x00\x00\x0b', locs=b'\x01\xd1\x89\x03\x7f'), 'too many locals')
    glob_imm = (6, vec([b'\x7f\x00\x41\x00\x0b']))
    reject(module(bodies=[(0, b'\x00', b'\x41\x00\x24\x00\x0b')], extra=[glob_imm]),
           'immutable')
    reject(module(extra=[(6, vec([b'\x7f\x00\x42\x00\x0b']))]), 'type mismatch')
    reject(module(extra=[(6, vec([b'\x7f\x00\x41\x00\x41\x00\x0b']))]), 'type mismatch')
    reject(module(extra=[(6, vec([b'\x7f\x00\x41\x00\x6a\x0b']))]), 'constant expression')
    reject(module(extra=[(6, vec([b'\x7f\x00\x23\x00\x0b']))]), 'unknown global 0')
    reject(module(extra=[(6, vec([b'\x7f\x02\x41\x00\x0b']))]), 'mutability')
    reject(module(extra=[(5, b'\x01\x00\x81\x80\x04')]), 'at most 65536 pages')
    reject(module(extra=[(5, b'\x01\x01\x02\x01')]), 'minimum must not be greater')
    reject(module(extra=[(5, b'\x02\x00\x01\x00\x01')]), 'multiple memories')
    reject(module(extra=[(4, b'\x01\x70\x01\x02\x01')]), 'minimum must not be greater')
    reject(module(bodies=[(0, b'\x00', b'\x0b')],
                  extra=[(7, vec([name(b'a') + b'\x00\x00', name(b'a') + b'\x00\x00']))]),
           'duplicate export name')
    reject(module(bodies=[(0, b'\x00', b'\x0b')], extra=[(7, vec([name(b'a') + b'\x00\x01']))]),
           'unknown function 1')
    reject(module(types=[b'\x60\x01\x7f\x00'], bodies=[(0, b'\x00', b'\x0b')],
                  extra=[(8, b'\x00')]), 'start function')
    reject(module(bodies=[(0, b'\x00', b'\x0b')], extra=[(9, vec([b'\x00\x41\x00\x0b\x01\x00']))]),
           'unknown table 0')
    reject(module(extra=[(11, vec([b'\x00\x41\x00\x0b\x00']))]), 'unknown memory 0')


def test_polymorphic_stack_valid(engine):
    for code in (b'\x00\x6a\x1a\x0b', b'\x0c\x00\x1a\x1a\x1a\x0b', b'\x00\x1b\x1a\x0b',
                 b'\x00\x41\x00\x0e\x00\x00\x0b'):
        b = func(code)
        assert wasmtime_ok(engine, b)
        body = decode_module(b).funcs[0].body
        assert body[0].height == 0 and all(i.height is None for i in body[1:])
    reject(func(b'\x00\x42\x00\x6a\x0b'), 'type mismatch')
    reject(func(b'\x00\x41\x00\x42\x00\x1b\x0b'), 'type mismatch')


def test_deep_nesting_and_huge_counts():
    depth = 30000
    m = decode_module(func(b'\x02\x40' * depth + b'\x0b' * (depth + 1)))
    body = m.funcs[0].body
    assert len(body) == 2 * depth + 1 and body[0].end == 2 * depth - 1
    reject(func(b'\x02\x40' * depth + b'\x0b' * depth), 'unexpected end')
    reject(func(b'\x01' * 1000 + b'\x02\x40' * depth), 'unexpected end')
    reject(HEADER + sec(1, b'\xff\xff\xff\xff\x0f' + T_VOID), 'unexpected end')
    reject(HEADER + sec(2, b'\xff\xff\xff\xff\x0f'), 'unexpected end')
    reject(func(b'\x41\x00\x0e\xff\xff\xff\xff\x0f\x00\x00\x00'), 'unexpected end')
    reject(func(b'', locs=b'\xff\xff\xff\xff\x0f\x01\x7f'), 'unexpected end')
    reject(func(b'\x00\x0b', locs=b'\x01\xff\xff\xff\xff\x0f\x7f'), 'too many locals')
    reject(module(extra=[(5, b'\x01\x00\x01'),
                         (11, vec([b'\x00\x41\x00\x0b\xff\xff\xff\xff\x0f']))]), 'unexpected end')


def _truncations(b, engine):
    """Every proper prefix is rejected, except prefixes that end exactly at a section
    boundary and are complete modules by themselves (wasmtime must agree on those)."""
    accepted = 0
    for n in range(len(b)):
        try:
            decode_module(b[:n])
        except WasmError as e:
            assert '\n' not in str(e) and e.offset <= n
            continue
        assert wasmtime_ok(engine, b[:n])
        accepted += 1
    assert accepted < 6


def _sections(b):
    """(id, payload) of each section of a well-formed module."""
    pos, out = 8, []
    while pos < len(b):
        sid, pos = b[pos], pos + 1
        size = shift = 0
        while True:
            byte, pos = b[pos], pos + 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out.append((sid, b[pos:pos + size]))
        pos += size
    return out


def _section_truncations(b, engine):
    """Cut each section's payload short (re-encoding its size, dropping what follows):
    exercises the 'unexpected end of section or function' paths inside sections."""
    secs = _sections(b)
    for i, (sid, payload) in enumerate(secs):
        head = HEADER + b''.join(sec(s, p) for s, p in secs[:i])
        for k in range(len(payload)):
            mod = head + sec(sid, payload[:k])
            try:
                decode_module(mod)
            except WasmError as e:
                assert '\n' not in str(e) and e.offset <= len(mod)
                continue
            assert wasmtime_ok(engine, mod)


def test_truncations(engine):
    for src in (wat(SINK), wat(HEIGHTS)):
        _truncations(src, engine)
        _section_truncations(src, engine)
    _truncations(open(os.path.join(SPEC, 'call_indirect', 'call_indirect.1.wasm'), 'rb').read(),
                 engine)





def test_random_mutants(engine):
    rng = random.Random(20240601)
    seeds = [wat(SINK), wat(HEIGHTS),
             open(os.path.join(SPEC, 'br_if', 'br_if.0.wasm'), 'rb').read(),
             open(os.path.join(SPEC, 'memory', 'memory.0.wasm'), 'rb').read()]
    counts = {True: 0, False: 0}
    for _ in range(1000):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.choice((1, 1, 2, 3))):
            p = rng.randrange(8, len(b))
            k = rng.random()
            if k < 0.55:
                b[p] = rng.randrange(256)
            elif k < 0.7:
                b[p] ^= 1 << rng.randrange(8)
            elif k < 0.85:
                b[p:p] = bytes([rng.choice((0x00, 0x0b, 0x80, 0xff, 0x41, rng.randrange(256)))])
            else:
                del b[p]
        b = bytes(b)
        try:
            decode_module(b)
            ours, msg = True, ''
        except WasmError as e:
            ours, msg = False, str(e)
            assert '\n' not in msg and msg.endswith(f' at byte offset {e.offset}')
        theirs = wasmtime_ok(engine, b)
        counts[ours] += 1
        if not theirs:
            assert not ours, 'accepted a module wasmtime rejects'
        elif not ours:
            assert msg.startswith('unsupported'), msg
    assert counts[True] > 20 and counts[False] > 200
