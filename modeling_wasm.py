"""The transformer that executes WebAssembly: exactly the forward pass of model-contract.md.

    x_t   = E[s_t] + t P_t + t^2 P_t2                                   [B, T, d]
    layer : q, k, v = W x + b, reshaped [B, T, H, 2]; each head is
            hard-max (argmax_j<=t q.k_j, latest on ties), sum (sum_j<=t v_j) or cross (hard-max
            over a constant memory); x += o_proj(heads); x += down(relu(gate x) * up x)
    logits = lm_head x; the next token is their argmax.
`generate` decodes with a WasmHullCache (O(log t) per hard-max query) unless asked for
`cache_implementation="dense"`, the reference path that scans every key.
"""
import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

try:
    from .configuration_wasm import WasmConfig
    from .hull_cache import WasmHullCache
except ImportError:
    from configuration_wasm import WasmConfig
    from hull_cache import WasmHullCache

QUERY_BLOCK = 512      # dense prefill scores are built this many queries at a time


def dense_attention(modes, tie_break, q, K, V, past, mem=None):
    """q: [B, T, H, 2] for positions past..past+T-1; K, V: [B, H, past+T, 2] (all keys so far)."""
    B, T, H, _ = q.shape
    out = torch.zeros_like(q)
    n_keys = K.shape[2]
    for h, mode in enumerate(modes):
        if mode == "sum":
            out[:, :, h] = torch.cumsum(V[:, h], dim=1)[:, past:past + T]
            continue
        keys, vals = (K[:, h], V[:, h]) if mode == "hardmax" else mem[h]
        for s in range(0, T, QUERY_BLOCK):
            qh = q[:, s:s + QUERY_BLOCK, h]                                      # [B, t, 2]
            scores = qh[..., 0:1] * keys[:, None, :, 0] + qh[..., 1:2] * keys[:, None, :, 1]  # [B, t, n]
            if mode == "hardmax":
                pos = torch.arange(past + s, past + s + qh.shape[1], device=q.device)
                allowed = torch.arange(n_keys, device=q.device)[None, :] <= pos[:, None]
                scores = scores.masked_fill(~allowed[None], float("-inf"))
            best = scores.max(dim=-1, keepdim=True).values
            tied = scores == best
            if tie_break == "latest":
                last = tied.shape[-1] - 1 - tied.flip(-1).to(torch.int8).argmax(dim=-1)  # [B, t]
                out[:, s:s + QUERY_BLOCK, h] = torch.gather(vals, 1, last[..., None].expand(-1, -1, 2))
            else:
                w = tied.to(q.dtype)
                out[:, s:s + QUERY_BLOCK, h] = (w @ vals) / w.sum(-1, keepdim=True)
    return out


class _Memory:
    """The memory rows' token ids with what embedding them needs."""

    def __init__(self, ids, embed_tokens, embed_positions, features):
        self.ids, self.features = ids, features
        self.embed_tokens, self.embed_positions = embed_tokens, embed_positions
        self.shape = ids.shape

    def data_ptr(self):
        return self.ids.data_ptr()


class WasmAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        d, H = config.hidden_size, config.heads_per_layer[layer_idx]
        self.layer_idx, self.n_heads = layer_idx, H
        self.modes, self.tie_break = config.head_modes[layer_idx], config.tie_break
        self.q_proj = nn.Linear(d, 2 * H, bias=True)
        self.k_proj = nn.Linear(d, 2 * H, bias=True)
        self.v_proj = nn.Linear(d, 2 * H, bias=True)
        self.o_proj = nn.Linear(2 * H, d, bias=True)

    def memory_kv(self, memory):
        """Keys and values of the memory rows, [M, H, 2] each, computed once per memory. Uses
        k_proj(E[m] + i P_t + i^2 P_t2) = (E k_proj^T)[m] + i k_proj(P_t) + i^2 k_proj(P_t2) + b,
        exact because every quantity is an integer below 2**53."""
        key = (memory.data_ptr(), memory.shape[0])
        cached = getattr(self, "_memory_kv", None)
        if cached is None or cached[0] != key:
            emb, pos = memory.embed_tokens.weight, memory.embed_positions.weight
            feats = memory.features
            i = torch.arange(memory.shape[0], dtype=emb.dtype, device=emb.device)[:, None]
            out = []
            for proj in (self.k_proj, self.v_proj):
                rows = (emb @ proj.weight.T)[memory.ids] + proj.bias
                for f, feat in enumerate(feats):
                    rows = rows + (i if feat == "t" else i * i) * (proj.weight @ pos[f])
                out.append(rows.view(-1, self.n_heads, 2))
            self._memory_kv = (key, out[0], out[1], {})
        return self._memory_kv

    def forward(self, x, cache, past, memory=None):
        if not self.n_heads:
            return self.o_proj.bias.expand_as(x)
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, 2)
        k = self.k_proj(x).view(B, T, self.n_heads, 2)
        v = self.v_proj(x).view(B, T, self.n_heads, 2)
        mem, static = None, None
        if "cross" in self.modes:
            _, mk, mv, static = self.memory_kv(memory)
            mem = {h: (mk[None, :, h].expand(B, -1, -1), mv[None, :, h].expand(B, -1, -1))
                   for h in range(self.n_heads)}
            if isinstance(cache, WasmHullCache) and not static:
                static.update(cache.static_hulls(self.modes, mk, mv))
        if isinstance(cache, WasmHullCache):
            out = cache.attend(self.layer_idx, q, k, v, static)
        else:
            K, V = k.transpose(1, 2), v.transpose(1, 2)                          # [B, H, T, 2]
            if cache is not None:
                K, V = cache.update(K, V, self.layer_idx)
            out = dense_attention(self.modes, self.tie_break, q, K, V, past, mem)
        return self.o_proj(out.reshape(B, T, 2 * self.n_heads))


