"""Each refusal comes before the first model's weights load: the loaders are patched to fail the test, so a check
run after loading would show as that failure instead of its own one line. A failed command leaves no output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_eval.cli import main
from dogerm_mergekit import testing as tiny
from evaluation.tests.test_search import _pairs

LOADED = "weights were loaded before the refusal"


def _fail(*_: object, **__: object) -> None:
    raise AssertionError(LOADED)


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way a command reads model weights fails: transformers' models, the in-memory merger, the search."""
    from dogerm_eval.split_eval import SplitEvaluator
    from dogerm_mergekit.inmemory import InMemoryMerger

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(_fail))
    monkeypatch.setattr(InMemoryMerger, "__init__", _fail)
    monkeypatch.setattr(SplitEvaluator, "load", _fail)


def causal_lm(path: Path, chat_template: bool = True, window: int = 1024) -> Path:
    tokenizer = tiny.build_tiny_tokenizer(chat_template=chat_template)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=window,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def gsm8k_data(path: Path) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": "x\n#### 1"}) + "\n" for q in ("Tom has 3.", "2+2?")))
    return path


def refused(args: list[str], *needles: str) -> str:
    done = CliRunner().invoke(main, args)
    assert done.exit_code in (1, 2), done.output
    last = done.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and LOADED not in done.output, done.output
    for needle in needles:
        assert needle in last, last
    return last


def test_a_misspelt_objective_or_constraint_metric_is_refused_naming_the_right_one(tmp_path, no_weights):
    rm, lm = tiny.build_pair(tmp_path / "in")
    common = ["search", "--rm", str(rm), "--domain", str(lm), "--benchmark", "pairwise", "--data",
              str(_pairs(tmp_path / "pairs.jsonl")), "--output-dir", str(tmp_path / "out")]
    refused([*common, "--objective", "pairwise/arithmatic"],
            "--objective names 'pairwise/arithmatic'", "did you mean 'pairwise/arithmetic'?")
    refused([*common, "--objective", "mean(pairwise/arithmetic, pairwise/general)", "--constraint",
             "pairwise/genral >= value_at_lambda0 - 0.02"], "--constraint names 'pairwise/genral'",
            "did you mean 'pairwise/general'?")
    assert not (tmp_path / "out").exists()


def test_in_memory_lambdas_outside_the_unit_interval_get_the_fix_this_command_can_take(tmp_path, no_weights):
    rm, lm = tiny.build_pair(tmp_path / "in")
    data = tmp_path / "rb.parquet"
    rewardbench_rows({"math-prm": 2}).to_parquet(data)
    last = refused(["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm), "--lambdas", "0,1.5", "--data",
                    str(data), "--output-dir", str(tmp_path / "out")],
                   "lambda=1.5 is outside [0, 1]", "--in-memory does not extrapolate", "dogerm-sweep")
    assert "set `allow_extrapolation" not in last  # the YAML fix is not this command's
    assert not (tmp_path / "out").exists()


def test_generate_refuses_a_reward_model_or_a_missing_chat_template_and_writes_nothing(tmp_path, no_weights):
    rm, _ = tiny.build_pair(tmp_path / "in")
    bare = causal_lm(tmp_path / "bare-lm", chat_template=False)
    out = tmp_path / "cands.jsonl"
    common = ["generate", "--benchmark", "gsm8k", "--data", str(gsm8k_data(tmp_path / "gsm8k.jsonl")), "--out",
              str(out), "--samples", "2", "--backend", "transformers"]
    refused([*common, "--policy", str(rm)], "is a reward model (LlamaForSequenceClassification)", "chat LM")
    refused([*common, "--policy", str(bare)], "has no chat template", "--fallback-template")
    assert not out.exists()


def test_the_judge_refuses_a_reward_model_before_loading(tmp_path, no_weights):
    rm, _ = tiny.build_pair(tmp_path / "in")
    data = tmp_path / "rb.parquet"
    rewardbench_rows({"math-prm": 2}).to_parquet(data)
    refused(["judge", str(rm), "--data", str(data), "--output-dir", str(tmp_path / "out")],
            "the judge", "is a reward model")


def test_generation_stops_at_the_end_of_the_models_window(tmp_path, monkeypatch):
    """--max-new-tokens beyond the window: each call asks for what fits after its prompt (transformers would warn)."""
    lm = causal_lm(tmp_path / "lm", window=200)
    asked: list[tuple[int, int]] = []
    generate = LlamaForCausalLM.generate

    def recording(self, *args, **kwargs):
        asked.append((kwargs["input_ids"].shape[1], kwargs["max_new_tokens"]))
        return generate(self, *args, **{**kwargs, "max_new_tokens": 2})

    monkeypatch.setattr(LlamaForCausalLM, "generate", recording)
    out = tmp_path / "cands.jsonl"
    done = CliRunner().invoke(main, ["generate", "--policy", str(lm), "--benchmark", "gsm8k", "--data",
                                     str(gsm8k_data(tmp_path / "gsm8k.jsonl")), "--out", str(out), "--samples", "1",
                                     "--max-new-tokens", "4096", "--backend", "transformers"])
    assert done.exit_code == 0, done.output
    assert len(asked) == 2 and all(prompt + new == 200 and new > 0 for prompt, new in asked), asked
    assert done.output.rstrip().endswith(f"{out}: generated 2 problems")  # after the progress bar
    assert json.loads(out.read_text().splitlines()[0])["generation"]["max_new_tokens"] == 4096


def test_an_in_memory_grid_says_how_this_command_keeps_vectors_it_leaves_out(tmp_path, no_weights):
    import shutil

    rm, lm = tiny.build_pair(tmp_path / "a")
    other = shutil.copytree(lm, tmp_path / "other")
    data = tmp_path / "rb.parquet"
    rewardbench_rows({"math-prm": 2}).to_parquet(data)
    done = CliRunner().invoke(main, ["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm), "--domain",
                                     str(other), "--grid", "lambda[lm]=0,1", "--grid", "lambda[other]=0,1", "--data",
                                     str(data), "--output-dir", str(tmp_path / "out")])
    assert "1 of 4 lambda vectors sum outside [0, 1] and are left out (--in-memory does not extrapolate; " \
           "dogerm-sweep does, with allow_extrapolation: true in its configuration)" in done.output, done.output
    assert LOADED in done.output  # the grid is computed before the merger is built, which the test forbids


def test_a_data_error_of_a_code_benchmark_is_the_only_line(tmp_path, tiny_rm_dir, no_weights):
    """The sandbox is described (in one line) once the data are read, not before their error."""
    data = tmp_path / "mbpp.jsonl"
    data.write_text("{not json\n")
    candidates = tmp_path / "cands.jsonl"
    candidates.write_text(json.dumps({"problem_id": 1, "prompt": "p", "candidates": ["x = 1"]}) + "\n")
    done = CliRunner().invoke(main, ["bon-mbpp", str(tiny_rm_dir), "--candidates", str(candidates), "--data",
                                     str(data), "--output-dir", str(tmp_path / "out")])
    assert done.exit_code == 1, done.output
    assert done.output.strip().splitlines() == [done.output.strip()], done.output
    assert "as JSON lines" in done.output and "sandbox" not in done.output
