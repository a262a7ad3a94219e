"""Executor 2: the computation graph, evaluated exactly without weights, reproduces the reference
trace token for token (and every quantity stays an exact integer below 2**53)."""
import pytest

from programs import ALU_WAT, I32_BINARY, I32_UNARY, LOOP_WAT, MIXED_WAT
from reference_interpreter import ReferenceMachine
from toolchain import wat_to_wasm
from wasm_lowering import load_program

QUICK = ["mul", "div_s", "rem_s", "shr_s", "rotl", "and", "ctz", "lt_s"]


def check(evaluator, wat, func, args):
    prog = load_program(wat_to_wasm(wat), [(func, [("i32", a) for a in args])])
    prompt, trace = prog.prompt_ids(), ReferenceMachine(prog).run(0)
    assert evaluator.run(prompt + trace, len(prompt))[:len(trace)] == trace


@pytest.mark.parametrize("op", QUICK)
def test_graph_operator(evaluator, op):
    check(evaluator, ALU_WAT, op, [-123456789, 98765] if op in I32_BINARY else [0x00F0F000])


@pytest.mark.slow
@pytest.mark.parametrize("op", [o for o in I32_BINARY + I32_UNARY if o not in QUICK])
def test_graph_operator_all(evaluator, op):
    check(evaluator, ALU_WAT, op, [-123456789, 98765] if op in I32_BINARY else [0x00F0F000])


def test_graph_loop(evaluator):
    check(evaluator, LOOP_WAT, "f", [4])


@pytest.mark.parametrize("func,args", [("f", [2]), ("oob", [65534]), ("div0", [0])])
def test_graph_mixed(evaluator, func, args):
    check(evaluator, MIXED_WAT, func, args)