class WasmMLP(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        d, F = config.hidden_size, config.intermediate_size[layer_idx]
        self.gate_proj = nn.Linear(d, F, bias=True)
        self.up_proj = nn.Linear(d, F, bias=True)
        self.down_proj = nn.Linear(F, d, bias=True)

    def forward(self, x):
        return self.down_proj(torch.relu(self.gate_proj(x)) * self.up_proj(x))


class WasmDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.self_attn = WasmAttention(config, layer_idx)
        self.mlp = WasmMLP(config, layer_idx)

    def forward(self, x, cache, past, memory=None):
        x = x + self.self_attn(x, cache, past, memory)     # every head reads the same x
        return x + self.mlp(x)


class WasmPreTrainedModel(PreTrainedModel):
    config_class = WasmConfig
    base_model_prefix = "model"
    _no_split_modules = ["WasmDecoderLayer"]
    _supports_cache_class = True

    def _init_weights(self, module):
        # the weights are computed by compile_weights.py and always loaded; start from zeros
        for p in module.parameters(recurse=False):
            nn.init.zeros_(p)


class WasmModel(WasmPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(len(config.position_features), config.hidden_size)
        self.layers = nn.ModuleList(WasmDecoderLayer(config, l) for l in range(config.num_hidden_layers))
        self.post_init()

    def embed(self, ids, positions):
        x = self.embed_tokens(ids)
        t = positions.to(x.dtype)[..., None]
        for f, feat in enumerate(self.config.position_features):
            x = x + (t if feat == "t" else t * t) * self.embed_positions.weight[f]
        return x

    def forward(self, input_ids, cache=None, memory_ids=None, **kwargs):
        B, T = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        positions = torch.arange(past, past + T, device=input_ids.device)[None].expand(B, T)
        x = self.embed(input_ids, positions)
        memory = self.memory(memory_ids)
        for layer in self.layers:
            x = layer(x, cache, past, memory)
        return x

    def memory(self, memory_ids=None):
        """The cross-attention memory: the constant tables of config.memory_ids unless given."""
        if not any("cross" in m for m in self.config.head_modes):
            return None
        if memory_ids is None:
            if getattr(self, "_memory_ids", None) is None:
                self._memory_ids = torch.tensor(self.config.memory_ids, device=self.embed_tokens.weight.device)
            ids = self._memory_ids
        else:
            ids = torch.as_tensor(memory_ids, device=self.embed_tokens.weight.device).reshape(-1)
        return _Memory(ids, self.embed_tokens, self.embed_positions, self.config.position_features)


class WasmForCausalLM(WasmPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {}

    def __init__(self, config):
        super().__init__(config)
        self.model = WasmModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.post_init()

    def forward(self, input_ids=None, cache=None, use_cache=None, logits_to_keep=0, memory_ids=None,
                attention_mask=None, **kwargs):
        # attention_mask is accepted for tokenizer/pipeline compatibility and ignored: prompts are
        # never padded (one program per row, causal attention over the whole row)
        cache = cache if cache is not None else kwargs.get("past_key_values")
        if cache is None and use_cache:
            cache = DynamicCache()
        x = self.model(input_ids, cache=cache, memory_ids=memory_ids)
        keep = slice(-logits_to_keep, None) if logits_to_keep else slice(None)
        logits = self.lm_head(x[:, keep])
        # generate() casts logits to float32; raw logits reach 2**45 with margins of 1, so shift
        # each row to put its maximum at 0 (the argmax, ties included, is unchanged)
        logits = logits - logits.max(dim=-1, keepdim=True).values
        return CausalLMOutputWithPast(logits=logits, cache=cache)

    def prepare_inputs_for_generation(self, input_ids, cache=None, **kwargs):
        past = cache.get_seq_length() if cache is not None else 0
        inputs = {"input_ids": input_ids[:, past:], "cache": cache, "use_cache": True}
        if kwargs.get("memory_ids") is not None:
            inputs["memory_ids"] = kwargs["memory_ids"]
        return inputs

    def generate(self, inputs=None, cache_implementation=None, **kwargs):
        """Greedy decoding. The hull cache is the default; cache_implementation="dense" scans
        every key (the reference path)."""
        if kwargs.get("past_key_values") is not None:
            kwargs["cache"] = kwargs.pop("past_key_values")
        if kwargs.get("cache") is None:
            if cache_implementation in (None, "hull"):
                kwargs["cache"] = WasmHullCache(self.config)
            elif cache_implementation == "dense":
                kwargs["cache"] = DynamicCache()
            else:
                kwargs["cache_implementation"] = cache_implementation
        kwargs.setdefault("do_sample", False)
        return super().generate(inputs, **kwargs)
