"""The package as a Hugging Face model: Auto classes with remote code, tokenizer, generate, the
text-generation pipeline and TextStreamer, all offline; then a push to a fake Hub on 127.0.0.1 and
a download back from it (tests/fake_hub.py). Every `result:` line is checked against wasmtime."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import wasmtime
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, TextStreamer,
                          pipeline)

from fake_hub import FakeHub

ROOT = Path(__file__).resolve().parent.parent
# what a Hub repo of this model holds: config, weights, the remote code and the tokenizer files
PACKAGE = ["config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json",
           "special_tokens_map.json", "README.md", "configuration_wasm.py", "modeling_wasm.py",
           "hull_cache.py", "tokenization_wasm.py", "wasm_binary.py", "wasm_lowering.py", "wasm_vocab.py"]
MAX_NEW_TOKENS = 5000          # every program here halts far sooner


@dataclass(frozen=True)
class Case:
    wat: str
    func: str
    args: tuple = ()

    @property
    def prompt(self):
        return f'{self.wat} (invoke "{self.func}"' + "".join(f" (i32.const {a})" for a in self.args) + ")"

    def wasmtime_line(self):
        """wasmtime's outcome as the trace's last line; for a trap, wasmtime's whole message."""
        engine = wasmtime.Engine()
        store = wasmtime.Store(engine)
        instance = wasmtime.Instance(store, wasmtime.Module(engine, self.wat), [])
        try:
            values = instance.exports(store)[self.func](store, *self.args)
        except wasmtime.Trap as trap:
            return f"trap: {trap}"
        values = [] if values is None else values if isinstance(values, list) else [values]
        return "result: " + " ".join(map(str, values))


ADD = Case('(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))',
           "add", (2, 40))
LOOP = Case("""(module (func (export "sum") (param $n i32) (result i32) (local $s i32)
  (block $done (loop $top
    (br_if $done (i32.eqz (local.get $n)))
    (local.set $s (i32.add (local.get $s) (local.get $n)))
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (br $top)))
  (local.get $s)))""", "sum", (3,))
PAIR = Case('(module (func (export "pair") (param i32) (result i32 i32) '
            'local.get 0 local.get 0 i32.const -7 i32.add))', "pair", (5,))
TRAP = Case('(module (func (export "f") unreachable))', "f")
UNREACHABLE = "trap: wasm `unreachable` instruction executed"


def last_line(text):
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def assert_matches_wasmtime(line, case):
    expected = case.wasmtime_line()
    if expected.startswith("trap: "):
        assert line.startswith("trap: ") and line[len("trap: "):] in expected, (line, expected)
    else:
        assert line == expected


