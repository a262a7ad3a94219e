"""Executor 1: the lowering and the reference interpreter agree with wasmtime (no model)."""
import random

import pytest

from programs import ALU_WAT, I32_BINARY, I32_UNARY, LOOP_WAT, MIXED_WAT, SPECIAL
from reference_interpreter import ReferenceMachine
from toolchain import Wasmtime, wat_to_wasm
from wasm_lowering import load_program
from wasm_runner import read_outcome


def ref_run(wasm, func, args):
    prog = load_program(wasm, [(func, [("i32", a) for a in args])])
    out = read_outcome(prog, ReferenceMachine(prog).run(0), 0)
    return ("result", out.values) if out.kind == "result" else (out.kind, out.message)


@pytest.mark.parametrize("op", I32_BINARY + I32_UNARY)
def test_every_i32_operator_matches_wasmtime(op):
    wasm = wat_to_wasm(ALU_WAT)
    wt = Wasmtime(wasm)
    rng = random.Random(op)
    n = 1 if op in I32_UNARY else 2
    for _ in range(60):
        args = [rng.choice(SPECIAL) if rng.random() < 0.5 else rng.randrange(-2**31, 2**31) for _ in range(n)]
        assert ref_run(wasm, op, args) == wt.call(op, args), (op, args)


@pytest.mark.parametrize("func,args", [("f", [2]), ("f", [5]), ("oob", [65534]), ("oob", [-4]),
                                       ("unreach", []), ("deep", [0]), ("div0", [0])])
def test_mixed_program_and_traps_match_wasmtime(func, args):
    wasm = wat_to_wasm(MIXED_WAT)
    assert ref_run(wasm, func, args) == Wasmtime(wasm).call(func, args)


def test_loop():
    wasm = wat_to_wasm(LOOP_WAT)
    assert ref_run(wasm, "f", [100]) == Wasmtime(wasm).call("f", [100])
