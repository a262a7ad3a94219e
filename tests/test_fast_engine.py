"""Tests of the C fast engine (fast_engine.py + csrc/wasm_engine.c).

* the C hull against an exact brute-force scan (Python ints) on random and degenerate point sets,
  both tie modes, narrow and wide (> 2^60) coordinates;
* tiny synthetic models (random integer weights, hard-max, sum and cross heads, both tie modes)
  against the independent numpy contract implementation (shared/tools/contract_check.py);
* the real model: FastEngine tokens == the dense PyTorch path == the hull-cache path, and the
  reference interpreter's trace, including a continued second invocation.

Run the speed benchmark with ``python benchmarks/fast_engine_speed.py`` (not a test).
"""
import json
import os
import random
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_TOOLS = Path("/work/shared/tools")
if not SHARED_TOOLS.is_dir():
    SHARED_TOOLS = ROOT.parent / "shared" / "tools"
sys.path.insert(0, str(SHARED_TOOLS))

from fast_engine import CHull, FastEngine, load_library  # noqa: E402

try:
    load_library()
except RuntimeError as exc:  # pragma: no cover - no compiler here
    pytest.skip(str(exc), allow_module_level=True)

MODEL_DIR = Path(os.environ.get("WASM_MODEL_DIR", str(ROOT)))


# ------------------------------------------------------------------------------------------------
# the C hull against brute force
# ------------------------------------------------------------------------------------------------
def _ex(v):
    v = float(v)
    return int(v) if v.is_integer() else Fraction(v)


def brute(keys, vals, q, mode):
    """(value pair, index or count) of the exact hard-max over keys (ties latest / mean)."""
    if not keys:
        return (0.0, 0.0), -1
    q0, q1 = _ex(q[0]), _ex(q[1])
    scores = [q0 * _ex(a) + q1 * _ex(b) for a, b in keys]
    best = max(scores)
    T = [j for j, s in enumerate(scores) if s == best]
    if mode == "latest":
        return tuple(vals[T[-1]]), T[-1]
    out = []
    for c in range(2):
        s = sum(int(vals[j][c]) for j in T)
        if s == 0:
            neg = all(vals[j][c] == 0.0 and np.copysign(1.0, vals[j][c]) < 0 for j in T)
            out.append(-0.0 if neg else 0.0)
        else:
            out.append(s / len(T))
    return tuple(out), len(T)


def same(a, b):
    return all(np.float64(x).tobytes() == np.float64(y).tobytes() for x, y in zip(a, b))


VARIANTS = [(), ("-DWE_LOAD=2",)]     # real block size, and blocks of <= 4 vertices


@pytest.fixture(params=VARIANTS, ids=["load64", "load2"], autouse=False)
def variant(request):
    return request.param


def run_hull_case(keys, queries, mode, check_every=1, rng=None, vals=None, variant=()):
    """Insert keys one by one; after every check_every-th insert, check the queries."""
    h = CHull(mode, extra_flags=variant)
    if vals is None:
        vals = [(float(j), float(-3 * j)) for j in range(len(keys))]
        if mode == "mean" and rng is not None:
            vals = [(float(rng.randint(-50, 50)), float(rng.choice([0, -0.0, 7]))) for _ in keys]
    ins = []
    for j, (k0, k1) in enumerate(keys):
        h.insert(k0, k1, *vals[j])
        ins.append((k0, k1))
        if (j + 1) % check_every and j + 1 != len(keys):
            continue
        for q in queries:
            got = h.query(*q)
            exp = brute(ins, vals, q, mode)
            assert same(got[0], exp[0]) and got[1] == exp[1], (mode, q, got, exp, len(ins))
    h.close()


def perp_queries(rng, keys, k):
    """Queries exactly perpendicular to the segment between two random keys (edge ties)."""
    out = []
    for _ in range(k):
        (a0, a1), (b0, b1) = rng.choice(keys), rng.choice(keys)
        d0, d1 = b0 - a0, b1 - a1
        s = rng.choice([1, -1])
        out.append((float(-d1 * s), float(d0 * s)))
    return out


MODES = ["latest", "mean"]