# ---- offline, in this process ------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def offline():
    """Everything but the fake-Hub round trip runs with the Hub switched off: any HTTP request
    huggingface_hub would make raises instead."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def pipe():
    return pipeline("text-generation", model=str(ROOT), trust_remote_code=True)


@pytest.fixture(scope="module")
def model(pipe):
    """The pipeline's model, loaded by AutoModelForCausalLM; shared because a model's first
    generate builds its constant hulls, which takes seconds."""
    return pipe.model


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ROOT, trust_remote_code=True)


def run(model, tokenizer, case, **kwargs):
    """(generated ids, decoded trace) of one invocation."""
    enc = tokenizer(case.prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, **kwargs)
    new = out[0, enc["input_ids"].shape[1]:]
    return new.tolist(), tokenizer.decode(new)


@pytest.fixture(scope="module")
def add_run(model, tokenizer):
    return run(model, tokenizer, ADD)


def test_auto_classes_load_every_weight_in_float64():
    model, info = AutoModelForCausalLM.from_pretrained(ROOT, trust_remote_code=True, output_loading_info=True)
    config = AutoConfig.from_pretrained(ROOT, trust_remote_code=True)
    assert type(config).__name__ == "WasmConfig" and config.model_type == "wasm_transformer"
    assert type(model).__name__ == "WasmForCausalLM"
    base, base_info = AutoModel.from_pretrained(ROOT, trust_remote_code=True, output_loading_info=True)
    for m, i in ((model, info), (base, base_info)):
        assert not i["missing_keys"] and not i["unexpected_keys"] and not i["mismatched_keys"], i
        assert m.dtype == torch.float64
        assert all(p.dtype == torch.float64 for p in m.parameters())
    assert torch.equal(base.lm_head.weight, model.lm_head.weight)


def test_auto_tokenizer_is_the_remote_wasm_tokenizer(tokenizer, model):
    assert type(tokenizer).__name__ == "WasmTokenizer"
    assert tokenizer.eos_token == tokenizer.pad_token == "</s>"
    assert tokenizer.eos_token_id == model.config.eos_token_id == model.generation_config.eos_token_id
    assert tokenizer.model_max_length > 10 ** 9


def test_generate_matches_wasmtime(add_run, model, tokenizer):
    ids, text = add_run
    assert ids[-1] == tokenizer.eos_token_id
    assert_matches_wasmtime(last_line(text), ADD)


def test_generate_loop_matches_wasmtime(model, tokenizer):
    _, text = run(model, tokenizer, LOOP)
    assert last_line(text) == LOOP.wasmtime_line() == "result: 6"
    assert text.count(" ADD ") >= 3                      # the loop body ran once per iteration


def test_generate_trap_matches_wasmtime(model, tokenizer):
    _, text = run(model, tokenizer, TRAP)
    assert last_line(text) == UNREACHABLE
    assert_matches_wasmtime(last_line(text), TRAP)


def test_hull_and_dense_generate_identical_tokens(add_run, model, tokenizer):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # the dense path is many tiny ops: threads only contend (5x slower here)
    try:
        dense_ids, dense_text = run(model, tokenizer, ADD, cache_implementation="dense")
    finally:
        torch.set_num_threads(threads)
    hull_ids, hull_text = run(model, tokenizer, ADD, cache_implementation="hull")
    assert dense_ids == hull_ids == add_run[0]
    assert dense_text == hull_text


def test_pipeline_returns_prompt_then_trace(pipe, add_run):
    [out] = pipe(ADD.prompt)
    text = out["generated_text"]
    assert text.startswith(ADD.prompt + "\n")
    assert text == ADD.prompt + add_run[1]
    assert_matches_wasmtime(last_line(text), ADD)
    assert pipe.model.dtype == torch.float64
    [new] = pipe(ADD.prompt, return_full_text=False)
    assert new["generated_text"] == add_run[1]


def test_pipeline_trap(pipe):
    [out] = pipe(TRAP.prompt)
    assert out["generated_text"].startswith(TRAP.prompt)
    assert last_line(out["generated_text"]) == UNREACHABLE
    assert_matches_wasmtime(last_line(out["generated_text"]), TRAP)


@pytest.mark.parametrize("skip_prompt", [True, False])
def test_text_streamer_with_generate(model, tokenizer, add_run, capsys, skip_prompt):
    enc = tokenizer(ADD.prompt, return_tensors="pt")
    model.generate(**enc, streamer=TextStreamer(tokenizer, skip_prompt=skip_prompt),
                   max_new_tokens=MAX_NEW_TOKENS)
    streamed = capsys.readouterr().out
    assert streamed == add_run[1] + "\n"                 # TextStreamer.end() prints a last newline
    assert_matches_wasmtime(last_line(streamed), ADD)


def test_text_streamer_keeps_every_result_value(model, tokenizer, capsys):
    """TextStreamer restarts decoding after each newline; two RESULT records must still both
    reach the `result:` line."""
    enc = tokenizer(PAIR.prompt, return_tensors="pt")
    out = model.generate(**enc, streamer=TextStreamer(tokenizer, skip_prompt=True), max_new_tokens=MAX_NEW_TOKENS)
    streamed = capsys.readouterr().out
    assert streamed == tokenizer.decode(out[0, enc["input_ids"].shape[1]:]) + "\n"
    assert last_line(streamed) == PAIR.wasmtime_line() == "result: 5 -2"


def test_text_streamer_with_pipeline(pipe, add_run, capsys):
    [out] = pipe(ADD.prompt, streamer=TextStreamer(pipe.tokenizer, skip_prompt=True))
    streamed = capsys.readouterr().out
    assert streamed == add_run[1] + "\n"
    assert out["generated_text"] == ADD.prompt + add_run[1]
    assert_matches_wasmtime(last_line(streamed), ADD)


# ---- push to a fake Hub and load back, in a client process pointed at it -----------------------
CLIENT = textwrap.dedent("""
    import faulthandler, inspect, json, sys
    faulthandler.dump_traceback_later(float(sys.argv[4]), exit=True)      # never hang the test
    repo_id, folder, prompt = sys.argv[1:4]
    from huggingface_hub import create_repo, upload_folder
    create_repo(repo_id)
    upload = upload_folder(repo_id=repo_id, folder_path=folder, commit_message="wasm-transformer")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    config = AutoConfig.from_pretrained(repo_id, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
    enc = tok(prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=%d)
    new = out[0, enc["input_ids"].shape[1]:]
    push = model.push_to_hub(repo_id)
    print(json.dumps({"upload": upload.oid, "push": push.oid, "ids": new.tolist(), "text": tok.decode(new),
                      "dtype": str(model.dtype), "config": type(config).__name__,
                      "code": [inspect.getfile(type(x)) for x in (config, model, tok)]}))
""" % MAX_NEW_TOKENS)
REPO = "fake-user/wasm-transformer"


@pytest.fixture(scope="module")
def hub_round_trip(tmp_path_factory):
    """Stage the package, then in a fresh process: create_repo, upload_folder, Auto* from the fake
    Hub (cache in a temp HF_HOME), generate, model.push_to_hub. Weights go through the LFS route."""
    tmp = tmp_path_factory.mktemp("hub")
    folder = tmp / "package"
    folder.mkdir()
    for name in PACKAGE:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, folder / name)
    with FakeHub(lfs_threshold=1 << 20) as hub:
        env = hub.client_env(tmp / "hf_home")
        env["PYTHONPATH"] = ""                            # the code must come from the Hub, not ROOT
        proc = subprocess.run([sys.executable, "-c", CLIENT, REPO, str(folder), ADD.prompt, "200"],
                              env=env, cwd=tmp, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"hub": hub, "result": result, "folder": folder, "hf_home": tmp / "hf_home"}


def test_fake_hub_served_every_request(hub_round_trip):
    hub = hub_round_trip["hub"]
    assert hub.unknown == []
    assert any(m == "PUT" and p.startswith("/_lfs/") for m, p in hub.log)          # weights went by LFS
    assert any(m == "GET" and p.startswith(f"/{REPO}/resolve/") and p.endswith("/model.safetensors")
               for m, p in hub.log)


def test_upload_folder_stores_the_whole_package(hub_round_trip):
    hub, folder = hub_round_trip["hub"], hub_round_trip["folder"]
    repo = hub.repos[("model", REPO)]
    assert hub_round_trip["result"]["upload"] == repo.commits[1]
    staged = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "modeling_wasm.py"} <= staged.keys()
    assert "model.safetensors" in repo.snapshots[repo.commits[1]][1]
    assert hub.files(REPO, revision=repo.commits[1]) == staged


def test_model_from_hub_reproduces_the_trace(hub_round_trip, add_run):
    result, hf_home = hub_round_trip["result"], hub_round_trip["hf_home"]
    assert result["config"] == "WasmConfig" and result["dtype"] == "torch.float64"
    assert all(Path(f).is_relative_to(hf_home) for f in result["code"]), result["code"]   # remote code
    assert (hf_home / "hub" / ("models--" + REPO.replace("/", "--"))).is_dir()
    assert result["ids"] == add_run[0] and result["text"] == add_run[1]
    assert_matches_wasmtime(last_line(result["text"]), ADD)


def test_model_push_to_hub_completes(hub_round_trip):
    from safetensors.torch import load
    hub, result = hub_round_trip["hub"], hub_round_trip["result"]
    repo = hub.repos[("model", REPO)]
    assert result["push"] == repo.sha and len(repo.commits) == 3
    files = hub.files(REPO)
    assert "README.md" in files
    assert json.loads(files["config.json"])["auto_map"]["AutoModelForCausalLM"] == "modeling_wasm.WasmForCausalLM"
    pushed, original = load(files["model.safetensors"]), load((ROOT / "model.safetensors").read_bytes())
    strip = lambda k: k.removeprefix("model.")                                        # noqa: E731
    assert {strip(k) for k in pushed} == {strip(k) for k in original}
    original = {strip(k): v for k, v in original.items()}
    assert all(torch.equal(v, original[strip(k)]) for k, v in pushed.items())
