"""compile_weights.py regenerates the committed config.json and model.safetensors byte for byte,
and every residual dimension, head and neuron has a name."""
import json
import subprocess
import sys

from conftest import ROOT


def test_weights_regenerate_byte_identical(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "compile_weights.py"), str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for name in ("config.json", "model.safetensors", "weight_names.json", "generation_config.json"):
        assert (tmp_path / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_every_quantity_is_named():
    names = json.loads((ROOT / "weight_names.json").read_text())
    config = json.loads((ROOT / "config.json").read_text())
    assert len(names["dims"]) == config["hidden_size"] and len(set(names["dims"])) == len(names["dims"])
    assert [len(l["heads"]) for l in names["layers"]] == config["heads_per_layer"]
    assert [len(l["neurons"]) for l in names["layers"]] == config["intermediate_size"]
