"""The C corpus (zig, -O2, -mcpu=mvp) through the model: wasmtime's results, and traces equal to
the reference interpreter's token for token (about 30 s on the fast engine: fib is 1.5M tokens)."""
import pytest

from conftest import ROOT, SHARED
from reference_interpreter import ReferenceMachine
from toolchain import Wasmtime, compile_c

EXPECTED = {"fib": 6765, "bubble": 3416315, "hungarian": 83}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_c_program_through_the_model(fast_runner, name):
    wasm = compile_c(SHARED / "corpus" / "c" / f"{name}.c", "-O2")
    assert Wasmtime(wasm).call("run", []) == ("result", [EXPECTED[name]])
    session = fast_runner.session(wasm, [("run", [])])
    out = session.run(0, 5_000_000)
    assert out.kind == "result" and out.values == [EXPECTED[name]]
    assert out.generated == ReferenceMachine(session.program).run(0)


def test_dense_scan_equals_hull_on_hungarian():
    """The C engine's brute-force mode scores every key like the dense path (the contract's float64
    formula); on a whole corpus program it gives the hull's tokens."""
    from fast_engine import FastEngine
    from wasm_lowering import load_program
    wasm = compile_c(SHARED / "corpus" / "c" / "hungarian.c", "-O2")
    prompt = load_program(wasm, [("run", [])]).prompt_ids()
    engine = FastEngine(str(ROOT))
    hull = engine.generate(prompt, 100_000)
    engine.set_attn_mode("brute")
    dense = engine.generate(prompt, 100_000)
    assert dense == hull and hull[-1] == 256
