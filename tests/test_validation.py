"""Every refusal happens before any output exists, names the field or tensor, and says what to do."""

import json
import logging

import pytest
import torch
from mergekit.options import MergeOptions
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit import testing as tiny
from tests.mergeutil import merge


@pytest.fixture
def pair(tmp_path):
    return tiny.build_pair(tmp_path)


def _refused(tmp_path, match, *args, **kwargs):
    out = tmp_path / "out"
    with pytest.raises(DogeRMConfigError, match=match):
        merge(out, *args, **kwargs)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_no_domain_model_is_refused(tmp_path, pair):
    rm, lm = pair
    _refused(tmp_path, "names none besides base_model", rm, lm, models=[{"model": str(rm)}])


def test_missing_base_model_is_refused(tmp_path, pair):
    rm, lm = pair
    _refused(tmp_path, "base_model", rm, lm, base_model=None)


def test_missing_lambda_is_refused(tmp_path, pair):
    rm, lm = pair
    _refused(tmp_path, "needs `lambda`", rm, lm, models=[{"model": str(rm)}, {"model": str(lm)}])


@pytest.mark.parametrize("lam", [1.2, -0.5, [{"filter": "mlp", "value": 1.5}, {"value": 0.2}], [0.0, 1.3]])
def test_lambda_outside_unit_interval_is_refused(tmp_path, pair, lam):
    rm, lm = pair
    _refused(tmp_path, "allow_extrapolation", rm, lm, lam=lam)


def test_extrapolation_is_allowed_explicitly(tmp_path, pair):
    rm, lm = pair
    out = merge(tmp_path / "out", rm, lm, lam=1.2, parameters={"allow_extrapolation": True})
    assert (out / "model.safetensors").exists()


def test_unsafe_truncate_embeddings_is_refused(tmp_path, pair):
    rm, lm = pair
    _refused(tmp_path, "unsafe-truncate-embeddings", rm, lm, options=MergeOptions(unsafe_truncate_embeddings=True))


@pytest.mark.parametrize(
    "field,value", [("num_hidden_layers", 3), ("hidden_size", 96), ("num_attention_heads", 8)]
)
def test_shape_mismatch_in_config_is_refused(tmp_path, field, value):
    rm, _ = tiny.build_pair(tmp_path)
    other = tmp_path / "other"
    AutoModelForCausalLM.from_config(tiny.config("llama", 1000, **{field: value, "head_dim": 16})).save_pretrained(other)
    tiny.tokenizer(tiny.vocabulary(1000)).save_pretrained(other)
    _refused(tmp_path, field, rm, other)


def test_reward_only_layer_tensor_is_refused(tmp_path, pair):
    rm, lm = pair
    state = load_file(rm / "model.safetensors")
    state["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
    save_file(state, rm / "model.safetensors", metadata={"format": "pt"})
    _refused(tmp_path, "q_proj.bias.*reward model only.*silently ignored", rm, lm)


def test_non_float_tensor_is_refused(tmp_path, pair):
    rm, lm = pair
    state = load_file(lm / "model.safetensors")
    state["model.position_ids"] = torch.arange(8)
    save_file(state, lm / "model.safetensors", metadata={"format": "pt"})
    _refused(tmp_path, "non-floating-point tensors.*position_ids", rm, lm)


def test_conflicting_token_ids_without_tokenizer_block_are_refused(tmp_path):
    rm, lm = tiny.build_pair(tmp_path, lm_tokens=tiny.vocabulary(1000, shift=3))
    _refused(tmp_path, "different ids.*tokenizer: \\{source: base\\}", rm, lm)


def test_slices_syntax_is_refused(tmp_path, pair):
    rm, lm = pair
    slices = [{"sources": [{"model": str(rm), "layer_range": [0, 2]}, {"model": str(lm), "layer_range": [0, 2]}]}]
    _refused(tmp_path, "models:", rm, lm, models=None, slices=slices)


def test_differing_rope_and_eps_settings_warn(tmp_path, caplog):
    rm, lm = tiny.build_pair(tmp_path, lm_config={"rms_norm_eps": 1e-5, "max_position_embeddings": 256})
    with caplog.at_level(logging.WARNING):
        merge(tmp_path / "out", rm, lm, lam=0.3)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "rms_norm_eps" in warned and "max_position_embeddings" in warned
    assert json.loads((tmp_path / "out" / "config.json").read_text())["rms_norm_eps"] == 1e-6


def test_failure_keeps_an_existing_output_untouched(tmp_path, pair):
    rm, lm = pair
    out = merge(tmp_path / "out", rm, lm, lam=0.3)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(DogeRMConfigError):
        merge(out, rm, lm, lam=2.0)
    assert (out / "model.safetensors").read_bytes() == before


def test_failure_during_the_merge_leaves_no_folder(tmp_path, pair, monkeypatch):
    import mergekit.merge

    rm, lm = pair

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mergekit.merge, "_copy_tokenizer", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        merge(tmp_path / "out", rm, lm, lam=0.3, tokenizer={"source": "base"})
    assert {p.name for p in tmp_path.iterdir()} == {"rm", "lm"}  # nothing left behind, the lock file neither
