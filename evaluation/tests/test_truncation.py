"""Texts longer than the model's window: capped by the model's own limit, cut on the stated side, counted per
benchmark and subset (result JSON, table, score line), never an index error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
)

from dogerm_eval import truncation
from dogerm_eval.benchmarks import prepare_task, run_model
from dogerm_eval.formatting import FormatSettings
from dogerm_eval.generate import GenerationSettings, generate_candidates, read_candidates
from dogerm_eval.models import resolve_model
from dogerm_eval.report import format_table, sweep_frame
from dogerm_eval.scorer import RewardScorer
from dogerm_mergekit.testing import build_tiny_tokenizer
from evaluation.tests.published import ROWS, write

LONG = ("why is the answer what it is? " * 40, "because the first step then the second step adds two numbers " * 12)
SHORT = ("two plus two?", "four")


@pytest.fixture(scope="module")
def gpt2_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 reward model with a 64-position table (its tokenizer saved without model_max_length)."""
    path = tmp_path_factory.mktemp("gpt2_rm")
    tokenizer = build_tiny_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2, num_labels=1,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2ForSequenceClassification(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama_rm_128(tiny_rm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama RM saved again with a 128-position window (rotary: no table to overflow)."""
    path = tmp_path_factory.mktemp("llama_rm_128")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir, dtype=torch.float32)
    model.config.max_position_embeddings = 128
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_rm_dir).save_pretrained(path)
    return path


def by_hand(folder: Path, conversation: tuple[str, str], length: int, side: str) -> float:
    """One unpadded forward pass over the templated text, cut by hand to ``length`` tokens (the BOS the tokenizer
    adds is kept on the left)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": conversation[0]}, {"role": "assistant", "content": conversation[1]}]
    ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False))["input_ids"]
    if len(ids) > length:
        ids = ids[:length] if side == "right" else ids[:1] + ids[len(ids) - length + 1:]
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, 0].item()


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_gpt2_rm_scores_texts_longer_than_its_64_positions(gpt2_rm: Path, side: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dogerm_eval.truncation"):
        scorer = RewardScorer(str(gpt2_rm), FormatSettings(truncation_side=side), dtype="float32", device="cpu")
    assert scorer.max_length == 64
    assert "--max-length 2048 is longer than" in caplog.text and "max_position_embeddings 64" in caplog.text
    scores = scorer.score([LONG, SHORT])  # the uncapped 2048 ended in IndexError
    expected = [by_hand(gpt2_rm, pair, 64, side) for pair in (LONG, SHORT)]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
    assert scorer.truncated(scorer.format_texts([LONG, SHORT, LONG])).tolist() == [True, False, True]
    assert scorer.settings_record()["max_length_used"] == 64


def test_the_tokenizers_model_max_length_caps_too(gpt2_rm: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gpt2_rm, model_max_length=40)
    tokenizer.save_pretrained(tmp_path)
    AutoModelForSequenceClassification.from_pretrained(gpt2_rm).save_pretrained(tmp_path)
    assert truncation.model_window(AutoConfig.from_pretrained(tmp_path), tokenizer) == (40, "model_max_length")
    scorer = RewardScorer(str(tmp_path), FormatSettings(max_length=30), dtype="float32", device="cpu")
    assert scorer.max_length == 30  # a smaller --max-length stands


def test_cut_texts_are_counted_per_subset_in_the_result_and_the_table(llama_rm_128: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    rows = ROWS["rewardbench"]()
    long_rows = [i for i, row in enumerate(rows) if row["subset"] == "hep-go"]
    for i in long_rows:
        rows[i]["chosen"] = LONG[1]  # 427-token pairs were scored silently against 128 positions
    task = prepare_task("rewardbench", str(write(rows, tmp_path / "rb.parquet", "parquet")), None)
    model = resolve_model(str(llama_rm_128))
    with caplog.at_level(logging.WARNING):
        result = run_model([task], model, {}, lambda m: RewardScorer(m, dtype="float32", device="cpu"),
                           tmp_path / "out")["rewardbench"]
    tokenizer = AutoTokenizer.from_pretrained(llama_rm_128)
    lengths = [len(tokenizer(tokenizer.apply_chat_template(
        [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row[side]}],
        tokenize=False))["input_ids"]) for side in ("chosen", "rejected") for row in rows]
    expected = sum(length > 128 for length in lengths)
    assert expected == len(long_rows)
    entry = result[truncation.KEY]
    assert entry == {"texts": expected, "scored": 2 * len(rows), "max_length": 128, "side": "right",
                     "by_subset": {"hep-go": expected}}
    assert f"rewardbench: {expected} of {2 * len(rows)} texts cut to 128 tokens (right)" in caplog.text
    table = format_table(sweep_frame([({}, {"rewardbench": result})]))
    header, values = table.splitlines()[:2]
    column = header.split().index(f"rewardbench/{truncation.COLUMN}")
    assert values.split()[column] == str(expected)
    assert truncation.note(result) == f" [{expected} of {2 * len(rows)} texts cut to 128 tokens (right)]"


def test_nothing_cut_records_zero_and_no_column(tiny_rm_dir: Path, tmp_path: Path) -> None:
    task = prepare_task("rewardbench", str(write(ROWS["rewardbench"](), tmp_path / "rb.parquet", "parquet")), None)
    result = run_model([task], resolve_model(str(tiny_rm_dir)), {},
                       lambda m: RewardScorer(m, dtype="float32", device="cpu"), tmp_path / "out")["rewardbench"]
    assert result[truncation.KEY]["texts"] == 0 and "by_subset" not in result[truncation.KEY]
    assert truncation.COLUMN not in format_table(sweep_frame([({}, {"rewardbench": result})]))
    assert truncation.note(result) == ""


@given(prompt=st.integers(0, 300), new=st.integers(1, 300), window=st.integers(8, 256))
def test_a_prompt_and_its_new_tokens_fit_the_window(prompt: int, new: int, window: int) -> None:
    ids = list(range(prompt))
    kept, budget = truncation.fit_generation(ids, new, window, "p")
    assert len(kept) + budget <= window and budget >= 1
    assert kept == ids[len(ids) - len(kept):]  # cut on the left only: the end of the prompt is kept
    if prompt + new <= window:
        assert (kept, budget) == (ids, new)
    elif prompt + min(new, window // 4) <= window:
        assert kept == ids and budget == window - prompt  # fewer new tokens before any prompt token is cut


def test_a_gpt2_policy_generates_after_a_prompt_longer_than_its_window(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    tokenizer = build_tiny_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    settings = GenerationSettings(policy=str(tmp_path / "policy"), benchmark="gsm8k", samples=1, max_new_tokens=32,
                                  seed=0, stop=[], temperature=0.0, top_p=1.0)
    with caplog.at_level(logging.WARNING, logger="dogerm_eval.truncation"):
        done = generate_candidates([(0, LONG[0]), (1, "two plus two?")], settings, tmp_path / "c.jsonl",
                                   dtype="float32", backend="transformers")
    assert done == 2 and len(read_candidates(tmp_path / "c.jsonl")) == 2
    assert "problem 0: the prompt's" in caplog.text and "are cut" in caplog.text
