#!/usr/bin/env python3
"""Compile the interpreter into weights: graph (compiler/machine.py) -> schedule -> tensors.

    python compile_weights.py [OUT_DIR]

Writes config.json, model.safetensors (float64), weight_names.json (what every residual
dimension, head and neuron computes) and generation_config.json. Re-running gives
byte-identical files.
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from compiler import tables
from compiler.machine import Machine
from compiler.weights import compile_graph

AUTO_MAP = {"AutoConfig": "configuration_wasm.WasmConfig",
            "AutoModel": "modeling_wasm.WasmForCausalLM",
            "AutoModelForCausalLM": "modeling_wasm.WasmForCausalLM"}


def build():
    machine = Machine()
    config, tensors, names = compile_graph(machine.g, machine.logits())
    config["supported_micro_ops"] = sorted(machine.supported)
    config["memory_ids"] = tables.memory_ids()
    return config, tensors, names


def hf_tensors(config, tensors):
    """Contract names -> the model's parameter names (zero biases where the contract has none)."""
    out = {}
    for k, v in tensors.items():
        out[k if k.startswith("lm_head") else "model." + k] = v
    for l in range(config["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        out.setdefault(pre + "self_attn.o_proj.bias", np.zeros(config["hidden_size"]))
        out.setdefault(pre + "mlp.down_proj.bias", np.zeros(config["hidden_size"]))
    return dict(sorted(out.items()))


def write(out_dir="."):
    out = Path(out_dir)
    config, tensors, names = build()
    full = {"architectures": ["WasmForCausalLM"], "auto_map": AUTO_MAP, "model_type": "wasm_transformer",
            "dtype": "float64", "tie_word_embeddings": False, "pad_token_id": config["eos_token_id"],
            "transformers_version": "5.24.0", **config}
    memory = full.pop("memory_ids")
    text = json.dumps(full, indent=1)
    text = text[:-2] + ',\n "memory_ids": ' + json.dumps(memory, separators=(",", ":")) + "\n}"
    (out / "config.json").write_text(text + "\n")
    gen = {"do_sample": False, "eos_token_id": config["eos_token_id"], "pad_token_id": config["eos_token_id"],
           "max_new_tokens": 10_000_000, "transformers_version": "5.24.0"}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=1) + "\n")
    (out / "weight_names.json").write_text(json.dumps(names, indent=1) + "\n")
    save_file(hf_tensors(config, tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    n_params = sum(v.size for v in tensors.values())
    print(f"d_model {config['hidden_size']}, layers {config['num_hidden_layers']}, heads {config['heads_per_layer']}, "
          f"ffn {config['intermediate_size']}, vocab {config['vocab_size']}, parameters {n_params:,}")


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else ".")
