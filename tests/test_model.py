"""Executor 3: the transformer. Results and traps match wasmtime; traces match the reference
interpreter token for token; the hull cache and the dense path agree; the independent contract
checker reproduces dumps from the weights alone."""
import json
import random
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED
from programs import ALU_WAT, I32_BINARY, I32_UNARY, LOOP_WAT, MIXED_WAT, SPECIAL
from reference_interpreter import ReferenceMachine
from toolchain import Wasmtime, wat_to_wasm


def outcome_pair(out):
    return ("result", out.values) if out.kind == "result" else (out.kind, out.message)


def run_both(runner, wat, func, args):
    wasm = wat_to_wasm(wat)
    session = runner.session(wasm, [(func, [("i32", a) for a in args])])
    out = session.run(0, 200_000)
    expected_trace = ReferenceMachine(session.program).run(0)
    assert out.generated == expected_trace, "trace differs from the reference interpreter"
    assert outcome_pair(out) == Wasmtime(wasm).call(func, args)
    return session, out


@pytest.mark.parametrize("op", I32_BINARY + I32_UNARY)
def test_operator_through_model(runner, op):
    rng = random.Random(op)
    n = 1 if op in I32_UNARY else 2
    for _ in range(2):
        args = [rng.choice(SPECIAL) if rng.random() < 0.5 else rng.randrange(-2**31, 2**31) for _ in range(n)]
        run_both(runner, ALU_WAT, op, args)


@pytest.mark.parametrize("func,args", [("f", [2]), ("f", [4]), ("oob", [65534]), ("oob", [-4]),
                                       ("unreach", []), ("div0", [0])])
def test_mixed_program(runner, func, args):
    run_both(runner, MIXED_WAT, func, args)


def test_call_stack_exhausted(runner):
    run_both(runner, MIXED_WAT, "deep", [0])


def test_hull_equals_dense(runner, dense_runner):
    wasm = wat_to_wasm(LOOP_WAT)
    a = runner.session(wasm, [("f", [("i32", 3)])]).run(0)
    b = dense_runner.session(wasm, [("f", [("i32", 3)])]).run(0)
    assert a.generated == b.generated and a.kind == "result"


def test_state_carries_across_invocations(runner):
    wat = '(module (global $c (mut i32) (i32.const 0)) (memory 1) (func (export "bump") (result i32) ' \
          '(global.set $c (i32.add (global.get $c) (i32.const 1))) (i32.store (i32.const 4) (global.get $c)) ' \
          '(i32.load (i32.const 4))))'
    session = runner.session(wat_to_wasm(wat), [("bump", [])] * 3)
    assert [session.run(k).values for k in range(3)] == [[1], [2], [3]]


def test_contract_checker_reproduces_dumps(runner, tmp_path):
    for wat, func, args in [(LOOP_WAT, "f", [5]), (MIXED_WAT, "f", [2])]:
        session = runner.session(wat_to_wasm(wat), [(func, [("i32", a) for a in args])])
        out = session.run(0)
        dump = tmp_path / f"{func}.json"
        dump.write_text(json.dumps({"memory_ids": runner.model.config.memory_ids,
                                    "prompt_ids": session.prompt, "generated_ids": out.generated}))
        r = subprocess.run([sys.executable, str(SHARED / "tools" / "contract_check.py"), str(ROOT), str(dump)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
