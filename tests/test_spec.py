"""WebAssembly spec cases through the model (fast engine): results and traps as the spec says,
and every invocation's trace equal to the reference interpreter's."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED
from reference_interpreter import ReferenceMachine

CASES = SHARED / "corpus" / "spec" / "cases.jsonl"
ISSUE_FILES = ("i32,int_literals,local_get,local_set,local_tee,nop,select,block,loop,if,br,br_if,return,call,"
               "load,store,address,memory,endianness,unreachable,traps")


def test_spec_replay_of_the_core_files_has_no_failure():
    r = subprocess.run([sys.executable, str(ROOT / "run_wasm.py"), "--spec-cases", str(CASES), "--only", ISSUE_FILES],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    last = r.stdout.strip().splitlines()[-1]
    passed, failed = (int(w) for w in last.replace(",", "").split()[0:3:2])
    assert failed == 0 and passed > 1200, r.stdout[-3000:]


def _value(v):
    x, bits = int(v["value"]), 32 if v["type"] == "i32" else 64
    return x - (1 << bits) if x >> (bits - 1) else x


@pytest.mark.parametrize("module", ["br_if/br_if.0.wasm", "memory_trap/memory_trap.1.wasm",
                                    "call/call.0.wasm", "endianness/endianness.0.wasm"])
def test_spec_traces_equal_the_reference(fast_runner, module):
    rows = [json.loads(line) for line in CASES.read_text().splitlines()]
    rows = [r for r in rows if r["module"] == module]
    wasm = (CASES.parent / module).read_bytes()
    session = fast_runner.session(wasm, [(r["func"], [(v["type"], _value(v)) for v in r["args"]]) for r in rows],
                             strict=False)
    ref = ReferenceMachine(session.program)
    ran = 0
    for k in range(len(rows)):
        if session.program.invocations[k].error:
            continue
        out = session.run(k, 5_000_000)
        assert out.generated == ref.run(k), (module, rows[k]["line"])
        ran += 1
    assert ran > 5


@pytest.mark.parametrize("module", ["i32/i32.0.wasm", "br_if/br_if.0.wasm"])
def test_spec_hull_equals_dense(runner, dense_runner, module):
    """generate() with the hull cache and with the dense scan give the same tokens on spec invocations."""
    rows = [json.loads(line) for line in CASES.read_text().splitlines()]
    rows = [r for r in rows if r["module"] == module][:3]
    wasm = (CASES.parent / module).read_bytes()
    invocations = [(r["func"], [(v["type"], _value(v)) for v in r["args"]]) for r in rows]
    hull = runner.session(wasm, invocations, strict=False)
    dense = dense_runner.session(wasm, invocations, strict=False)
    ran = 0
    for k in range(len(rows)):
        if not hull.program.invocations[k].error:
            assert hull.run(k, 2000).generated == dense.run(k, 2000).generated
            ran += 1
    assert ran
