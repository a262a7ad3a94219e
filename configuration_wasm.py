"""WasmConfig: the shape of the compiled interpreter (see model-contract.md for each field)."""
from transformers import PretrainedConfig


class WasmConfig(PretrainedConfig):
    model_type = "wasm_transformer"

    def __init__(self, vocab_size=4362, hidden_size=1, num_hidden_layers=1, heads_per_layer=None, head_modes=None,
                 head_dim=2, intermediate_size=0, position_features=("t", "t2"), tie_break="latest",
                 eos_token_id=256, pad_token_id=256, supported_micro_ops=(), memory_ids=(), **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.heads_per_layer = list(heads_per_layer or [0] * num_hidden_layers)
        self.head_modes = [list(m) for m in (head_modes or [[] for _ in range(num_hidden_layers)])]
        self.num_attention_heads = max(self.heads_per_layer + [1])
        self.head_dim = head_dim
        sizes = intermediate_size
        self.intermediate_size = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes] * num_hidden_layers
        self.position_features = list(position_features)
        self.tie_break = tie_break
        self.supported_micro_ops = list(supported_micro_ops)
        self.memory_ids = list(memory_ids)       # the constant cross-attention memory (empty: no cross heads)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)
