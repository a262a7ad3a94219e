#!/usr/bin/env python3
"""Decoding speed: FastEngine (C) against the PyTorch dense and hull-cache paths.

    python benchmarks/fast_engine_speed.py [--arg 20000] [--model-dir DIR] [--dense-tokens 20]
                                           [--hull-tokens 100] [--repeat 2]

Runs the loop program f(arg) (f(20000): ~100K wasm steps, ~1.1M tokens) with FastEngine, checks
the tokens against the reference interpreter, and times a short prefix with the PyTorch paths.
Prints wall-clock and CPU-time tokens/s (the CPU figure is steadier on a shared machine).
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOOP_WAT = ('(module (func (export "f") (param i32) (result i32) (local i32) (loop (local.set 1 (i32.add '
            '(local.get 1) (i32.sub (local.get 0) (i32.const 7)))) (local.set 0 (i32.sub (local.get 0) '
            '(i32.const 1))) (br_if 0 (local.get 0))) (local.get 1)))')


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arg", type=int, default=20000)
    ap.add_argument("--model-dir", default=str(ROOT))
    ap.add_argument("--dense-tokens", type=int, default=20)
    ap.add_argument("--hull-tokens", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)

    import wasmtime
    from fast_engine import FastEngine
    from reference_interpreter import reference_trace
    from wasm_lowering import load_program

    prog = load_program(wasmtime.wat2wasm(LOOP_WAT), [("f", [("i32", a.arg)])])
    prompt = prog.prompt_ids()
    expected, dt, _ = timed(lambda: reference_trace(prog))
    print(f"program f({a.arg}): prompt {len(prompt)} tokens, trace {len(expected):,} tokens "
          f"(reference interpreter {dt:.2f} s)")

    eng, dt, _ = timed(lambda: FastEngine(a.model_dir))
    print(f"FastEngine load (weights + compile/cache): {dt:.2f} s; lm_head groups {eng.lm_groups}")
    _, dt, _ = timed(lambda: eng.generate(prompt, 1))
    print(f"first generate (includes building the cross-attention memory hulls): {dt:.3f} s")
    for r in range(a.repeat):
        out, wall, cpu = timed(lambda: eng.generate(prompt, len(expected) + 10))
        ok = "OK" if out == expected else "MISMATCH vs reference trace"
        print(f"FastEngine: {len(out):,} tokens in {wall:.2f} s wall / {cpu:.2f} s cpu: "
              f"{len(out) / wall:,.0f} tok/s wall, {len(out) / cpu:,.0f} tok/s cpu  [{ok}]")
    big = max(s["upper"] for s in eng.stats())
    print(f"largest hull chain: {big:,} vertices")

    if a.dense_tokens or a.hull_tokens:
        import torch
        from modeling_wasm import WasmForCausalLM
        model = WasmForCausalLM.from_pretrained(a.model_dir)
        model.eval()
        mem = list(eng.default_memory)
        kw = {"memory_ids": torch.tensor([mem])} if mem else {}
        fast_prefix = eng.generate(prompt, max(a.dense_tokens, a.hull_tokens))
        for impl, n in (("dense", a.dense_tokens), ("hull", a.hull_tokens)):
            if not n:
                continue
            with torch.no_grad():
                out, wall, cpu = timed(lambda: model.generate(torch.tensor([prompt]), cache_implementation=impl,
                                                              max_new_tokens=n, **kw))
            gen = out[0, len(prompt):].tolist()
            ok = "OK" if gen == fast_prefix[:len(gen)] else "MISMATCH vs FastEngine"
            print(f"PyTorch {impl:5s}: {len(gen)} tokens (after a {len(prompt)}-token prompt) in {wall:.2f} s: "
                  f"{len(gen) / wall:,.1f} tok/s incl. prefill  [{ok}]")


if __name__ == "__main__":
    main()
