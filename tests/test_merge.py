"""End-to-end dogerm merges of tiny models, in-process, checked against independent computations."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dogerm_mergekit import testing as tiny
from tests.mergeutil import lerp_ulps, merge, rewards, tensors


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lambda_zero_rewards_are_bit_identical_to_the_reward_model(tmp_path, dtype):
    rm, lm = tiny.build_pair(tmp_path, dtype=dtype)
    out = merge(tmp_path / "out", rm, lm, lam=0.0)
    assert torch.equal(rewards(out), rewards(rm))
    merged = tensors(out)
    assert {t.dtype for t in merged.values()} == {dtype}  # out_dtype defaults to the RM's dtype
    assert torch.equal(merged["model.embed_tokens.weight"], tensors(rm)["model.embed_tokens.weight"])


def test_lambda_one_takes_every_shared_tensor_from_the_domain_model_and_keeps_the_head(tmp_path):
    rm, lm = tiny.build_pair(tmp_path)
    merged, rm_t, lm_t = tensors(merge(tmp_path / "out", rm, lm, lam=1.0)), tensors(rm), tensors(lm)
    assert set(merged) == set(rm_t)  # lm_head dropped, nothing invented
    assert "lm_head.weight" in lm_t
    for name in merged:
        expected = rm_t[name] if name == "score.weight" else lm_t[name]
        assert torch.allclose(merged[name], expected, rtol=0, atol=1e-6), name


def test_lambda_03_is_within_one_ulp_of_an_independent_fp64_computation(tmp_path):
    rm, lm = tiny.build_pair(tmp_path)
    merged, rm_t, lm_t = tensors(merge(tmp_path / "out", rm, lm, lam=0.3)), tensors(rm), tensors(lm)
    for name, value in merged.items():
        if name == "score.weight":
            assert torch.equal(value, rm_t[name])
            continue
        assert lerp_ulps(value, rm_t[name], lm_t[name], 0.3) <= 1.5, name
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert torch.equal(loaded.score.weight, rm_t["score.weight"])


@pytest.mark.parametrize("family,tie", [("llama", False), ("mistral", False), ("qwen2", False), ("qwen2", True)])
def test_families_and_tied_embeddings(tmp_path, family, tie):
    rm, lm = tiny.build_pair(tmp_path, family=family, tie=tie)
    assert ("lm_head.weight" in tensors(lm)) is not tie
    out = merge(tmp_path / "out", rm, lm, lam=0.5)
    merged, rm_t, lm_t = tensors(out), tensors(rm), tensors(lm)
    assert set(merged) == set(rm_t)
    name = "model.layers.1.self_attn.q_proj.weight"
    assert torch.allclose(merged[name], (rm_t[name] + lm_t[name]) / 2, atol=1e-6)
    assert json.loads((out / "config.json").read_text())["architectures"] == json.loads(
        (rm / "config.json").read_text()
    )["architectures"]
    assert rewards(out).shape == (3, 1)


def _rows(path):
    return tensors(path)["model.embed_tokens.weight"]


def test_domain_only_token_is_dropped_and_rm_tokenizer_kept(tmp_path):
    """MetaMath-style: the domain LM appends [PAD] (1000 vs 1001 rows)."""
    rm, lm = tiny.build_pair(tmp_path, lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    out = merge(tmp_path / "out", rm, lm, lam=0.3)
    merged, rm_rows, lm_rows = _rows(out), _rows(rm), _rows(lm)
    assert merged.shape == (1000, 64) and lm_rows.shape == (1001, 64)
    assert lerp_ulps(merged, rm_rows, lm_rows[:1000], 0.3) <= 1.5
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (rm / name).read_bytes(), name
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 1000


def test_reward_only_token_keeps_its_reward_model_row(tmp_path):
    rm, lm = tiny.build_pair(tmp_path, rm_tokens=tiny.vocabulary(1000, extra=("[SEP]",)), lm_tokens=tiny.vocabulary(1000))
    merged, rm_rows, lm_rows = _rows(merge(tmp_path / "out", rm, lm, lam=0.3)), _rows(rm), _rows(lm)
    assert merged.shape == (1001, 64)
    assert torch.equal(merged[1000], rm_rows[1000])
    assert lerp_ulps(merged[:1000], rm_rows[:1000], lm_rows, 0.3) <= 1.5


def test_shifted_ids_are_aligned_by_token_string_with_a_tokenizer_block(tmp_path):
    rm_tokens, lm_tokens = tiny.vocabulary(1000), tiny.vocabulary(1000, shift=7)
    rm, lm = tiny.build_pair(tmp_path, rm_tokens=rm_tokens, lm_tokens=lm_tokens)
    merged = _rows(merge(tmp_path / "out", rm, lm, lam=0.4, tokenizer={"source": "base"}))
    rm_rows, lm_rows = _rows(rm), _rows(lm)
    lm_index = {t: i for i, t in enumerate(lm_tokens)}
    aligned = torch.stack([lm_rows[lm_index[t]] for t in rm_tokens])
    assert lerp_ulps(merged, rm_rows, aligned, 0.4) <= 1.5
    by_id = rm_rows + 0.4 * (lm_rows - rm_rows)
    assert not torch.allclose(merged, by_id, atol=1e-3)


def test_carrying_domain_tokens_over_copies_their_rows_unscaled(tmp_path):
    """The authors' variant: `tokenizer: {source: union}` adds [PAD] to the RM tokenizer, row copied from the LM."""
    rm, lm = tiny.build_pair(tmp_path, lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    out = merge(tmp_path / "out", rm, lm, lam=0.3, tokenizer={"source": "union"})
    merged, lm_rows = _rows(out), _rows(lm)
    assert merged.shape == (1001, 64)
    assert torch.equal(merged[1000], lm_rows[1000])
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("[PAD]") == 1000 and tok.added_tokens_decoder[1000].special
    assert tok.chat_template == AutoTokenizer.from_pretrained(rm).chat_template
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 1001


def test_padded_embedding_matrix_keeps_its_row_count(tmp_path):
    rm, lm = tiny.build_pair(tmp_path, rm_rows=1008, lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    out = merge(tmp_path / "out", rm, lm, lam=0.3)
    merged, rm_rows, lm_rows = _rows(out), _rows(rm), _rows(lm)
    assert merged.shape == (1008, 64)
    assert lerp_ulps(merged[:1000], rm_rows[:1000], lm_rows[:1000], 0.3) <= 1.5
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 1008
    assert rewards(out).shape == (3, 1)


@pytest.mark.parametrize("head", [("value_head.weight",), ("v_head.summary.weight", "v_head.summary.bias")])
def test_value_heads_of_any_name_pass_through(tmp_path, head):
    rm, lm = tiny.build_pair(tmp_path)
    state = load_file(rm / "model.safetensors")
    score = state.pop("score.weight")
    state[head[0]] = score
    if len(head) > 1:
        state[head[1]] = torch.tensor([0.25])
    save_file(state, rm / "model.safetensors", metadata={"format": "pt"})
    merged = tensors(merge(tmp_path / "out", rm, lm, lam=0.3))
    for name in head:
        assert torch.equal(merged[name], state[name])
    assert "score.weight" not in merged and "lm_head.weight" not in merged


def test_per_tensor_lambda_through_mergekit_filters(tmp_path):
    rm, lm = tiny.build_pair(tmp_path)
    lam = [{"filter": "embed_tokens", "value": 0.0}, {"value": 0.6}]
    merged, rm_t, lm_t = tensors(merge(tmp_path / "out", rm, lm, lam=lam)), tensors(rm), tensors(lm)
    assert torch.equal(merged["model.embed_tokens.weight"], rm_t["model.embed_tokens.weight"])
    name = "model.norm.weight"
    assert torch.allclose(merged[name], rm_t[name] + 0.6 * (lm_t[name] - rm_t[name]), atol=1e-6)


def test_card_names_both_parents_lambda_and_config_offline(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "repo_exists", lambda *a, **k: pytest.fail("network call"))
    rm, lm = tiny.build_pair(tmp_path)
    out = merge(tmp_path / "out", rm, lm, lam=0.3)
    card = huggingface_hub.ModelCard.load(out / "README.md")
    assert card.data.base_model_relation == "merge"
    assert set(card.data.tags) >= {"mergekit", "merge", "dogerm", "reward-model"}
    assert card.data.pipeline_tag == "text-classification"
    assert str(rm) in card.text and str(lm) in card.text and "| 0.3 |" in card.text
    assert "merge_method: dogerm" in card.text and (out / "mergekit_config.yml").exists()
