"""The scriptable interface: run_wasm.py on .wat/.wasm/.c files, dumps, and clear errors."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SHARED
from programs import LOOP_WAT
from toolchain import Wasmtime, wat_to_wasm


def cli(*args):
    r = subprocess.run([sys.executable, str(ROOT / "run_wasm.py"), "--quiet", *map(str, args)],
                       capture_output=True, text=True, cwd=ROOT)
    return r.returncode, r.stdout.strip().splitlines(), r.stderr


def test_wat_and_wasm_and_dump(tmp_path):
    wat = tmp_path / "loop.wat"
    wat.write_text(LOOP_WAT)
    expected = "result: %d" % Wasmtime(wat_to_wasm(LOOP_WAT)).call("f", [6])[1][0]
    code, out, _ = cli(wat, "--args", 6)
    assert code == 0 and out[-1] == expected
    wasm = tmp_path / "loop.wasm"
    wasm.write_bytes(wat_to_wasm(LOOP_WAT))
    dump = tmp_path / "dump.json"
    code, out, _ = cli(wasm, "--invoke", "f", "--args", 6, "--dump-tokens", dump)
    assert out[-1] == expected
    d = json.loads(dump.read_text())
    assert set(d) == {"memory_ids", "prompt_ids", "generated_ids"} and d["generated_ids"][-1] == 256


def test_c_program():
    code, out, err = cli(ROOT / "examples" / "gcd.c", "--args", 1071, 462)
    assert code == 0 and out[-1] == "result: 21", err


def test_token_limit(tmp_path):
    wat = tmp_path / "loop.wat"
    wat.write_text(LOOP_WAT)
    code, out, _ = cli(wat, "--args", 50, "--max-new-tokens", 40)
    assert out[-1] == "stopped: token limit 40 reached"


@pytest.mark.parametrize("blob,words", [
    (b"\x00asm\x01\x00\x00\x00\x01\x05", ["at byte offset"]),
    (b"not wasm at all", ["at byte offset"]),
])
def test_malformed_module_is_a_clear_error(tmp_path, blob, words):
    p = tmp_path / "bad.wasm"
    p.write_bytes(blob)
    code, out, err = cli(p)
    assert code == 2 and not out and "Traceback" not in err
    assert all(w in err for w in words) and err.startswith("error:")


def test_unknown_export_and_wrong_arguments(tmp_path):
    p = tmp_path / "loop.wat"
    p.write_text(LOOP_WAT)
    code, _, err = cli(p, "--invoke", "nope")
    assert code == 2 and "unknown export 'nope'" in err
    code, _, err = cli(p, "--args", 1, 2)
    assert code == 2 and "takes 1 argument" in err


def test_unsupported_instruction_names_it(tmp_path):
    p = tmp_path / "f.wat"
    p.write_text('(module (func (export "f") (result f32) (f32.const 1.5)))')
    code, _, err = cli(p)
    assert code == 2 and "f32" in err and "byte offset" in err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_progress_bar_in_a_terminal():
    """In a real terminal (tmux) a long run shows tokens, steps and tokens/s while it decodes."""
    session = f"wasm-progress-{os.getpid()}"
    cmd = f"cd {ROOT} && {sys.executable} run_wasm.py {SHARED / 'corpus' / 'c' / 'fib.c'}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "20", cmd], check=True)
    try:
        seen = ""
        for _ in range(60):
            time.sleep(0.5)
            seen = subprocess.run(["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True).stdout
            if "steps=" in seen:
                break
        assert "decoding:" in seen and "tok/s" in seen and "steps=" in seen, seen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session])
