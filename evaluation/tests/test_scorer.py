"""RewardScorer against independent plain transformers forward passes, one example at a time, without padding."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from dogerm_eval.errors import BenchmarkError, ModelError
from dogerm_eval.formatting import FormatSettings
from dogerm_eval.scorer import CPU_TOKEN_BUDGET, REWARDBENCH_BATCH_SIZE, RewardScorer, plan_token_batches

WORDS = "the model reward answer question because step first then so we add two numbers code return value".split()


def make_conversations(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs with a wide length spread and repeated prompts and responses, as in RewardBench."""
    rng = random.Random(seed)
    prompts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) + "?" for _ in range(max(1, count // 3))]
    responses = [" ".join(rng.choices(WORDS, k=rng.randint(0, 60))) for _ in range(max(1, count // 2))]
    return [(rng.choice(prompts), rng.choice(responses)) for _ in range(count)]


def chat_text(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> str:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False))


def reference_scores(
    model_dir: Path,
    conversations: list[tuple[str, str]],
    *,
    max_length: int = 2048,
    truncation_side: str = "right",
    mask_double_bos: bool = False,
) -> np.ndarray:
    """One unpadded forward pass per example; truncation done by hand on the full token list."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    if tokenizer.pad_token_id is None:
        model.config.pad_token_id = tokenizer.eos_token_id
    scores = []
    for prompt, response in conversations:
        ids = tokenizer(chat_text(tokenizer, prompt, response))["input_ids"]
        if len(ids) > max_length:  # the tokenizer adds one BOS itself, which truncation keeps
            ids = ids[:max_length] if truncation_side == "right" else ids[:1] + ids[len(ids) - max_length + 1 :]
        mask = torch.ones(1, len(ids), dtype=torch.long)
        if mask_double_bos and ids[0] == ids[1] == tokenizer.bos_token_id:
            mask[0, 0] = 0
        with torch.no_grad():
            scores.append(model(torch.tensor([ids]), attention_mask=mask).logits[0, 0].item())
    return np.array(scores)


def test_fast_path_equals_unpadded_forward_passes(tiny_rm_dir: Path) -> None:
    conversations = make_conversations(40)
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32", token_budget=256)
    scores = scorer.score(conversations)
    assert scores.dtype == np.float64 and scores.shape == (40,)
    np.testing.assert_allclose(scores, reference_scores(tiny_rm_dir, conversations), rtol=0, atol=1e-5)
    assert np.ptp(scores) > 0.05  # the scores differ enough for the tolerance to mean something


def test_identical_texts_are_scored_once_and_order_restored(tiny_rm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conversations = make_conversations(30)
    conversations += conversations[:10]  # exact repeats
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32", token_budget=200)
    rows: list[int] = []
    forward = scorer.network.forward

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        rows.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(scorer.network, "forward", counting_forward)
    scores = scorer.score(conversations)
    assert sum(rows) == len(set(conversations)) < len(conversations)
    assert len(rows) > 1
    np.testing.assert_array_equal(scores[30:], scores[:10])
    permutation = np.random.default_rng(0).permutation(len(conversations))
    shuffled = scorer.score([conversations[i] for i in permutation])
    np.testing.assert_allclose(shuffled, scores[permutation], rtol=0, atol=1e-6)


def test_plan_token_batches_respects_the_budget_longest_first() -> None:
    lengths = [5, 100, 7, 7, 30, 250, 1, 30]
    batches = plan_token_batches(lengths, token_budget=100)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert batches[0] == [5]  # longer than the budget: alone, first
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    firsts = [lengths[batch[0]] for batch in batches]
    assert firsts == sorted(firsts, reverse=True)
    assert [[lengths[i] for i in batch] for batch in batches] == [[250], [100], [30, 30, 7], [7, 5, 1]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_long_inputs_are_truncated_on_the_requested_side(tiny_rm_dir: Path, side: str) -> None:
    conversations = [("short?", "ok"), ("a long question " * 20, "a long answer " * 30), ("q", "w " * 40)]
    settings = FormatSettings(max_length=24, truncation_side=side)  # type: ignore[arg-type]
    scores = RewardScorer(str(tiny_rm_dir), settings, dtype="float32", token_budget=64).score(conversations)
    expected = reference_scores(tiny_rm_dir, conversations, max_length=24, truncation_side=side)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
    flipped = {"left": "right", "right": "left"}[side]
    other = reference_scores(tiny_rm_dir, conversations, max_length=24, truncation_side=flipped)
    assert abs(scores[1] - other[1]) > 1e-4  # the side matters for the long example


def test_double_bos_mask_matches_rewardbench_rule(tiny_rm_dir: Path) -> None:
    conversations = make_conversations(12, seed=3)
    masked = RewardScorer(str(tiny_rm_dir), FormatSettings(double_bos="mask"), dtype="float32").score(conversations)
    np.testing.assert_allclose(
        masked, reference_scores(tiny_rm_dir, conversations, mask_double_bos=True), rtol=0, atol=1e-5
    )
    kept = RewardScorer(str(tiny_rm_dir), dtype="float32").score(conversations)
    assert np.abs(masked - kept).max() > 1e-4


def rewardbench_definition(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    """RewardBench 0.1.4 run_rm.py + RewardBenchPipeline: consecutive batches of 64, padded by the tokenizer on
    its own padding side, first BOS masked where a row starts with two BOS tokens."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    scores: list[float] = []
    for start in range(0, len(texts), 64):
        inputs = tokenizer(texts[start : start + 64], truncation=True, max_length=max_length, padding=True,
                           return_tensors="pt")
        starts = inputs["attention_mask"].argmax(dim=1)
        rows = torch.arange(len(starts))
        second = torch.clamp(starts + 1, max=inputs["input_ids"].shape[1] - 1)
        double = (inputs["input_ids"][rows, starts] == tokenizer.bos_token_id) & (
            inputs["input_ids"][rows, second] == tokenizer.bos_token_id
        )
        inputs["attention_mask"][rows[double], starts[double]] = 0
        with torch.no_grad():
            scores.extend(model(**inputs).logits[:, 0].tolist())
    return np.array(scores)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_compat_rewardbench_reproduces_its_batching_exactly(
    tiny_rm_dir: Path, tmp_path: Path, padding_side: str
) -> None:
    model_dir = tmp_path / "rm"
    shutil.copytree(tiny_rm_dir, model_dir)
    config_file = model_dir / "tokenizer_config.json"  # where a Hub tokenizer records its padding side
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "padding_side": padding_side}))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.padding_side == padding_side
    conversations = make_conversations(REWARDBENCH_BATCH_SIZE + 9, seed=5)  # two batches, the second partial
    settings = FormatSettings(max_length=40)
    scorer = RewardScorer(str(model_dir), settings, dtype="float32", device="cpu", compat="rewardbench")
    scores = scorer.score(conversations)
    texts = [chat_text(tokenizer, p, r) for p, r in conversations]
    np.testing.assert_array_equal(scores, rewardbench_definition(model_dir, texts, max_length=40))
    record = scorer.settings_record()
    expected = {"mode": "rewardbench", "batch_size": 64, "order": "input", "padding_side": padding_side}
    assert record["batching"] == expected
    assert record["double_bos"] == "mask"


def test_missing_pad_token_falls_back_to_eos(make_tiny_rm: Callable[..., Path]) -> None:
    model_dir = make_tiny_rm(pad_token=False, seed=1)
    conversations = make_conversations(10, seed=1)
    scorer = RewardScorer(str(model_dir), dtype="float32", token_budget=128)
    scores = scorer.score(conversations)
    assert scorer.tokenizer.pad_token_id == scorer.tokenizer.eos_token_id == scorer.network.config.pad_token_id
    assert scorer.settings_record()["pad_from_eos"] is True
    np.testing.assert_allclose(scores, reference_scores(model_dir, conversations), rtol=0, atol=1e-5)


def test_fallback_template_is_used_and_recorded(make_tiny_rm: Callable[..., Path]) -> None:
    model_dir = make_tiny_rm(chat_template=False)
    with pytest.raises(ModelError, match="no chat template"):
        RewardScorer(str(model_dir))
    scorer = RewardScorer(str(model_dir), FormatSettings(fallback_template="tulu"))
    # fastchat's tulu as rewardbench's run_rm.py renders it, then add_eos_token's EOS
    assert scorer.format_texts([("Q", "A")]) == ["<|user|>\nQ\n<|assistant|>\nA\n</s>"]
    assert scorer.settings_record()["chat_template"] == "fallback:tulu"


def test_errors_before_scoring(make_tiny_rm: Callable[..., Path], tiny_rm_dir: Path) -> None:
    with pytest.raises(ModelError, match="labels"):
        RewardScorer(str(make_tiny_rm(num_labels=3)))
    with pytest.raises(BenchmarkError, match="dtype"):
        RewardScorer(str(tiny_rm_dir), dtype="float8")
    with pytest.raises(BenchmarkError, match="compat"):
        RewardScorer(str(tiny_rm_dir), compat="other")  # type: ignore[arg-type]


def test_settings_record_and_empty_input(tiny_rm_dir: Path) -> None:
    assert RewardScorer(str(tiny_rm_dir), device="cpu").token_budget == CPU_TOKEN_BUDGET
    settings = FormatSettings(system_prompt="llama2-default")
    scorer = RewardScorer(str(tiny_rm_dir), settings, device="cpu", token_budget=1000)
    assert scorer.score([]).shape == (0,)
    record = scorer.settings_record()
    assert record["dtype"] == "float32" and record["device"] == "cpu"  # "auto" on CPU
    assert record["chat_template"] == "tokenizer" and record["system_prompt"] == "llama2-default"
    assert record["batching"] == {"mode": "fast", "token_budget": 1000, "order": "length", "deduplicated": True,
                                  "one_score_per_text": "per model and run, over every pass, subset, chunk and benchmark"}
    assert record["num_processes"] == 1
    assert set(record["versions"]) == {"dogerm-eval", "torch", "transformers", "huggingface_hub", "accelerate"}


SHARD_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from accelerate import PartialState
    from dogerm_eval.scorer import RewardScorer
    sys.path.insert(0, sys.argv[3])
    from test_scorer import make_conversations

    scorer = RewardScorer(sys.argv[1], dtype="float32", token_budget=150)
    scores = scorer.score(make_conversations(50, seed=7))
    state = PartialState()
    assert state.num_processes == 2 and scorer.settings_record()["num_processes"] == 2
    np.save(f"{sys.argv[2]}/scores_rank{state.process_index}.npy", scores)
    """
)


def test_two_processes_equal_one(tiny_rm_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # --multi_gpu selects accelerate's torchrun launcher; without CUDA the scorer joins a gloo group on CPU.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(script), str(tiny_rm_dir), str(tmp_path), str(Path(__file__).parent)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = RewardScorer(str(tiny_rm_dir), dtype="float32", device="cpu", token_budget=150)
    single_scores = single.score(make_conversations(50, seed=7))
    for rank in (0, 1):
        sharded = np.load(tmp_path / f"scores_rank{rank}.npy")
        np.testing.assert_allclose(sharded, single_scores, rtol=0, atol=1e-6)


def run_rewardbench(model_dir: Path, rows: pd.DataFrame, out: Path, name: str = "rewardbench",
                    **overrides: Any) -> dict[str, Any]:
    """One benchmark through the real run loop (settings, cache key, checkpoints) with RewardScorer."""
    from dogerm_eval.benchmarks import prepare_task, run_model
    from dogerm_eval.models import resolve_model
    from dogerm_eval.options import default_options, scorer_factory, scoring_settings

    data = out.parent / f"{out.name}-{name}.jsonl"
    rows.to_json(data, orient="records", lines=True)
    options = default_options(dtype="float32", device="cpu", **overrides)
    fmt, record = scoring_settings(options)
    results = run_model([prepare_task(name, str(data), None)], resolve_model(str(model_dir)), record,
                        scorer_factory(fmt, options), out, options["checkpoint_every"])
    return results[name]


def test_identical_chosen_and_rejected_get_one_score_and_count_wrong(tiny_rm_dir: Path, tmp_path: Path) -> None:
    from dogerm_eval.benchmarks.samples import rewardbench_rows
    from dogerm_eval.results import read_per_example

    rows = rewardbench_rows({"math-prm": 6, "hep-go": 6})
    rows.loc[0, "rejected"] = rows.loc[0, "chosen"]                          # identical texts, two passes
    rows.loc[7, "chosen"] = rows.loc[2, "chosen"]                            # same response, another prompt
    rows.loc[9, ["prompt", "rejected"]] = rows.loc[3, ["prompt", "chosen"]].to_numpy()  # same pair, other subset
    rows.loc[9, "chosen"] = "a different answer"
    for checkpoint_every in (512, 3):                                        # one chunk, or chunks across passes
        out = tmp_path / f"out{checkpoint_every}"
        result = run_rewardbench(tiny_rm_dir, rows, out, checkpoint_every=checkpoint_every)
        per_example = read_per_example(out / tiny_rm_dir.name / "rewardbench.json")
        assert per_example["score_chosen"][0] == per_example["score_rejected"][0]
        assert not per_example["correct"][0] and result["ties"]["exact"] == 1
        assert per_example["score_rejected"][9] == per_example["score_chosen"][3]
        assert per_example["score_chosen"][7] != per_example["score_chosen"][2]   # a different text
    first = read_per_example(tmp_path / "out512" / tiny_rm_dir.name / "rewardbench.json")
    chunked = read_per_example(tmp_path / "out3" / tiny_rm_dir.name / "rewardbench.json")
    np.testing.assert_allclose(chunked["score_chosen"], first["score_chosen"], rtol=0, atol=TOLERANCE["float32"])


def test_each_conversation_is_rendered_once_per_scorer_and_settings(tiny_rm_dir: Path, monkeypatch) -> None:
    """format_texts renders a repeated pair (in one call or a later one) once; a new system prompt renders it again,
    a new truncation side does not."""
    import dogerm_eval.scorer as scorer_module
    from dogerm_eval.formatting import format_conversation

    calls: list[tuple[Any, str]] = []

    def counting(tokenizer, prompt, response, settings):
        calls.append((prompt, response))
        return format_conversation(tokenizer, prompt, response, settings)

    monkeypatch.setattr(scorer_module, "format_conversation", counting)
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32", device="cpu")
    history = [("user", "hi"), ("assistant", "hello"), ("user", "q?")]
    conversations = [("q?", "a"), ("q?", "b"), ("q?", "a"), (history, "a"), (list(history), "a")]
    first = scorer.format_texts(conversations)
    assert scorer.format_texts(conversations[::-1]) == first[::-1]
    assert calls == [("q?", "a"), ("q?", "b"), (history, "a")]
    expected = [format_conversation(scorer.tokenizer, p, r, scorer.format) for p, r in conversations]
    assert first == expected
    scorer.set_truncation_side("left")  # not a rendering setting: nothing rendered again
    assert scorer.format_texts([("q?", "a")]) == [first[0]] and len(calls) == 3
    scorer.format = FormatSettings(system_prompt="Be brief.")
    assert scorer.format_texts([("q?", "a")]) != [first[0]] and len(calls) == 4


def test_resumed_run_keeps_one_score_per_text(tiny_rm_dir: Path) -> None:
    """A checkpoint's texts are remembered: a later chunk repeating one of them does not rescore it."""
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32", device="cpu")
    texts = scorer.format_texts([("q?", "an answer"), ("q?", "another answer")])
    scorer.remember(texts[:1], [12.5])
    assert scorer.score_texts(texts)[0] == 12.5


#: Largest |score(text batched with others) - score(text alone)| allowed, CPU, tiny Llama RM (measured: fp32 7.7e-7,
#: bf16 7.8e-3 = one bf16 step at |score| < 2; see evaluation/README.md).
TOLERANCE = {"float32": 2e-6, "bfloat16": 1.6e-2}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_score_barely_depends_on_the_other_texts_of_its_batch(tiny_rm_dir: Path, dtype: str) -> None:
    conversations = list(dict.fromkeys(make_conversations(40, seed=11)))
    rng = random.Random(0)
    for budget in (128, 4096):
        scorer = RewardScorer(str(tiny_rm_dir), dtype=dtype, device="cpu", token_budget=budget)
        texts = scorer.format_texts(conversations)
        alone = np.array([scorer.score_distinct([text])[0] for text in texts])
        for _ in range(2):
            chosen = rng.sample(range(len(texts)), k=rng.randint(5, len(texts)))
            together = scorer.score_distinct([texts[i] for i in chosen])
            assert np.abs(together - alone[chosen]).max() <= TOLERANCE[dtype]
    assert np.ptp(alone) > 0.5


def test_compat_batches_do_not_depend_on_checkpoint_every(tiny_rm_dir: Path, tmp_path: Path) -> None:
    from dogerm_eval.benchmarks.samples import rewardbench_rows
    from dogerm_eval.results import read_per_example

    rows = rewardbench_rows({"math-prm": 50, "hep-go": 40})                  # 90 pairs: batches of 64 + 26 per pass
    model = tmp_path / "rm"
    shutil.copytree(tiny_rm_dir, model)
    scores = {}
    for every in (10, 100, 5000):
        out = tmp_path / f"out{every}"
        run_rewardbench(model, rows, out, compat="rewardbench", checkpoint_every=every)
        scores[every] = read_per_example(out / "rm" / "rewardbench.json")
    scorer = RewardScorer(str(model), dtype="float32", device="cpu", compat="rewardbench")
    scorer.set_truncation_side("left")
    direct = scorer.score(list(zip(rows["prompt"], rows["chosen"])))         # one call per pass: rewardbench's batches
    for every in (10, 100):
        pd.testing.assert_frame_equal(scores[every], scores[5000])
    np.testing.assert_array_equal(scores[5000]["score_chosen"].to_numpy(), direct)


REWARDBENCH_SIDES = {"rewardbench": "left", "rewardbench2": "tokenizer"}


@pytest.mark.parametrize(("benchmark", "given", "expected"), [
    ("rewardbench", None, "left"),          # run_rm.py truncates on the left
    ("rewardbench2", None, "left"),         # run_v2.py keeps the tokenizer's saved side (left here)
    ("rewardbench2", "right", "right"),     # an explicit --truncation-side wins
])
def test_compat_truncation_as_the_rewardbench_script(tiny_rm_dir: Path, tmp_path: Path, benchmark: str,
                                                    given: str | None, expected: str) -> None:
    from dogerm_eval.benchmarks.samples import rewardbench2_row, rewardbench_rows

    model = tmp_path / "rm"
    shutil.copytree(tiny_rm_dir, model)
    config_file = model / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "truncation_side": "left"}))
    long = "a long question with many words " * 8
    if benchmark == "rewardbench":
        rows = rewardbench_rows({"math-prm": 2})
        rows["prompt"] = long
        conversations = list(zip(rows["prompt"], rows["chosen"]))
    else:
        rows = pd.DataFrame([rewardbench2_row("m1", "Math", ["x = 2"], ["x = 3", "x = 4", "x = 5"])])
        rows["prompt"] = long
        conversations = [(long, "x = 2")]
    result = run_rewardbench(model, rows, tmp_path / "out", name=benchmark, compat="rewardbench", max_length=24,
                             truncation_side=given)
    assert result["settings"]["scorer"]["truncation_side_used"] == expected
    assert result["settings"]["format"]["truncation_side"] == (given or REWARDBENCH_SIDES[benchmark])
    reference = reference_scores(model, conversations, max_length=24, truncation_side=expected, mask_double_bos=True)
    first = np.asarray(pd.read_parquet(tmp_path / "out" / "rm" / result["per_example"])["score_chosen"].iloc[0]).ravel()[0]
    assert first == pytest.approx(reference[0], abs=1e-5)
