"""Candidate generation with a tiny causal LM: seeded reproducibility, schema, resume, refusal of mixed settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import LlamaConfig, LlamaForCausalLM

from dogerm_eval.benchmarks import gsm8k
from dogerm_eval.bon_commands import generate
from dogerm_eval.errors import BenchmarkError, DataError
from dogerm_eval.generate import (
    GenerationSettings,
    cut_at_stop,
    encode_prompt,
    generate_candidates,
    policy_prompt,
    problem_seed,
    read_candidates,
    record_fingerprint,
)
from dogerm_mergekit.testing import build_tiny_tokenizer

PROBLEMS = [(0, "Tom has 3 apples and buys 4 more."), (1, "A pen costs 2 dollars."), (2, "Sam lost 1 coin.")]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_lm")
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, initializer_range=0.5,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _settings(policy: Path, seed: int = 0) -> GenerationSettings:
    return GenerationSettings(
        policy=str(policy), benchmark="gsm8k", samples=3, max_new_tokens=8, seed=seed, stop=list(gsm8k.STOP),
        system_prompt=gsm8k.SYSTEM_PROMPT, response_prefix=gsm8k.RESPONSE_PREFIX, **{
            k: v for k, v in gsm8k.SAMPLING.items() if k != "max_new_tokens"
        },
    )


def _generate(policy: Path, out: Path, problems: list[tuple[int, str]] = PROBLEMS, seed: int = 0) -> int:
    return generate_candidates(problems, _settings(policy, seed), out, dtype="float32", backend="transformers")


def test_schema_and_seeded_reproducibility(tiny_lm: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert _generate(tiny_lm, first) == 3
    _generate(tiny_lm, second)
    assert first.read_bytes() == second.read_bytes()
    records = read_candidates(first)
    assert [r.problem_id for r in records] == [0, 1, 2]
    assert [r.prompt for r in records] == [text for _, text in PROBLEMS]
    for record in records:
        assert len(record.candidates) == 3
        assert record.generation == {**_settings(tiny_lm).model_dump(), "backend": "transformers"}
    assert len({c for r in records for c in r.candidates}) > 3  # actually sampled
    other_seed = tmp_path / "c.jsonl"
    _generate(tiny_lm, other_seed, seed=1)
    assert other_seed.read_bytes() != first.read_bytes()


def test_resume_skips_done_problems_and_drops_a_cut_line(tiny_lm: Path, tmp_path: Path) -> None:
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    _generate(tiny_lm, whole)
    assert _generate(tiny_lm, resumed, PROBLEMS[:1]) == 1
    with resumed.open("a") as handle:
        handle.write('{"problem_id": 1, "prompt": "A pen')  # an append interrupted mid-line
    assert _generate(tiny_lm, resumed) == 2
    assert resumed.read_bytes() == whole.read_bytes()
    assert _generate(tiny_lm, resumed) == 0


def test_other_settings_are_refused(tiny_lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    _generate(tiny_lm, out, PROBLEMS[:1])
    with pytest.raises(BenchmarkError, match="other settings"):
        _generate(tiny_lm, out, seed=5)


def test_read_candidates_validates(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": 1, "prompt": "p", "candidates": []}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_candidates(bad)
    bad.write_text('{"problem_id": 1, "prompt": "p", "candidates": ["a"]}\n' * 2)
    with pytest.raises(DataError, match="twice"):
        read_candidates(bad)


def test_candidates_may_hold_line_separators_written_raw(tmp_path: Path) -> None:
    """A generator that writes JSON with ensure_ascii=False leaves U+2028 / U+0085 raw in a candidate: text, not a
    line end (the file's first record still gives its generation settings)."""
    path = tmp_path / "candidates.jsonl"
    records = [{"problem_id": i, "prompt": "p", "candidates": [f"a\u2028b\x85c{i}"], "generation": {"t": 1}}
               for i in range(2)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert [r.candidates for r in read_candidates(path)] == [r["candidates"] for r in records]
    assert record_fingerprint(path)["generation"] == {"t": 1}


def test_helpers() -> None:
    assert cut_at_stop("7 apples.\nQuestion: next", gsm8k.STOP) == "7 apples.\n"
    assert cut_at_stop("no stop", gsm8k.STOP) == "no stop"
    assert problem_seed(0, 5) == problem_seed(0, 5) != problem_seed(1, 5)
    assert 0 <= problem_seed(3, "x") < 2**31


def test_generate_command_uses_the_paper_defaults(tiny_lm: Path, tmp_path: Path) -> None:
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "x\n#### 1"}) + "\n" for _, q in PROBLEMS))
    out = tmp_path / "cands.jsonl"
    args = ["--policy", str(tiny_lm), "--benchmark", "gsm8k", "--data", str(data), "--samples", "2",
            "--max-new-tokens", "4", "--limit", "2", "--out", str(out), "--dtype", "float32"]
    done = CliRunner().invoke(generate, args)
    assert done.exit_code == 0, done.output
    records = read_candidates(out)
    assert [r.problem_id for r in records] == [0, 1]
    settings = records[0].generation
    assert (settings["temperature"], settings["top_p"], settings["max_new_tokens"]) == (1.0, 1.0, 4)
    assert settings["system_prompt"] == gsm8k.SYSTEM_PROMPT and settings["backend"] == "transformers"


def test_policy_prompt_has_one_bos_and_the_response_prefix() -> None:
    tokenizer = build_tiny_tokenizer()
    settings = GenerationSettings(policy="p", benchmark="gsm8k", samples=1, temperature=1.0, top_p=1.0,
                                  max_new_tokens=4, seed=0, system_prompt="SYS", response_prefix=" Go.")
    text = policy_prompt(tokenizer, "What is 2 + 2?", settings, None)
    assert text == "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nWhat is 2 + 2? [/INST] Go."
    ids = encode_prompt(tokenizer, text)
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id
    assert encode_prompt(tokenizer, "plain")[0] == tokenizer.bos_token_id
