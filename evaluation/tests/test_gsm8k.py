"""GSM8K Best-of-N: answer extraction, data validation and an end-to-end run with a tiny reward model."""

from __future__ import annotations

import itertools
import logging
import shutil
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import gsm8k, run_model
from dogerm_eval.bestofn import metrics
from dogerm_eval.bon_commands import bon_gsm8k
from dogerm_eval.cli import main as cli_main
from dogerm_eval.errors import DataError
from dogerm_eval.results import read_per_example
from dogerm_eval.scorer import RewardScorer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She pays 1,234 dollars. The answer is 1,234.", 1234.0),
        ("The temperature drops to -5 degrees. The answer is -5", -5.0),
        ("Each costs 2.50 so the total is 7.5", 7.5),
        ("The answer is 3. Wait, recheck: 4 apples. The answer is 12 apples, not 13.", 12.0),
        ("So 3 + 4 = 7 and 7 * 2 = 14.", 14.0),
        ("The answer is unclear, but 18 and then 20 remain.", 18.0),
        ("The answer is unclear.", None),
        ("No numbers here at all.", None),
        ("It costs $1,000,000.", 1000000.0),
        ("Half is .5 of it", 0.5),
    ],
)
def test_extract_answer(text: str, expected: float | None) -> None:
    assert gsm8k.extract_answer(text) == expected


def test_gold_answer() -> None:
    assert gsm8k.gold_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == 72.0
    assert gsm8k.gold_answer("lots\n#### 1,080") == 1080.0
    assert gsm8k.gold_answer("loss\n#### -3") == -3.0
    with pytest.raises(DataError):
        gsm8k.gold_answer("no delimiter 5")


def test_check_compares_as_floats() -> None:
    row = pd.Series({"question": "q", "answer": "x\n#### 5"})
    correct, answers = gsm8k.check(["The answer is 5.0", "5,0", "The answer is 6", "nothing"], row)
    assert correct == [True, False, False, False]
    assert answers == [5.0, 50.0, 6.0, None]


QUESTIONS = [
    ("Tom has 3 apples and buys 4 more. How many apples?", "3 + 4 = 7\n#### 7"),
    ("A pen costs 2 dollars. How much do 6 pens cost?", "6 * 2 = 12\n#### 12"),
    ("Sam had 1,000 coins and lost 1. How many are left?", "999\n#### 999"),
]
CANDIDATES = [
    ["3 + 4 = 7. The answer is 7.", "The answer is 8.", "7", "I think 6", "The answer is 7"],
    ["6 * 2 = 12", "The answer is 10.", "The answer is 12.", "2 pens", "The answer is 11"],
    ["The answer is 999.", "1,000 - 1 = 999", "The answer is 1,001", "no idea", "The answer is 998"],
]


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    cands = tmp_path / "cands.jsonl"
    cands.write_text("".join(
        json.dumps({"problem_id": i, "prompt": QUESTIONS[i][0], "candidates": c, "generation": {"seed": 0}}) + "\n"
        for i, c in reversed(list(enumerate(CANDIDATES)))  # file order differs from dataset order
    ))
    return data, cands


def _brute_expected(scores: list[float], correct: list[bool], n: int) -> float:
    picks = [correct[min(s, key=lambda i: (-scores[i], i))] for s in itertools.combinations(range(len(scores)), n)]
    return sum(picks) / len(picks)


