#!/usr/bin/env python3
"""Decode speed vs sequence length: FastEngine (C) against the PyTorch hull and dense caches.

    python benchmarks/decode_speed.py [--quick] [--n 20000] [--hull-s 60] [--dense-s 60]

The loop program f(N) (f(20000): 240K wasm instructions, 1.22M tokens) is decoded in chunks by each
path, in one run, recording time per token against the position t: FastEngine the whole run (checked
against the reference interpreter), the PyTorch hull and dense paths until their time budget is spent.
Wasm instructions are counted by pywasm (--trace-tool: every executed instruction but end/else);
wasmtime and plain pywasm run the same module for comparison, and a C program (--c-program) runs on
the fast path too. Writes benchmarks/decode_speed.json and .png (matplotlib).
"""
import argparse
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOOP_WAT = ('(module (func (export "f") (param i32) (result i32) (local i32) (loop (local.set 1 (i32.add '
            '(local.get 1) (i32.rem_u (local.get 0) (i32.const 7)))) (local.set 0 (i32.sub (local.get 0) '
            '(i32.const 1))) (br_if 0 (local.get 0))) (local.get 1)))')
SHARED = Path("/work/shared")


# ---- wasm baselines: instruction count (pywasm trace tool), wasmtime and plain pywasm timings ----
def count_instructions(tool, wasm, func, args):
    """(n_instr, n_end) from the pywasm trace tool, run as a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        (path := Path(tmp) / "module.wasm").write_bytes(wasm)
        cmd = [sys.executable, str(tool), str(path), "--func", func, "--args", *map(str, args)]
        err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    return tuple(int(v) for v in re.search(r"n_instr=(\d+) n_end=(\d+)", err).groups())


def median_s(reps, setup, call):
    """Median seconds of call(setup()) (a fresh instance each time: state; setup not timed), last result."""
    times = []
    for _ in range(reps):
        obj = setup()
        t0 = time.perf_counter()
        out = call(obj)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def time_wasmtime(wasm, func, args, reps=7):
    from toolchain import Wasmtime
    return median_s(reps, lambda: Wasmtime(wasm), lambda inst: inst.call(func, list(args)))


def time_pywasm(wasm, func, args, reps=3):
    import pywasm

    def setup():
        rt = pywasm.core.Runtime()
        return rt, rt.instance(pywasm.core.ModuleDesc.from_reader(io.BytesIO(wasm)))
    return median_s(reps, setup, lambda ri: ri[0].invocate(ri[1], func, list(args)))[0]


# ---- decoding in chunks: [(t_mid, tokens, seconds)] ----
def chunk_size(t, lo, hi):
    return int(min(hi, max(lo, t // 8)))          # small chunks early: points spread on a log axis


def fast_chunks(eng, prompt, total, lo=500, hi=10000):
    eng.generate(prompt, 0)                       # reset + feed the prompt (prefill), not timed
    rows, toks = [], []
    while len(toks) < total:
        t0, n = eng.position(), min(chunk_size(eng.position(), lo, hi), total - len(toks))
        s = time.perf_counter()
        got = eng.continue_([], n)
        rows.append((t0 + len(got) / 2, len(got), time.perf_counter() - s))
        toks += got
        if len(got) < n:
            break                                 # EOS
    return rows, toks


def torch_chunks(model, cache, prompt, budget_s, max_tokens, lo, hi):
    import torch
    seq = torch.tensor([prompt])
    rows = []
    with torch.no_grad():
        seq, start = model.generate(seq, cache=cache, max_new_tokens=1), time.perf_counter()  # prefill: untimed
        while not rows or time.perf_counter() - start < budget_s and seq.shape[1] - len(prompt) < max_tokens:
            t0, n = seq.shape[1], chunk_size(seq.shape[1], lo, hi)
            s = time.perf_counter()
            seq = model.generate(seq, cache=cache, max_new_tokens=n)
            rows.append((t0 + (seq.shape[1] - t0) / 2, seq.shape[1] - t0, time.perf_counter() - s))
    return rows, seq[0, len(prompt):].tolist()


def per_token_at(rows, t, spread=1.2, fastest=False):
    """Mean (or fastest chunk's) seconds per token over the chunks with middle in [t/spread, t*spread]."""
    sel = [(n, dt) for tm, n, dt in rows if t / spread <= tm <= t * spread]
    if not sel:
        return None
    return min(dt / n for n, dt in sel) if fastest else sum(dt for _, dt in sel) / sum(n for n, _ in sel)


def us(x):
    return "-" if x is None else f"{x * 1e6:,.1f} us"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="f(2000) (~122K tokens), 10 s per PyTorch path")
    ap.add_argument("--n", type=int, default=None, help="loop argument (default 20000; --quick 2000)")
    ap.add_argument("--hull-s", type=float, default=None, help="PyTorch hull path budget, s (60; --quick 10)")
    ap.add_argument("--dense-s", type=float, default=None, help="PyTorch dense path budget, s (60; --quick 10)")
    ap.add_argument("--hull-max", type=int, default=20000, help="at most this many hull-path tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: like the C engine; steadier)")
    ap.add_argument("--trace-tool", default=str(SHARED / "tools/trace_pywasm.py"))
    ap.add_argument("--c-program", default=str(SHARED / "corpus/c/hungarian.c"), help="C program, entry 'run'")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/decode_speed"), help="prefix for .json/.png")
    a = ap.parse_args(argv)
    N = a.n or (2000 if a.quick else 20000)
    hull_s, dense_s = [(10 if a.quick else 60) if v is None else v for v in (a.hull_s, a.dense_s)]

    from fast_engine import FastEngine
    from reference_interpreter import ReferenceMachine
    from toolchain import compile_c, wat_to_wasm
    from wasm_lowering import load_program
    res = {"n": N, "quick": a.quick}

    # 1. fast path over the whole run
    wasm = wat_to_wasm(LOOP_WAT)
    prog = load_program(wasm, [("f", [("i32", N)])])
    prompt = prog.prompt_ids()
    expected = ReferenceMachine(prog).run(0)
    eng = FastEngine(str(ROOT))
    eng.generate(prompt, 1)                       # warm-up: builds the cross-attention memory hulls
    c0 = time.process_time()
    rows, toks = fast_chunks(eng, prompt, len(expected) + 10)
    cpu = time.process_time() - c0
    assert toks == expected, "fast path: tokens differ from the reference trace"
    wall = sum(dt for _, _, dt in rows)
    print(f"f({N}): prompt {len(prompt)} tokens, trace {len(toks):,} tokens; fast path "
          f"{wall:.2f} s wall / {cpu:.2f} s cpu, tokens == reference trace")
    res["fast"] = {"rows": rows, "tokens": len(toks), "wall_s": wall, "cpu_s": cpu,
                   "max_hull_chain": max(s["upper"] + s["lower"] for s in eng.stats())}

    # 4. wasm instruction count, wasmtime and pywasm on the same module and argument
    n_instr, n_end = count_instructions(a.trace_tool, wasm, "f", [N])
    wt_s, wt_out = time_wasmtime(wasm, "f", [N])
    pw_s = time_pywasm(wasm, "f", [N])
    res["loop_wasm"] = {"n_instr": n_instr, "n_end": n_end, "wasmtime_s": wt_s, "pywasm_s": pw_s, "result": wt_out}

    # 2./3. PyTorch paths (same model, same prompt): hull cache and dense DynamicCache
    import torch
    from transformers.cache_utils import DynamicCache
    from hull_cache import WasmHullCache
    from modeling_wasm import WasmForCausalLM
    torch.set_num_threads(a.threads)
    model = WasmForCausalLM.from_pretrained(str(ROOT)).eval()
    for name, cache, budget, cap, lo, hi in (("hull", WasmHullCache(model.config), hull_s, a.hull_max, 100, 2000),
                                             ("dense", DynamicCache(), dense_s, 10 ** 9, 50, 250)):
        t_rows, gen = torch_chunks(model, cache, prompt, budget, cap, lo, hi)
        assert gen == expected[:len(gen)], f"{name} path: tokens differ from the reference trace"
        print(f"{name} path: {len(gen):,} tokens in {sum(r[2] for r in t_rows):.1f} s, tokens == reference")
        res[name] = {"rows": t_rows, "tokens": len(gen)}

    # 5. a C program on the fast path
    cres = None
    if Path(a.c_program).is_file():
        cw = compile_c(a.c_program, "-O2")
        cprog = load_program(cw, [("run", [])])
        cexp = ReferenceMachine(cprog).run(0)
        fast_s, got = median_s(3, lambda: eng.generate(cprog.prompt_ids(), 0),   # prompt fed, not timed
                               lambda _: eng.continue_([], len(cexp) + 10))
        assert got == cexp, "C program: fast-path tokens differ from the reference trace"
        ci, ce = count_instructions(a.trace_tool, cw, "run", [])
        cres = res["c_program"] = {
            "name": Path(a.c_program).name, "prompt": len(cprog.prompt_ids()), "tokens": len(cexp),
            "fast_s": fast_s, "n_instr": ci, "n_end": ce,
            "wasmtime_s": time_wasmtime(cw, "run", [])[0], "pywasm_s": time_pywasm(cw, "run", [])}

    # 6. report
    marks = [t for t in (10_000, 100_000, 1_000_000) if t * 1.1 <= len(toks) + len(prompt)]
    at = res["fast"]["per_token_at"] = {t: per_token_at(rows, t) for t in marks}
    lo = res["fast"]["fastest_chunk_at"] = {t: per_token_at(rows, t, fastest=True) for t in marks}
    cols = (1_000, 3_000, 10_000, 100_000, 1_000_000)
    print("\nPer-token decode time at position t (mean of the chunks with middle in [t/1.2, 1.2 t])\n"
          f"{'path':8s}" + "".join(f"{'t=' + format(t, ','):>16s}" for t in cols))
    for name in ("fast", "hull", "dense"):
        print(f"{name:8s}" + "".join(f"{us(per_token_at(res[name]['rows'], t)):>16s}" for t in cols))
    if len(marks) >= 2:
        print(f"fast path: t={marks[-1]:,} / t={marks[0]:,} per-token time ratio {at[marks[-1]] / at[marks[0]]:.2f} "
              f"(fastest chunks: {us(lo[marks[0]])} -> {us(lo[marks[-1]])}, {lo[marks[-1]] / lo[marks[0]]:.2f})")
    for name in ("hull", "dense"):
        first, last = (r := res[name]["rows"])[min(1, len(r) - 1)], r[-1]      # chunk 0 right after prefill
        res[name]["growth"] = [first[0], first[2] / first[1], last[0], last[2] / last[1]]
        print(f"{name} path: {us(first[2] / first[1])}/token at t~{first[0]:,.0f} -> "
              f"{us(last[2] / last[1])}/token at t~{last[0]:,.0f} (x{(last[2] / last[1]) / (first[2] / first[1]):.2f})")
    import numpy as np                            # dense: per-token time = a + b t (the key scan)
    dr = res["dense"]["rows"]
    b, a0 = (max(c, 0.0) for c in np.polyfit([r[0] for r in dr], [r[2] / r[1] for r in dr], 1))
    T, res["dense"]["fit_a_b"] = len(toks) + len(prompt), [a0, b]
    print(f"dense fit: {a0 * 1e3:.2f} ms + {b * 1e9:.0f} ns * t per token -> {(a0 + b * 1e6) * 1e3:,.0f} ms at t=1M; "
          f"the whole f({N}) run would take ~{(a0 * T + b * T * T / 2) / 3600:,.0f} h dense, "
          f"~{res['hull']['growth'][3] * T / 3600:.1f} h hull (at its last rate), {wall:.0f} s fast")

    def speeds(label, tokens, secs, ni, wt_ips, pw_ips):
        ips = ni / secs
        print(f"{label:34s}{tokens / secs:>10,.0f}{ips:>10,.0f}{tokens / ni:>8.2f}{wt_ips:>14,.0f}"
              f"{pw_ips:>11,.0f}{ips / wt_ips:>12.2e}{ips / pw_ips:>10.2g}")
    print(f"\n{'program [path]':34s}{'tok/s':>10s}{'instr/s':>10s}{'tok/ins':>8s}{'wasmtime i/s':>14s}"
          f"{'pywasm i/s':>11s}{'vs wasmtime':>12s}{'vs pywasm':>10s}")
    wt, pw = n_instr / wt_s, n_instr / pw_s
    speeds(f"loop f({N}) [fast]", len(toks), wall, n_instr, wt, pw)
    H = res["hull"]
    speeds(f"loop f({N}) [hull, {H['tokens']:,} tok]", H["tokens"], sum(r[2] for r in H["rows"]),
           n_instr * H["tokens"] / len(toks), wt, pw)
    if cres:
        speeds(f"{cres['name']} [fast]", cres["tokens"], cres["fast_s"], cres["n_instr"],
               cres["n_instr"] / cres["wasmtime_s"], cres["n_instr"] / cres["pywasm_s"])
    print("instr: executed wasm instructions (trace_pywasm.py, end/else excluded); wasmtime times include the "
          "Python call overhead; the hull row assumes the run's mean tokens per instruction")

    Path(a.out + ".json").write_text(json.dumps(res, indent=1))
    try:
        import matplotlib.pyplot as plt           # no display: the Agg backend (savefig only)
    except ImportError:
        return print("matplotlib not installed: no plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("fast", "-"), ("hull", "o-"), ("dense", "s-")):
        r = res[name]["rows"]
        ax.plot([x[0] for x in r], [x[2] / x[1] * 1e6 for x in r], style, ms=3,
                label=f"{name} ({res[name]['tokens']:,} tokens)")
    ts = np.geomspace(dr[-1][0], T, 30)
    ax.plot(ts, (a0 + b * ts) * 1e6, ":", color="C2", label="dense, a + b t fit extrapolated")
    ax.set(xscale="log", yscale="log", xlabel="position t (tokens)", ylabel="time per token (us)",
           title=f"Greedy decode time per token, loop f({N})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(a.out + ".png", dpi=120, bbox_inches="tight")
    print(f"wrote {a.out}.json and {a.out}.png")


if __name__ == "__main__":
    main()
