"""Running programs through the model: one `Session` is one module instance whose invocations
run one after another in a single trace (so later calls see the memory and globals earlier
calls left), exactly like a WebAssembly instance. Used by run_wasm.py and the tests."""
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.cache_utils import DynamicCache

from hull_cache import WasmHullCache
from modeling_wasm import WasmForCausalLM
from tokenization_wasm import signed
from wasm_lowering import load_program
from wasm_vocab import EOS, MICRO_OPS, PC_BASE, TRAP_BASE, TRAPS

HERE = Path(__file__).resolve().parent
PROGRESS_CHUNK = 200_000      # tokens the fast engine decodes between progress updates


@dataclass
class Outcome:
    kind: str                       # 'result' | 'trap' | 'stopped' | 'skipped'
    values: list = field(default_factory=list)
    message: str = ""
    generated: list = field(default_factory=list)
    steps: int = 0                  # executed micro-instructions
    seconds: float = 0.0

    @property
    def line(self):
        if self.kind == "result":
            return "result: " + " ".join(map(str, self.values))
        if self.kind == "trap":
            return "trap: " + self.message
        if self.kind == "stopped":
            return f"stopped: token limit {self.message} reached"
        return "skipped: " + self.message


def read_outcome(program, generated, limit):
    """What the generated tokens say: the RESULT records' values and HALT, or a trap."""
    values, steps = [], 0
    i = 0
    while i < len(generated):
        tok = generated[i]
        if tok < PC_BASE:
            i += 1
            continue
        steps += 1
        op = program.instrs[tok - PC_BASE].op
        j = i + 1
        while j < len(generated) and generated[j] < 256:
            j += 1
        payload = generated[i + 1:j]
        if j < len(generated) and TRAP_BASE <= generated[j] < TRAP_BASE + len(TRAPS):
            return Outcome("trap", message=TRAPS[generated[j] - TRAP_BASE], generated=generated, steps=steps)
        if op.name == "HALT" and j < len(generated) and generated[j] == EOS:
            return Outcome("result", values, generated=generated, steps=steps)
        if op.name.startswith("RESULT") and len(payload) == op.width:
            values.append(signed(int.from_bytes(bytes(payload), "big"), op.width))
        i = j
    return Outcome("stopped", message=str(limit), generated=generated, steps=steps)


class Runner:
    """The model, loaded once. engine: 'fast' (the compiled decoder of fast_engine.py, falling
    back to 'hull' with a message where it cannot be built), 'hull' (generate with the hull
    cache) or 'dense' (generate scanning every key: the reference path)."""

    def __init__(self, model_dir=HERE, dense=False, engine=None):
        self.model = WasmForCausalLM.from_pretrained(str(model_dir))
        self.model.eval()
        self.engine = "dense" if dense else (engine or "hull")
        self.dense = self.engine == "dense"
        self.fast = None
        if self.engine == "fast":
            try:
                from fast_engine import FastEngine
                self.fast = FastEngine(str(model_dir))
            except Exception as e:                      # no C compiler, unsupported config...
                print(f"fast engine unavailable ({e}); using the hull path", file=sys.stderr)
                self.engine = "hull"
        self.supported = set(self.model.config.supported_micro_ops) or {m.name for m in MICRO_OPS}

    def session(self, wasm, invocations, strict=True):
        return Session(self, load_program(wasm, invocations, strict, self.supported))

    def run(self, wasm, func, args=(), max_new_tokens=1_000_000):
        return self.session(wasm, [(func, list(args))]).run(0, max_new_tokens)


class Session:
    def __init__(self, runner, program):
        self.runner, self.program = runner, program
        self.ids = None
        cfg = runner.model.config
        self.cache = DynamicCache() if runner.dense else WasmHullCache(cfg)
        self.prompt = program.prompt_ids()

    def run(self, k, max_new_tokens=1_000_000, streamer=None, progress=None):
        """Run invocation k. progress(new_tokens): called as the fast engine decodes chunks."""
        inv = self.program.invocations[k]
        if inv.error:
            return Outcome("skipped", message=inv.error)
        if self.ids is None:
            self.prompt = self.program.prompt_ids(k)
        ids = self.prompt if self.ids is None else self.ids + self.program.enter_ids(k)
        start = time.perf_counter()
        fast = self.runner.fast
        if fast is not None and streamer is None:
            chunk = PROGRESS_CHUNK if progress else max_new_tokens
            if self.ids is None:
                gen = fast.generate(ids, min(chunk, max_new_tokens), self.runner.model.config.memory_ids)
            else:
                if getattr(fast, "owner", None) is not self:
                    raise RuntimeError("the fast engine holds another session's trace")
                gen = fast.continue_(self.program.enter_ids(k), min(chunk, max_new_tokens))
            while progress and gen and gen[-1] != EOS and len(gen) < max_new_tokens:
                progress(gen)
                gen += fast.continue_([], min(chunk, max_new_tokens - len(gen)))
            if progress:
                progress(gen)
            fast.owner = self
            self.ids = ids + gen
            outcome = read_outcome(self.program, gen, max_new_tokens)
            outcome.seconds = time.perf_counter() - start
            return outcome
        with torch.no_grad():
            out = self.runner.model.generate(torch.tensor([ids]), cache=self.cache, max_new_tokens=max_new_tokens,
                                             streamer=streamer)
        self.ids = out[0].tolist()
        outcome = read_outcome(self.program, self.ids[len(ids):], max_new_tokens)
        outcome.seconds = time.perf_counter() - start
        self.last_prompt = ids
        return outcome
