"""FastEngine: an exact, fast greedy decoder for the wasm-transformer (docs/model-contract.md).

The whole decoding loop (embedding, layers, hard-max hulls, lm_head, argmax, EOS) runs in C
(csrc/wasm_engine.c), compiled on first use with ``gcc -O3 -fPIC -shared -ffp-contract=off``
into a cache directory (``build/fast_engine`` next to this file, or ``$WASM_ENGINE_CACHE``, or
``~/.cache/wasm_transformer``) under a name keyed by a hash of the source and the flags, and
loaded with ctypes.  If it cannot be built, ``RuntimeError("fast engine unavailable: ...")``.

    eng = FastEngine("/path/to/model")
    ids = eng.generate(prompt_ids, max_new_tokens=1_000_000)        # stops after EOS (included)
    more = eng.continue_(next_invocation_ids, max_new_tokens=...)   # the sequence goes on

Semantics are the contract's, token for token: x_t = E[s_t] + t P[t] + t^2 P[t2], every head of a
layer reads the same x, hard-max over j <= t (exact integer scores, ties -> latest or mean), sum
heads, cross heads over the constant memory, o_proj, gated-ReLU FFN, lm_head, argmax with the
lowest id on ties.  Hard-max keys and queries must be integral float64 (|v| < 2^120): anything
else raises instead of being rounded.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FastEngine", "load_library", "CHull"]

_HERE = Path(__file__).resolve().parent
_SRC = _HERE / "csrc" / "wasm_engine.c"
_CFLAGS = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-std=gnu11"]
_MODES = {"hardmax": 0, "sum": 1, "cross": 2}
_libs = {}

_i32p = ctypes.POINTER(ctypes.c_int32)
_i64p = ctypes.POINTER(ctypes.c_int64)
_f64p = ctypes.POINTER(ctypes.c_double)


def _cache_dirs():
    env = os.environ.get("WASM_ENGINE_CACHE")
    if env:
        yield Path(env)
    yield _HERE / "build" / "fast_engine"
    yield Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wasm_transformer"
    yield Path(tempfile.gettempdir()) / "wasm_transformer_cache"


def _compile(extra=()) -> Path:
    try:
        src = _SRC.read_bytes()
    except OSError as exc:
        raise RuntimeError(f"fast engine unavailable: cannot read {_SRC}: {exc}") from exc
    cc = os.environ.get("CC", "gcc")
    flags = _CFLAGS + list(extra)
    key = hashlib.sha256(src + " ".join([cc] + flags).encode()).hexdigest()[:16]
    name = f"wasm_engine-{key}.so"
    for d in _cache_dirs():
        if (d / name).is_file():
            return d / name
    if shutil.which(cc) is None:
        raise RuntimeError(f"fast engine unavailable: compiler {cc!r} not found")
    errors = []
    for d in _cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=d)
            os.close(fd)
        except OSError as exc:
            errors.append(f"{d}: {exc}")
            continue
        try:
            proc = subprocess.run([cc, *flags, "-o", tmp, str(_SRC)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"fast engine unavailable: {cc} failed:\n{proc.stderr.strip()}")
            os.replace(tmp, d / name)      # atomic: concurrent builders are harmless
            return d / name
        except OSError as exc:
            errors.append(f"{d}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("fast engine unavailable: no writable cache directory (" + "; ".join(errors) + ")")


def load_library(extra_flags=()):
    """Compile (once, cached) and load the C engine; raises RuntimeError('fast engine unavailable: ...').
    extra_flags: a separately cached variant (tests use ("-DWE_LOAD=2",): tiny hull blocks)."""
    extra_flags = tuple(extra_flags)
    if extra_flags in _libs:
        return _libs[extra_flags]
    path = _compile(extra_flags)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise RuntimeError(f"fast engine unavailable: cannot load {path}: {exc}") from exc
    V, I, L, D = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
    sig = {
        "wh_new": (V, [I]), "wh_free": (None, [V]),
        "wh_insert": (I, [V, D, D, D, D, L]), "wh_query": (I, [V, D, D, _f64p, _i64p]),
        "wh_sizes": (None, [V, _i64p]), "wh_vertices": (L, [V, I, _f64p, L]),
        "we_new": (V, [I, I, I, I]), "we_error": (ctypes.c_char_p, [V]),
        "we_set_embed": (None, [V, _f64p, I, _i32p, _f64p]),
        "we_set_layer": (None, [V, I, I, _i32p,
                                _i64p, _i32p, _f64p, _f64p,
                                _i64p, _i32p, _f64p, _f64p,
                                I,
                                _i64p, _i32p, _f64p, _f64p,
                                _i64p, _i32p, _f64p, _f64p,
                                _i64p, _i32p, _f64p, _f64p]),
        "we_set_lm": (None, [V, I, _i32p, _i32p, _i32p, _i32p, _f64p, _f64p]),
        "we_set_eos": (None, [V, I, _i32p]), "we_finalize": (None, [V]),
        "we_set_attn_mode": (None, [V, I]), "we_reset": (None, [V]),
        "we_set_memory": (I, [V, _i32p, L]), "we_feed": (I, [V, _i32p, L]),
        "we_decode": (L, [V, _i32p, L, ctypes.POINTER(ctypes.c_int)]),
        "we_position": (L, [V]), "we_stats": (I, [V, _i64p, I]), "we_free": (None, [V]),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    _libs[extra_flags] = lib
    return lib


def _p(a, kind):
    return a.ctypes.data_as(kind)


def _csr(W):
    """CSR of a dense matrix (exact zeros skipped): (indptr int64, indices int32, values float64)."""
    W = np.asarray(W, dtype=np.float64)
    rows, cols = np.nonzero(W)
    ptr = np.zeros(W.shape[0] + 1, dtype=np.int64)
    np.add.at(ptr, rows + 1, 1)
    ptr = np.cumsum(ptr).astype(np.int64)
    return ptr, np.ascontiguousarray(cols, dtype=np.int32), np.ascontiguousarray(W[rows, cols], dtype=np.float64)


def _read_weights(model_dir: Path):
    from safetensors.numpy import load_file
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {model_dir}")
    w = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            w[k[6:] if k.startswith("model.") else k] = np.asarray(v, dtype=np.float64)
    return w


class _CHandle:
    """Owns a handle of the C library: freed by close(), at exit of a `with` block, or when collected."""
    _h = None

    def close(self):
        if self._h is not None:
            self._free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FastEngine(_CHandle):
    """Exact greedy decoder in C. Not thread-safe; one sequence at a time."""

    CHUNK = 1 << 20     # tokens decoded per C call (Python only sees one call per chunk)

    def __init__(self, model_dir: str, attn_mode: str = "hull", extra_flags=()):
        lib = load_library(extra_flags)
        self._lib = lib
        self._h = None
        model_dir = Path(model_dir)
        cfg = json.loads((model_dir / "config.json").read_text())
        self.config = cfg
        w = _read_weights(model_dir)
        L = int(cfg["num_hidden_layers"])
        modes = [list(m) for m in cfg["head_modes"]]
        heads = list(cfg.get("heads_per_layer", [len(m) for m in modes]))
        if len(modes) != L or [len(m) for m in modes] != heads:
            raise ValueError("config: heads_per_layer and head_modes disagree")
        if cfg.get("head_dim", 2) != 2:
            raise ValueError("config: head_dim must be 2")
        tie = cfg.get("tie_break", "latest")
        if tie not in ("latest", "mean"):
            raise ValueError(f"config: unknown tie_break {tie!r}")
        feats = list(cfg.get("position_features", []))
        for f in feats:
            if f not in ("t", "t2"):
                raise ValueError(f"config: unknown position feature {f!r}")
        E = np.ascontiguousarray(w["embed_tokens.weight"])
        V, d = E.shape
        if int(cfg.get("vocab_size", V)) != V or int(cfg.get("hidden_size", d)) != d:
            raise ValueError("config: vocab_size / hidden_size disagree with embed_tokens.weight")
        F_all = cfg.get("intermediate_size", 0)
        F_all = list(F_all) if isinstance(F_all, (list, tuple)) else [F_all] * L
        self.V, self.d, self.L, self.tie_break = V, d, L, tie
        eos = cfg.get("eos_token_id")
        eos = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])
        self.eos = set(int(e) for e in eos)
        self.default_memory = list(cfg.get("memory_ids", []) or [])
        self.has_cross = any(m == "cross" for ms in modes for m in ms)

        def get(name, shape):
            if name in w:
                a = w[name]
                if a.shape != tuple(shape):
                    raise ValueError(f"tensor {name} has shape {a.shape}, expected {tuple(shape)}")
                return np.ascontiguousarray(a)
            if name.endswith(".bias") or 0 in shape:
                return np.zeros(shape)
            raise KeyError(f"missing tensor {name}")

        self._keep = []
        h = lib.we_new(d, V, L, 1 if tie == "mean" else 0)
        self._h = h
        if feats:
            P = get("embed_positions.weight", (len(feats), d))
        else:
            P = np.zeros((1, d))
        kinds = np.array([0 if f == "t" else 1 for f in feats] or [0], dtype=np.int32)
        lib.we_set_embed(h, _p(E, _f64p), len(feats), _p(kinds, _i32p), _p(np.ascontiguousarray(P), _f64p))
        self.nnz = {}
        for l in range(L):
            H = heads[l]
            pre = f"layers.{l}."
            a = pre + "self_attn."
            Wqkv = np.concatenate([get(a + p + "_proj.weight", (2 * H, d)) for p in "qkv"], axis=0)
            bqkv = np.concatenate([get(a + p + "_proj.bias", (2 * H,)) for p in "qkv"])
            Wo = get(a + "o_proj.weight", (d, 2 * H))
            bo = get(a + "o_proj.bias", (d,))
            F = int(F_all[l])
            m = pre + "mlp."
            Wg, bg = get(m + "gate_proj.weight", (F, d)), get(m + "gate_proj.bias", (F,))
            Wu, bu = get(m + "up_proj.weight", (F, d)), get(m + "up_proj.bias", (F,))
            Wd, bd = get(m + "down_proj.weight", (d, F)), get(m + "down_proj.bias", (d,))
            mode_arr = np.array([_MODES[x] for x in modes[l]] or [0], dtype=np.int32)
            parts = [_csr(Wqkv), _csr(Wo.T), _csr(Wg), _csr(Wu), _csr(Wd.T)]
            biases = [np.ascontiguousarray(b, dtype=np.float64) for b in (bqkv, bo, bg, bu, bd)]
            biases = [b if b.size else np.zeros(1) for b in biases]     # never pass an empty buffer
            self._keep += parts + biases + [mode_arr]
            args = []
            for (ptr, idx, val), b in zip(parts, biases):
                if idx.size == 0:
                    idx, val = np.zeros(1, np.int32), np.zeros(1)
                    self._keep += [idx, val]
                args.append((ptr, idx, val, b))
            flat = []
            for ptr, idx, val, b in args:
                flat += [_p(ptr, _i64p), _p(idx, _i32p), _p(val, _f64p), _p(b, _f64p)]
            lib.we_set_layer(h, l, H, _p(mode_arr, _i32p), *flat[:8], F, *flat[8:])
            self.nnz[l] = {"qkv": int(parts[0][0][-1]), "o": int(parts[1][0][-1]), "gate": int(parts[2][0][-1]),
                           "up": int(parts[3][0][-1]), "down": int(parts[4][0][-1])}
        # lm_head: rows grouped by their exact sparsity pattern, each group a dense column-major block
        Wlm = get("lm_head.weight", (V, d))
        blm = np.ascontiguousarray(get("lm_head.bias", (V,)))
        nzmask = Wlm != 0
        groups = {}
        for r in range(V):
            groups.setdefault(nzmask[r].tobytes(), []).append(r)
        ncols, nrows, cols, rows, ws = [], [], [], [], []
        for key, rs in groups.items():
            cs = np.flatnonzero(np.frombuffer(key, dtype=bool))
            rs = np.array(rs, dtype=np.int64)
            ncols.append(len(cs))
            nrows.append(len(rs))
            cols.append(cs)
            rows.append(rs)
            ws.append(np.ascontiguousarray(Wlm[np.ix_(rs, cs)].T).reshape(-1))
        ncols = np.array(ncols, dtype=np.int32)
        nrows = np.array(nrows, dtype=np.int32)
        cols = np.concatenate(cols).astype(np.int32) if cols else np.zeros(1, np.int32)
        rows = np.concatenate(rows).astype(np.int32)
        ws = np.concatenate(ws).astype(np.float64)
        if cols.size == 0:
            cols = np.zeros(1, np.int32)
        if ws.size == 0:
            ws = np.zeros(1)
        lib.we_set_lm(h, len(ncols), _p(ncols, _i32p), _p(nrows, _i32p), _p(cols, _i32p), _p(rows, _i32p),
                      _p(ws, _f64p), _p(blm, _f64p))
        self.nnz["lm_head"] = int(nzmask.sum())
        self.lm_groups = len(ncols)
        eos_arr = np.array(sorted(self.eos) or [-1], dtype=np.int32)
        lib.we_set_eos(h, len(self.eos), _p(eos_arr, _i32p))
        lib.we_finalize(h)
        self.set_attn_mode(attn_mode)
        self._memory = None
        self._broken = False
        self._out = np.zeros(self.CHUNK, dtype=np.int32)

    # -- internals ------------------------------------------------------------------------------
    def _check(self, rc):
        if rc < 0:
            self._broken = True
            raise RuntimeError("fast engine: " + self._lib.we_error(self._h).decode())
        return rc

    def _alive(self):
        if self._h is None:
            raise RuntimeError("fast engine: closed")
        if self._broken:
            raise RuntimeError("fast engine: a previous call failed; call reset() or generate()")

    def set_attn_mode(self, mode: str):
        """'hull' (exact O(log t), default), 'brute' (float64 scan exactly as the contract writes the
        scores, O(t) per query) or 'check' (both; brute result used, disagreements counted in stats())."""
        self._lib.we_set_attn_mode(self._h, {"hull": 0, "brute": 1, "check": 2}[mode])
        self.attn_mode = mode

    def _set_memory(self, memory_ids):
        mem = list(memory_ids) if memory_ids else list(self.default_memory)
        if mem == self._memory:
            return
        arr = np.array(mem or [0], dtype=np.int32)
        self._check(self._lib.we_set_memory(self._h, _p(arr, _i32p), len(mem)))
        self._memory = mem

    # -- public API -----------------------------------------------------------------------------
    def reset(self):
        """Forget the sequence (the cross-attention memory is kept)."""
        if self._h is None:
            raise RuntimeError("fast engine: closed")
        self._lib.we_reset(self._h)
        self._broken = False

    def feed(self, ids) -> None:
        """Append tokens to the sequence without predicting."""
        self._alive()
        if self.has_cross and self._memory is None:
            self._set_memory(())
        arr = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64).astype(np.int32))
        if arr.size:
            self._check(self._lib.we_feed(self._h, _p(arr, _i32p), arr.size))

    def _decode(self, max_new_tokens):
        self._alive()
        out = []
        left = int(max_new_tokens)
        stopped = ctypes.c_int(0)
        while left > 0:
            n = min(left, self.CHUNK)
            got = self._check(self._lib.we_decode(self._h, _p(self._out, _i32p), n, ctypes.byref(stopped)))
            out.extend(self._out[:got].tolist())
            left -= got
            if stopped.value or got < n:
                break
        return out

    def generate(self, prompt_ids, max_new_tokens, memory_ids=()) -> list:
        """Reset, feed the prompt, decode greedily; stops after an EOS (included) or at
        max_new_tokens. Returns the generated ids only. memory_ids: the cross-attention memory
        (empty: config.json's memory_ids, if any)."""
        if self._h is None:
            raise RuntimeError("fast engine: closed")
        self.reset()
        if self.has_cross:
            self._set_memory(memory_ids)
        prompt = list(prompt_ids)
        if not prompt:
            raise ValueError("empty prompt")
        self.feed(prompt)
        return self._decode(max_new_tokens)

    def continue_(self, extra_ids, max_new_tokens) -> list:
        """Feed extra_ids after everything the engine holds (including the last generated token,
        e.g. the final EOS), then decode greedily."""
        self.feed(extra_ids)
        return self._decode(max_new_tokens)

    def position(self) -> int:
        """Length of the sequence held (prompt + fed + generated tokens)."""
        return int(self._lib.we_position(self._h))

    def stats(self) -> list:
        """Per head: dict(layer, head, mode, upper, lower (hull chain sizes), float_risk (queries whose
        float64 score q0*k0+q1*k1 could round for some key, i.e. where a float scan might differ from
        the exact hull), mismatches (attn_mode 'check': brute vs hull disagreements))."""
        n = self._lib.we_stats(self._h, None, 0)
        buf = np.zeros(7 * max(n, 1), dtype=np.int64)
        self._lib.we_stats(self._h, _p(buf, _i64p), n)
        names = {v: k for k, v in _MODES.items()}
        return [dict(layer=int(r[0]), head=int(r[1]), mode=names[int(r[2])], upper=int(r[3]), lower=int(r[4]),
                     float_risk=int(r[5]), mismatches=int(r[6])) for r in buf.reshape(-1, 7)[:n]]

    def _free(self, h):
        self._lib.we_free(h)


class CHull(_CHandle):
    """The C hull alone (tests): insert(k0, k1, v0, v1, idx), query(q0, q1) -> ((v0, v1), idx_or_count)."""

    def __init__(self, tie_break="latest", extra_flags=()):
        self._lib = load_library(extra_flags)
        self.mean = tie_break == "mean"
        self._h = self._lib.wh_new(1 if self.mean else 0)
        self._n = 0
        self._o = np.zeros(2)
        self._i = ctypes.c_int64(0)

    def insert(self, k0, k1, v0, v1, idx=None):
        rc = self._lib.wh_insert(self._h, float(k0), float(k1), float(v0), float(v1),
                                 self._n if idx is None else int(idx))
        if rc:
            raise ValueError(f"hull insert failed ({rc})")
        self._n += 1

    def query(self, q0, q1):
        rc = self._lib.wh_query(self._h, float(q0), float(q1), _p(self._o, _f64p), ctypes.byref(self._i))
        if rc:
            raise ValueError(f"hull query failed ({rc})")
        return (float(self._o[0]), float(self._o[1])), int(self._i.value)

    def sizes(self):
        out = np.zeros(4, dtype=np.int64)
        self._lib.wh_sizes(self._h, _p(out, _i64p))
        return tuple(int(v) for v in out)

    def vertices(self, which=0):
        n = self._lib.wh_vertices(self._h, which, None, 0)
        buf = np.zeros(2 * max(n, 1))
        self._lib.wh_vertices(self._h, which, _p(buf, _f64p), n)
        return [(buf[2 * i], buf[2 * i + 1]) for i in range(n)]

    def _free(self, h):
        self._lib.wh_free(h)