@pytest.mark.parametrize("mode", MODES)
def test_hull_small_range_random(mode, variant):
    rng = random.Random(1)
    for trial in range(30):
        n = rng.randint(1, 60)
        r = rng.choice([1, 2, 3, 5, 20])
        keys = [(float(rng.randint(-r, r)), float(rng.randint(-r, r))) for _ in range(n)]
        queries = [(float(rng.randint(-3, 3)), float(rng.randint(-3, 3))) for _ in range(12)]
        queries += perp_queries(rng, keys, 6) + [(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
        run_hull_case(keys, queries, mode, check_every=1 if n < 25 else 5, rng=rng, variant=variant)


@pytest.mark.parametrize("mode", MODES)
def test_hull_many_points_blocks(mode, variant):
    """Enough vertices for many blocks (block size 64..128): random parabola / circle points in
    random order, plus random interior points, thousands of queries."""
    rng = random.Random(2)
    xs = rng.sample(range(-3000, 3000), 1500)
    keys = [(float(2 * a), float(-a * a)) for a in xs]            # all on the upper hull
    keys += [(float(rng.randint(-6000, 6000)), float(-rng.randint(0, 9_000_000))) for _ in range(300)]
    rng.shuffle(keys)
    queries = [(float(rng.randint(-3000, 3000)), 1.0) for _ in range(400)]
    queries += [(float(rng.randint(-10**6, 10**6)), float(rng.randint(-1000, 1000))) for _ in range(400)]
    queries += perp_queries(rng, keys, 200)
    run_hull_case(keys, queries, mode, check_every=600, rng=rng, variant=variant)


def test_hull_sorted_inserts_and_duplicates(variant):
    """Positions inserted in increasing order (the common case) with repeated keys."""
    rng = random.Random(3)
    keys = []
    for j in range(3000):
        a = j // 3                       # every key three times
        keys.append((float(2 * a), float(-a * a)))
    queries = [(float(rng.randint(-10, 2100)), 1.0) for _ in range(300)] + [(1.0, 0.0), (-1.0, 0.0), (0.0, 0.0)]
    run_hull_case(keys, queries, "latest", check_every=500, variant=variant)
    run_hull_case(keys[::-1], queries, "latest", check_every=1000, variant=variant)


@pytest.mark.parametrize("mode", MODES)
def test_hull_collinear_and_identical(mode, variant):
    rng = random.Random(4)
    line = [(float(3 * i), float(-2 * i + 5)) for i in range(-40, 40)]
    for trial in range(6):
        keys = [rng.choice(line) for _ in range(120)]
        queries = [(2.0, 3.0), (-2.0, -3.0), (4.0, 6.0), (0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0)]
        queries += [(float(rng.randint(-5, 5)), float(rng.randint(-5, 5))) for _ in range(10)]
        run_hull_case(keys, queries, mode, check_every=7, rng=rng, variant=variant)
    run_hull_case([(5.0, 5.0)] * 50, [(1.0, 2.0), (0.0, 0.0), (-1.0, 0.0)], mode, check_every=3, rng=rng, variant=variant)
    # vertical lines (same k0) and a grid with every direction: lots of ties
    grid = [(float(a), float(b)) for a in range(-4, 5) for b in range(-4, 5)]
    rng.shuffle(grid)
    dirs = [(float(a), float(b)) for a in range(-3, 4) for b in range(-3, 4)]
    run_hull_case(grid * 2, dirs, mode, check_every=9, rng=rng, variant=variant)


@pytest.mark.parametrize("mode", MODES)
def test_hull_wide_coordinates(mode, variant):
    """Keys beyond 2^60 (exact 256-bit products) and near-collinear points that float64 would
    misjudge; queries beyond 2^61."""
    rng = random.Random(5)
    big = 2 ** 64
    keys = []
    for _ in range(150):
        a = rng.randint(0, 2 ** 20)
        keys.append((float(2 * a), float(-(big + a * a * 4096))))    # exact floats (multiples of 4096)
    keys += [(float(rng.randint(-2 ** 40, 2 ** 40)) * 2 ** 30, float(rng.randint(-2 ** 40, 2 ** 40)) * 2 ** 40)
             for _ in range(100)]
    rng.shuffle(keys)
    queries = [(float(rng.randint(-2 ** 21, 2 ** 21)), float(rng.choice([1, 2, 4096]))) for _ in range(100)]
    queries += [(float(rng.randint(-2 ** 50, 2 ** 50)) * 2 ** 20, float(rng.randint(-2 ** 50, 2 ** 50)) * 2 ** 20)
                for _ in range(100)]
    queries += perp_queries(rng, keys, 50) + [(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0)]
    run_hull_case(keys, queries, mode, check_every=50, rng=rng, variant=variant)


@pytest.mark.parametrize("mode", MODES)
def test_hull_big_removals(mode, variant):
    """Many hull vertices in random order, then points that cut away long runs of vertices
    (spanning many blocks), collinear with existing vertices now and then."""
    rng = random.Random(7)
    xs = rng.sample(range(-500, 500), 600)
    keys = [(float(2 * a), float(-a * a)) for a in xs]
    for _ in range(60):
        a, b = sorted(rng.sample(range(-500, 500), 2))
        # a point above the chord between vertices a and b of the parabola: removes everything between
        mx = a + b                                   # 2 * midpoint
        chord = -a * b                               # chord height at the midpoint (x = a + b)
        keys.append((float(mx), float(chord + rng.choice([0, 0, 1, 50, 5000]))))
    keys += [(float(2 * a), float(-a * a + 1)) for a in rng.sample(range(-500, 500), 50)]
    queries = [(float(rng.randint(-1000, 1000)), 1.0) for _ in range(150)]
    queries += [(float(rng.randint(-1000, 1000)), float(rng.randint(-3, 3))) for _ in range(100)]
    queries += perp_queries(rng, keys, 100)
    run_hull_case(keys, queries, mode, check_every=40, rng=rng, variant=variant)


def test_hull_is_exact_upper_hull(variant):
    rng = random.Random(6)
    pts = [(rng.randint(-100, 100), rng.randint(-100, 100)) for _ in range(400)]
    h = CHull(extra_flags=variant)
    for a, b in pts:
        h.insert(a, b, 0, 0)
    # reference: strict upper hull (monotone chain), distinct x
    best = {}
    for a, b in pts:
        best[a] = max(best.get(a, b), b)
    P = sorted(best.items())
    up = []
    for p in P:
        while len(up) >= 2 and ((up[-1][0] - up[-2][0]) * (p[1] - up[-2][1]) -
                                (up[-1][1] - up[-2][1]) * (p[0] - up[-2][0])) >= 0:
            up.pop()
        up.append(p)
    assert h.vertices(0) == [(float(a), float(b)) for a, b in up]


def test_hull_rejects_inexact_values():
    h = CHull()
    with pytest.raises(ValueError):
        h.insert(0.5, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        h.insert(float("inf"), 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        h.insert(2.0 ** 121, 1.0, 0.0, 0.0)
    h.insert(1.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        h.query(0.25, 1.0)
    m = CHull("mean")
    with pytest.raises(ValueError):
        m.insert(1.0, 1.0, 0.5, 0.0)       # 'mean' needs integral values


# ------------------------------------------------------------------------------------------------
# synthetic models against the numpy contract implementation
# ------------------------------------------------------------------------------------------------
def write_model(path, rng, modes, tie, d=10, V=12, F=(5, 0, 4), features=("t", "t2"), memory_ids=None, zero_prob=0.5):
    """Random small-integer weights; every hard-max key / query is an integer (exact)."""
    from safetensors.numpy import save_file
    L = len(modes)

    def mat(r, c, lo=-2, hi=2):
        m = rng.integers(lo, hi + 1, size=(r, c)).astype(np.float64)
        m[rng.random((r, c)) < zero_prob] = 0.0
        return m

    t = {"model.embed_tokens.weight": mat(V, d, -3, 3)}
    if features:
        P = np.zeros((len(features), d))
        for f in range(len(features)):
            P[f, rng.integers(0, d)] = 1.0
        t["model.embed_positions.weight"] = P
    for l in range(L):
        H = len(modes[l])
        pre = f"model.layers.{l}."
        for p in "qkv":
            t[pre + f"self_attn.{p}_proj.weight"] = mat(2 * H, d, -1, 1)
            if rng.random() < 0.7:
                t[pre + f"self_attn.{p}_proj.bias"] = mat(1, 2 * H)[0]
        # keep the residual small: outputs land in a few dims with small weights
        t[pre + "self_attn.o_proj.weight"] = mat(d, 2 * H, 0, 1) * (rng.random((d, 2 * H)) < 0.3)
        t[pre + "self_attn.o_proj.bias"] = mat(1, d)[0]
        Fl = F[l % len(F)]
        t[pre + "mlp.gate_proj.weight"] = mat(Fl, d)
        t[pre + "mlp.gate_proj.bias"] = mat(1, Fl)[0]
        t[pre + "mlp.up_proj.weight"] = mat(Fl, d)
        t[pre + "mlp.down_proj.weight"] = mat(d, Fl, -1, 1) * (rng.random((d, Fl)) < 0.3)
    t["lm_head.weight"] = mat(V, d, -3, 3)
    t["lm_head.bias"] = mat(1, V)[0]
    cfg = {"vocab_size": V, "hidden_size": d, "num_hidden_layers": L, "heads_per_layer": [len(m) for m in modes],
           "head_modes": modes, "head_dim": 2, "intermediate_size": [F[l % len(F)] for l in range(L)],
           "position_features": list(features), "tie_break": tie, "eos_token_id": V - 1}
    if memory_ids is not None:
        cfg["memory_ids"] = memory_ids
    Path(path, "config.json").write_text(json.dumps(cfg))
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(Path(path, "model.safetensors")))


SYNTH = [
    ("latest", [["hardmax", "sum", "cross"], ["cross", "hardmax"], ["sum", "hardmax", "hardmax"]]),
    # 'mean' ties give fractional values; the engine refuses non-integral hard-max keys/queries, so
    # hard-max/cross heads only in the first layer (later layers read the means via sum heads/FFN)
    ("mean", [["hardmax", "sum", "cross", "hardmax"], ["sum"], []]),
    ("latest", [[], ["hardmax"] * 3, ["sum"]]),
]


@pytest.mark.parametrize("case", range(len(SYNTH)))
def test_synthetic_models_against_contract(tmp_path, case):
    from contract_check import ContractModel
    tie, modes = SYNTH[case]
    rng = np.random.default_rng(100 + case)
    n_ok = 0
    for trial in range(4):
        d = tmp_path / f"m{trial}"
        d.mkdir()
        write_model(d, rng, modes, tie, features=(("t", "t2"), ("t",), ())[trial % 3])
        ref = ContractModel(d)
        eng = FastEngine(str(d))
        eng_check = FastEngine(str(d), attn_mode="check")
        for rep in range(3):
            V = 12
            prompt = rng.integers(0, V - 1, size=int(rng.integers(1, 12))).tolist()
            memory = rng.integers(0, V, size=int(rng.integers(0, 9))).tolist()
            want, _ = ref.run(prompt, memory, 40)
            got = eng.generate(prompt, 40, memory_ids=memory)
            assert got == want, (trial, rep, prompt, memory, got, want)
            assert eng_check.generate(prompt, 40, memory_ids=memory) == want
            assert all(s["mismatches"] == 0 for s in eng_check.stats())
            n_ok += 1
            if want and want[-1] != V - 1 and len(want) == 40:
                # continuation == one longer run
                extra = rng.integers(0, V - 1, size=3).tolist()
                more = eng.continue_(extra, 15)
                want2, _ = ref.run(prompt + want + extra, memory, 15)
                assert more == want2
        eng.close()
        eng_check.close()
    assert n_ok > 0


def test_feed_and_continue_equal_one_run(tmp_path):
    from contract_check import ContractModel
    rng = np.random.default_rng(7)
    write_model(tmp_path, rng, [["hardmax", "sum"], ["hardmax", "hardmax"]], "latest")
    ref = ContractModel(tmp_path)
    eng = FastEngine(str(tmp_path))
    prompt = rng.integers(0, 11, size=20).tolist()
    want, _ = ref.run(prompt, [], 60)
    eng.reset()
    eng.feed(prompt[:7])
    eng.feed(prompt[7:])
    assert eng.continue_([], 60) == want
    assert eng.position() == len(prompt) + len(want)
    a = eng.generate(prompt, 25)
    b = eng.continue_([], 35)
    assert a + b == want[:60]


def test_refuses_inexact_keys(tmp_path):
    rng = np.random.default_rng(8)
    write_model(tmp_path, rng, [["hardmax"]], "latest", F=(0,))
    from safetensors.numpy import load_file, save_file
    t = load_file(str(tmp_path / "model.safetensors"))
    t["model.layers.0.self_attn.k_proj.bias"] = np.array([0.5, 0.0])
    save_file(t, str(tmp_path / "model.safetensors"))
    eng = FastEngine(str(tmp_path))
    with pytest.raises(RuntimeError, match="not an integer"):
        eng.generate([1, 2, 3], 5)
    # the brute-force mode (float scan, the contract's own arithmetic) still runs
    eng.set_attn_mode("brute")
    eng.generate([1, 2, 3], 5)


# ------------------------------------------------------------------------------------------------
# the real model
# ------------------------------------------------------------------------------------------------
LOOP_WAT = ('(module (func (export "f") (param i32) (result i32) (local i32) (loop (local.set 1 (i32.add '
            '(local.get 1) (i32.sub (local.get 0) (i32.const 7)))) (local.set 0 (i32.sub (local.get 0) '
            '(i32.const 1))) (br_if 0 (local.get 0))) (local.get 1)))')


@pytest.fixture(scope="module")
def real():
    wasmtime = pytest.importorskip("wasmtime")
    if not (MODEL_DIR / "model.safetensors").is_file():
        pytest.skip("no model weights")
    from wasm_lowering import load_program
    wasm = wasmtime.wat2wasm(LOOP_WAT)
    return {"engine": FastEngine(str(MODEL_DIR)), "wasm": wasm, "load_program": load_program}


@pytest.fixture(scope="module")
def hf_model():
    torch = pytest.importorskip("torch")
    from modeling_wasm import WasmForCausalLM
    m = WasmForCausalLM.from_pretrained(str(MODEL_DIR))
    m.eval()
    return torch, m


def hf_generate(hf, prompt, n, impl, memory=()):
    torch, model = hf
    kw = {"memory_ids": torch.tensor([list(memory)])} if memory else {}
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), cache_implementation=impl, max_new_tokens=n, **kw)
    return out[0, len(prompt):].tolist()


def _memory(real):
    return list(real["engine"].default_memory)


def test_real_model_fast_equals_dense_and_hull(real, hf_model):
    """FastEngine == the dense PyTorch reference path == the hull-cache path (token for token).
    The PyTorch paths are slow (the dense one re-embeds the whole memory every step), so they
    cover a prefix; the reference-trace tests below cover whole runs."""
    prog = real["load_program"](real["wasm"], [("f", [("i32", 3)])])
    prompt = prog.prompt_ids()
    fast = real["engine"].generate(prompt, 5000)
    n_dense, n_hull = 30, 100
    assert fast[:n_dense] == hf_generate(hf_model, prompt, n_dense, "dense", _memory(real))
    assert fast[:n_hull] == hf_generate(hf_model, prompt, n_hull, "hull", _memory(real))


def test_real_model_hull_equals_float_scan(real):
    """Every hard-max / cross query of a whole run: the exact hull gives the same value as the
    contract's float64 scan (attn_mode 'check' runs both and counts disagreements)."""
    prog = real["load_program"](real["wasm"], [("f", [("i32", 12)])])
    prompt = prog.prompt_ids()
    eng = real["engine"]
    fast = eng.generate(prompt, 5000)
    check = FastEngine(str(MODEL_DIR), attn_mode="check")
    try:
        assert check.generate(prompt, len(fast)) == fast
        bad = [s for s in check.stats() if s["mismatches"]]
        assert not bad, bad
    finally:
        check.close()


@pytest.mark.parametrize("arg,variant", [(12, ()), (300, ()), (300, ("-DWE_LOAD=2",))])
def test_real_model_matches_reference_trace(real, arg, variant):
    from reference_interpreter import reference_trace
    prog = real["load_program"](real["wasm"], [("f", [("i32", arg)])])
    expected = reference_trace(prog)
    eng = real["engine"] if not variant else FastEngine(str(MODEL_DIR), extra_flags=variant)
    fast = eng.generate(prog.prompt_ids(), len(expected) + 10)
    assert fast == expected


def test_real_model_continuation(real):
    from contract_check import ContractModel
    from reference_interpreter import ReferenceMachine
    prog = real["load_program"](real["wasm"], [("f", [("i32", 3)]), ("f", [("i32", 5)])])
    m = ReferenceMachine(prog)
    t0 = m.run(0)
    t1 = m.run(1)
    eng = real["engine"]
    g0 = eng.generate(prog.prompt_ids(), len(t0) + 10)
    g1 = eng.continue_(prog.enter_ids(1), len(t1) + 10)
    # the independent numpy contract implementation, run on the whole sequence, continues the same
    n = 40
    ref = ContractModel(MODEL_DIR)
    want, _ = ref.run(prog.prompt_ids() + g0 + prog.enter_ids(1), _memory(real), n)
    assert g1[:n] == want
    assert g0 == t0
    assert g1 == t1, (
        "continuation differs from ReferenceMachine.run(1) although it equals the contract "
        "implementation; if the first difference is a LGET of a local, the reference may be reusing "
        "serial 0 across invocations (stale locals from run(0)); wasmtime gives f(5) = -20")
