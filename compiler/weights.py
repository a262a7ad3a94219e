"""Schedule -> weights: every dim is a residual column, every head two q/k/v rows, every neuron
one gate/up row. Coefficients are integers, so float64 holds them exactly."""
import numpy as np

from wasm_vocab import EOS, VOCAB_SIZE

LIMIT = 1 << 53


def _row(expr, d):
    w = np.zeros(d)
    for dim, c in expr.terms.items():
        w[dim.index] += c
    return w, float(expr.const)


def _check(x, what):
    if not np.all(np.abs(x) < LIMIT) or not np.all(x == np.round(x)):
        raise ValueError(f"{what}: coefficients must be integers below 2**53")


def compile_graph(g, logits):
    d, L, V = len(g.dims), g.n_layers, VOCAB_SIZE
    t = {}
    E = np.zeros((V, d))
    for dim, fn in g.embeds:
        E[:, dim.index] = [fn(v) for v in range(V)]
    t["embed_tokens.weight"] = E
    P = np.zeros((2, d))
    feats = ["t", "t2"]
    for dim, feat in g.positions:
        P[feats.index(feat), dim.index] = 1
    t["embed_positions.weight"] = P
    heads_per_layer, modes, ffn_sizes, names = [], [], [], {"dims": [dm.name for dm in g.dims], "layers": []}
    for l in range(1, L + 1):
        heads = [h for h in g.heads if h.layer == l]
        H = len(heads)
        heads_per_layer.append(H)
        modes.append([h.mode for h in heads])
        pre = f"layers.{l - 1}."
        for proj in ("q", "k", "v"):
            W, b = np.zeros((2 * H, d)), np.zeros(2 * H)
            for i, h in enumerate(heads):
                for c in range(2):
                    W[2 * i + c], b[2 * i + c] = _row(getattr(h, proj)[c], d)
            t[pre + f"self_attn.{proj}_proj.weight"], t[pre + f"self_attn.{proj}_proj.bias"] = W, b
        Wo = np.zeros((d, 2 * H))
        for i, h in enumerate(heads):
            for c in range(2):
                Wo[h.outs[c].index, 2 * i + c] = 1
        t[pre + "self_attn.o_proj.weight"] = Wo
        neurons = [n for n in g.neurons if n.layer == l]
        F = len(neurons)
        ffn_sizes.append(F)
        Wg, bg, Wu, bu, Wd = np.zeros((F, d)), np.zeros(F), np.zeros((F, d)), np.zeros(F), np.zeros((d, F))
        for i, n in enumerate(neurons):
            Wg[i], bg[i] = _row(n.gate, d)
            Wu[i], bu[i] = _row(n.up, d)
            Wd[n.out.index, i] = n.coef
        for k, v in (("gate_proj.weight", Wg), ("gate_proj.bias", bg), ("up_proj.weight", Wu),
                     ("up_proj.bias", bu), ("down_proj.weight", Wd)):
            t[pre + "mlp." + k] = v
        names["layers"].append({"heads": [h.name for h in heads], "neurons": [n.out.name for n in neurons]})
    W, b = np.zeros((V, d)), np.zeros(V)
    for v, expr in logits.items():
        W[v], b[v] = _row(expr, d)
    t["lm_head.weight"], t["lm_head.bias"] = W, b
    for k, v in t.items():
        _check(v, k)
    config = {
        "vocab_size": V, "hidden_size": d, "num_hidden_layers": L, "heads_per_layer": heads_per_layer,
        "head_modes": modes, "head_dim": 2, "intermediate_size": ffn_sizes, "position_features": feats,
        "tie_break": "latest", "eos_token_id": EOS,
    }
    return config, {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in t.items()}, names