def test_end_to_end_with_tiny_rm(tiny_rm_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, cands = _write_inputs(tmp_path)
    task = gsm8k.task(str(data), cands)
    assert task.benchmark.ns == (1, 2, 4)
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32")
    out = tmp_path / "out"
    result = run_model([task], scorer.model, {}, lambda _: scorer, out)[task.benchmark.NAME]

    json_path = out / scorer.model.slug / "bon-gsm8k.json"
    assert json.loads(json_path.read_text())["bon"] == result["bon"]
    per_example = read_per_example(json_path)
    assert per_example["problem_id"].tolist() == [0, 1, 2]

    expected_correct = [
        [True, False, True, False, True], [True, False, True, False, False], [True, True, False, False, False],
    ]
    independent = [
        scorer.score([(QUESTIONS[i][0], " Let's think step by step." + c) for c in CANDIDATES[i]]).tolist()
        for i in range(3)
    ]
    for i in range(3):
        assert per_example["correct"][i].tolist() == expected_correct[i]
        assert per_example["scores"][i].tolist() == pytest.approx(independent[i], abs=1e-6)
        assert per_example["gold"][i] == [7.0, 12.0, 999.0][i]
    for n in (1, 2, 4):
        want = sum(_brute_expected(independent[i], expected_correct[i], n) for i in range(3)) / 3
        assert result["bon"][str(n)]["expected"] == pytest.approx(want, abs=1e-9)
    # majority over the first 4 of problem 0: answers 7, 8, 7, 6 -> 7 (correct)
    assert result["bon"]["4"]["oracle"] == 1.0
    assert result["score"] == result["bon"]["4"]["expected"]
    assert (result["num_problems"], result["dataset_problems"], result["candidates_per_problem"]) == (3, 3, [5])
    assert metrics(result)["bon-gsm8k/expected@4"] == result["bon"]["4"]["expected"]
    assert "bon-gsm8k/majority@1" in metrics(result)

    with caplog.at_level(logging.INFO, logger="dogerm_eval"):
        again = run_model([task], scorer.model, {}, lambda _: scorer, out)[task.benchmark.NAME]
    assert again["cache_key"] == result["cache_key"] and "reusing cached result" in caplog.messages[-1]


def test_bad_inputs_fail_before_scoring(tmp_path: Path) -> None:
    data, cands = _write_inputs(tmp_path)
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text(json.dumps({"question": "q", "answer": "no gold"}) + "\n")
    with pytest.raises(DataError, match="row 0"):
        gsm8k.task(str(bad_data), cands)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match="answer"):
        gsm8k.task(str(missing), cands)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"problem_id": 99, "prompt": "q", "candidates": ["1"]}) + "\n")
    with pytest.raises(DataError, match="not in"):
        gsm8k.task(str(data), unknown)


def test_bon_gsm8k_command(tiny_rm_dir: Path, tmp_path: Path) -> None:
    data, cands = _write_inputs(tmp_path)
    out = tmp_path / "cli-out"
    done = CliRunner().invoke(
        bon_gsm8k, [str(tiny_rm_dir), "--candidates", str(cands), "--data", str(data), "--output-dir", str(out),
                    "--dtype", "float32"],
    )
    assert done.exit_code == 0, done.output
    result = json.loads((out / tiny_rm_dir.name / "bon-gsm8k.json").read_text())
    assert set(result["bon"]) == {"1", "2", "4"}
    assert f"{result['bon']['4']['expected']:9.4f}" in done.output
    missing = str(tmp_path / "no.jsonl")
    from dogerm_eval.cli import main

    bad = CliRunner().invoke(main, ["bon-gsm8k", str(tiny_rm_dir), "--candidates", str(cands), "--data", missing])
    assert bad.exit_code == 1 and "Error: data file not found" in bad.output  # one line, through the command group


def test_default_data_is_the_hub_test_split_of_config_main(tmp_path: Path, hub_client, hub_env) -> None:
    """Without --data, `openai/gsm8k` is read from its `main/test-*.parquet` files, the commit recorded."""
    hub_client.create_repo(gsm8k.HUB_ID, repo_type="dataset")
    rows = pd.DataFrame({"question": ["1+1?", "2+3?"], "answer": ["so #### 2", "then #### 5"]})
    rows.to_parquet(tmp_path / "test.parquet")
    pd.DataFrame({"question": ["x?"], "answer": ["#### 9"]}).to_parquet(tmp_path / "train.parquet")
    for name in ("test", "train"):
        hub_client.upload_file(path_or_fileobj=tmp_path / f"{name}.parquet", repo_type="dataset",
                               path_in_repo=f"main/{name}-00000-of-00001.parquet", repo_id=gsm8k.HUB_ID)
    table = gsm8k.load(None)
    assert list(table.frame["question"]) == ["1+1?", "2+3?"]
    assert table.revision == hub_env.refs(gsm8k.HUB_ID, repo_type="dataset")["main"]


def test_sweep_runs_best_of_n_with_candidates(tiny_rm_dir: Path, tmp_path: Path) -> None:
    """`sweep --candidates bon-gsm8k=PATH` scores Best-of-N for every member and puts it in sweep.csv."""
    data, candidates = _write_inputs(tmp_path)
    sweep_dir = tmp_path / "sweep"
    for name in ("lambda-0.00", "lambda-1.00"):
        shutil.copytree(tiny_rm_dir, sweep_dir / name)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli_main, ["sweep", str(sweep_dir), "--benchmark", "bon-gsm8k", "--data",
                                           f"bon-gsm8k={data}", "--candidates", f"bon-gsm8k={candidates}",
                                           "--output-dir", str(out), "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "sweep.csv")
    single = json.loads((out / "lambda-0.00" / "bon-gsm8k.json").read_text())
    assert frame.loc[0, "bon-gsm8k/expected@1"] == pytest.approx(single["bon"]["1"]["expected"])
    assert (out / "sweep-bon-gsm8k.png").exists()
