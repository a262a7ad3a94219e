#!/usr/bin/env python3
"""Run WebAssembly through the transformer.

    python run_wasm.py PROGRAM.{c,wat,wasm} [--invoke NAME] [--args 1 2] [--max-new-tokens N]
                       [--dump-tokens FILE] [--trace] [--dense]
    python run_wasm.py --spec-cases FILE.jsonl [--dense]

A run ends with `result: <values>`, `trap: <reason>` or `stopped: token limit N reached`.
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from wasm_binary import decode_module
from wasm_lowering import InvocationError


def pick_function(module, name):
    funcs = [n for n, (kind, _) in module.exports.items() if kind == "func"]
    if name is None:
        if "run" in funcs:
            return "run"
        if len(funcs) == 1:
            return funcs[0]
        raise InvocationError(f"several exports, pick one with --invoke: {', '.join(funcs) or 'none'}")
    if name not in funcs:
        raise InvocationError(f"unknown export {name!r} (exported functions: {', '.join(funcs) or 'none'})")
    return name


def typed_args(module, func, texts):
    from tokenization_wasm import parse_int
    params = module.func_types[module.exports[func][1]].params
    if len(texts) != len(params):
        raise InvocationError(f"{func!r} takes {len(params)} argument(s) ({' '.join(params) or 'none'}), "
                              f"got {len(texts)}")
    out = []
    for ty, text in zip(params, texts):
        if ty not in ("i32", "i64"):
            raise InvocationError(f"unsupported parameter type {ty}")
        out.append((ty, parse_int(text, ty)))
    return out


def run_program(a):
    from toolchain import load_wasm
    from wasm_runner import Runner
    wasm = load_wasm(a.program, a.opt)
    module = decode_module(wasm)
    func = pick_function(module, a.invoke)
    args = typed_args(module, func, a.args)
    runner = Runner(engine="dense" if a.dense else a.engine)
    session = runner.session(wasm, [(func, args)])
    bar = None
    if not a.quiet and sys.stderr.isatty() and runner.fast is not None:
        from tqdm import tqdm
        from wasm_vocab import PC_BASE
        bar = tqdm(total=a.max_new_tokens, unit="tok", unit_scale=True, file=sys.stderr, leave=False,
                   desc="decoding")
        bar.steps = 0

        def progress(gen):             # tokens, executed micro-instructions, tokens/s
            bar.steps += sum(1 for t in gen[bar.n:] if t >= PC_BASE)
            bar.set_postfix(steps=bar.steps, refresh=False)
            bar.update(len(gen) - bar.n)
    outcome = session.run(0, a.max_new_tokens, progress=progress if bar is not None else None)
    if bar is not None:
        bar.close()
    if a.dump_tokens:
        Path(a.dump_tokens).write_text(json.dumps({"memory_ids": runner.model.config.memory_ids, "prompt_ids": session.prompt,
                                                   "generated_ids": outcome.generated}))
    if a.trace:
        from tokenization_wasm import WasmTokenizer
        tok = WasmTokenizer()
        tok.program = session.program
        for line in tok.render(outcome.generated):
            if not line.startswith(("result:", "trap:")):
                print(line, end="")
    if not a.quiet:
        n = len(outcome.generated)
        print(f"{outcome.steps} steps, {n} tokens in {outcome.seconds:.2f} s "
              f"({n / max(outcome.seconds, 1e-9):,.0f} tokens/s, {runner.engine} path)",
              file=sys.stderr)
    print(outcome.line)
    return 0


def spec_value(v):
    bits = 32 if v["type"] == "i32" else 64
    x = int(v["value"])
    return x - (1 << bits) if x >> (bits - 1) else x


def run_spec(a):
    from wasm_runner import Runner
    path = Path(a.spec_cases)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups = []
    for row in rows:
        if groups and groups[-1][0] == row["module"]:
            groups[-1][1].append(row)
        else:
            groups.append((row["module"], [row]))
    runner = Runner(engine="dense" if a.dense else a.engine)
    passed = failed = 0
    skipped = Counter()
    for module_path, cases in groups:
        if a.only and not any(module_path.startswith(p + "/") for p in a.only.split(",")):
            continue
        wasm = (path.parent / module_path).read_bytes()
        invocations = []
        try:
            for c in cases:
                invocations.append((c["func"], [(v["type"], spec_value(v)) for v in c["args"]]))
            session = runner.session(wasm, invocations, strict=False)
        except (ValueError, KeyError) as e:
            for _ in cases:
                skipped[str(e)] += 1
            continue
        for k, c in enumerate(cases):
            out = session.run(k, a.max_new_tokens)
            if out.kind == "skipped":
                skipped[out.message] += 1
                continue
            if c["kind"] == "assert_return":
                ok = out.kind == "result" and out.values == [spec_value(v) for v in c["expected"]]
            elif c["kind"] == "assert_trap":
                ok = out.kind == "trap"
            else:
                ok = out.kind == "result"
            passed += ok
            failed += not ok
            if not ok:
                print(f"FAIL {c['wast']}:{c['line']} {c['func']} {c['args']} expected {c['kind']} "
                      f"{c.get('expected') or c.get('text')}, got {out.line}")
    for reason, n in skipped.most_common():
        print(f"skipped {n}: {reason}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("program", nargs="?", help="a .c, .wat or .wasm file")
    ap.add_argument("--invoke", help="the exported function to call (default: run, or the only export)")
    ap.add_argument("--args", nargs="*", default=[], help="arguments (i32/i64 literals)")
    ap.add_argument("--max-new-tokens", type=int, default=5_000_000)
    ap.add_argument("--dump-tokens", help="write the token streams as contract JSON")
    ap.add_argument("--trace", action="store_true", help="print the execution trace")
    ap.add_argument("--engine", choices=["fast", "hull", "dense"], default="fast",
                    help="fast: the compiled exact decoder (default); hull: generate() with the hull cache; "
                         "dense: generate() scanning every key (the reference path)")
    ap.add_argument("--dense", action="store_true", help="same as --engine dense")
    ap.add_argument("--opt", default="-O2", help="C optimisation level (default -O2)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--spec-cases", help="replay WebAssembly spec cases (JSON lines)")
    ap.add_argument("--only", help="with --spec-cases: comma-separated spec file names to replay")
    a = ap.parse_args(argv)
    if a.spec_cases:
        return run_spec(a)
    if not a.program:
        ap.error("give a PROGRAM or --spec-cases")
    try:
        return run_program(a)
    except (ValueError, RuntimeError, OSError) as e:     # WasmError, InvocationError, bad literals, C errors
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
