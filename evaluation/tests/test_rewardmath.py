"""RewardMATH: accuracy (correct above all incorrect), accuracy with ties and MRR against an independent ranking;
the official JSON-array file; schema errors; the Hub loader; the command end to end."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import rewardmath
from dogerm_eval.cli import main
from dogerm_eval.errors import BenchmarkError, DataError

SOURCES = ["modified_with_GPT-4", "gpt-3.5-turbo-0125", "google/gemma-7b-it", "peiyi9979/mistral-7b-sft",
           "meta-llama/Meta-Llama-3-8B-Instruct", "google/gemma-2-27b-it", "claude-3-sonnet-20240229",
           "WizardLMTeam/WizardMath-7B-V1.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"]


def rewardmath_rows(problem_id: int, n_rejected: int, subject: str = "Algebra") -> list[dict]:
    """One problem as RewardMATH_direct.json stores it: one row per solution, the chosen one first."""
    rows = []
    for k in range(n_rejected + 1):
        rows.append({
            "problem": f"Problem {problem_id}: solve for x.", "answer": str(problem_id),
            "eval_solution": [f"step 1 of p{problem_id} s{k}", f"so x = {problem_id + k}"],
            "solution_reference": "human_to_GPT-4" if k == 0 else SOURCES[k - 1],
            "solution_type": "chosen" if k == 0 else "rejected", "subject": subject, "level": 1 + problem_id % 5,
            "problem_id": problem_id, "id": problem_id * 10 + k,
        })
    return rows


def dataset(n_problems: int = 6) -> list[dict]:
    subjects = ["Algebra", "Geometry", "Number Theory"]
    return [row for p in range(n_problems) for row in rewardmath_rows(p, 9 if p % 2 else 3, subjects[p % 3])]


def independent(rows: list[dict], scores: list[float]) -> tuple[float, float, float]:
    """The paper's definitions, computed from a ranking: the list of (score, label) sorted in descending order with
    label "rej" above "cho" on equal scores; rank = position of the correct solution."""
    problems: dict[int, list[tuple[float, str]]] = {}
    for row, score in zip(rows, scores):
        problems.setdefault(row["problem_id"], []).append((score, "cho" if row["solution_type"] == "chosen" else "rej"))
    acc = ties = mrr = 0.0
    for entries in problems.values():
        chosen = next(s for s, label in entries if label == "cho")
        rejected = [s for s, label in entries if label == "rej"]
        acc += chosen > max(rejected)
        ties += chosen >= max(rejected)
        ranking = sorted(entries, key=lambda e: (e[0], e[1]), reverse=True)
        mrr += 1 / (1 + next(i for i, e in enumerate(ranking) if e[1] == "cho"))
    n = len(problems)
    return acc / n, ties / n, mrr / n


def score_frame(frame: pd.DataFrame, by_text: dict[str, float]) -> np.ndarray:
    pairs = [pair for scoring_pass in rewardmath.passes(frame) for pair in scoring_pass]
    return np.array([by_text[text] for _, text in pairs], dtype=np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_accuracy_and_mrr_match_independent_ranking(tmp_path: Path, seed: int) -> None:
    rows = dataset()
    (tmp_path / "RewardMATH_direct.json").write_text(json.dumps(rows, indent=4))  # the official JSON array
    table = rewardmath.load(str(tmp_path / "RewardMATH_direct.json"), None)
    rng = random.Random(seed)
    by_text = {rewardmath.solution_text(r["eval_solution"]): float(rng.randint(0, 4)) for r in rows}
    result = rewardmath.evaluate(table.frame, score_frame(table.frame, by_text))
    acc, ties, mrr = independent(rows, [by_text[rewardmath.solution_text(r["eval_solution"])] for r in rows])
    assert result.score == pytest.approx(acc) and result.sections["Math"] == pytest.approx(acc)
    assert result.sections["Accuracy with ties"] == pytest.approx(ties)
    assert result.sections["MRR"] == pytest.approx(mrr)
    assert result.extra["num_problems"] == 6 and result.extra["rejected_per_problem"] == [3, 9]
    assert set(result.subsets) == {"Algebra", "Geometry", "Number Theory"}


def test_one_problem_by_hand() -> None:
    frame = pd.DataFrame(rewardmath_rows(0, 9))
    scores = np.array([2.0, 1, 3, 2, 0, 0, 0, 0, 0, 0])  # one incorrect above, one tied with the correct one
    result = rewardmath.evaluate(frame, scores)
    row = result.per_example.iloc[0]
    assert (row["correct"], row["correct_with_ties"], row["rank"]) == (False, False, 3)
    assert result.sections["MRR"] == pytest.approx(1 / 3)
    scores[2] = -1.0  # now only the tie remains: wrong for accuracy, right with ties, ranked second
    row = rewardmath.evaluate(frame, scores).per_example.iloc[0]
    assert (row["correct"], row["correct_with_ties"], row["rank"]) == (False, True, 2)
    scores[0], scores[3] = math.nan, 5.0  # a NaN correct solution ranks last
    row = rewardmath.evaluate(frame, scores).per_example.iloc[0]
    assert (row["correct"], row["rank"]) == (False, 10)


def test_texts_as_the_classifier_path_builds_them() -> None:
    frame = pd.DataFrame(rewardmath_rows(3, 1))
    (only_pass,) = rewardmath.passes(frame)
    assert only_pass[0] == ("Problem 3: solve for x.", "step 1 of p3 s0\nso x = 3")
    assert len(only_pass) == 2


def test_subjects_and_schema_errors(tmp_path: Path) -> None:
    rows = dataset()
    pd.DataFrame(rows).to_parquet(tmp_path / "rm.parquet")
    table = rewardmath.load(str(tmp_path / "rm.parquet"), ["Geometry"])
    assert set(table.frame["subject"]) == {"Geometry"}
    with pytest.raises(BenchmarkError, match="Calculus"):
        rewardmath.load(str(tmp_path / "rm.parquet"), ["Calculus"])
    two_chosen = [*rows[:4], {**rows[1], "solution_type": "chosen"}]
    pd.DataFrame(two_chosen).to_json(tmp_path / "two.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="problem_id 0 has 2 chosen"):
        rewardmath.load(str(tmp_path / "two.jsonl"), None)
    pd.DataFrame(rows[:1]).to_json(tmp_path / "alone.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="at least one rejected"):
        rewardmath.load(str(tmp_path / "alone.jsonl"), None)
    pd.DataFrame([{**rows[0], "solution_type": "correct"}, *rows[1:4]]).to_parquet(tmp_path / "type.parquet")
    with pytest.raises(DataError, match="'correct'"):
        rewardmath.load(str(tmp_path / "type.parquet"), None)
    (tmp_path / "steps.json").write_text(json.dumps([{**rows[0], "eval_solution": "one string"}, *rows[1:4]]))
    with pytest.raises(DataError, match=r"row 0 \(id 0\), column 'eval_solution': expected a valid list, found str 'one string'"):
        rewardmath.load(str(tmp_path / "steps.json"), None)


def test_metrics_names() -> None:
    result = {"sections": {"Math": 0.2, "MRR": 0.45, "Accuracy with ties": 0.25}, "score": 0.2}
    assert rewardmath.metrics(result) == {"rewardmath/math": 0.2, "rewardmath/mrr": 0.45,
                                          "rewardmath/accuracy-with-ties": 0.25, "rewardmath/score": 0.2}


def test_hub_dataset_any_split_at_recorded_commit(tmp_path: Path, hub_client, hub_env) -> None:
    repo = rewardmath.HUB_ID
    hub_client.create_repo(repo, repo_type="dataset")
    rows = dataset()
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    hub_client.upload_file(path_or_fileobj=tmp_path / "train.parquet", path_in_repo="data/train-00000.parquet",
                           repo_id=repo, repo_type="dataset")
    table = rewardmath.load(None, None)
    assert (table.dataset, table.revision) == (repo, hub_env.refs(repo, repo_type="dataset")["main"])
    assert len(table.frame) == len(rows)


def test_command_end_to_end(tiny_rm_dir: Path, tmp_path: Path) -> None:
    rows = dataset(4)
    (tmp_path / "RewardMATH_direct.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    data = tmp_path / "RewardMATH_direct.json"
    result = CliRunner().invoke(main, ["rewardmath", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / tiny_rm_dir.name / "rewardmath.json").read_text())
    per_example = pd.read_parquet(out / tiny_rm_dir.name / saved["per_example"])
    scores = [s for c, rs in zip(per_example["score_chosen"], per_example["score_rejected"]) for s in [c, *rs]]
    acc, ties, mrr = independent(rows, scores)
    assert saved["metrics"]["rewardmath/math"] == pytest.approx(acc)
    assert saved["metrics"]["rewardmath/mrr"] == pytest.approx(mrr)
    assert saved["dataset_revision"].startswith("sha256:")


# Printed by the authors' own evaluation (kimsh0507/RewardMATH_official@cde06ab, `src/evaluate_results.py
# --eval_mode our_reward`, i.e. `RewardMATHEvaluation` with "normal") on their published result files
# results/RewardMATH/<model>_reward.json: reward Acc, reward MRR, reward Acc (w/ tie), in percent.
OFFICIAL = {"ArmoRM": (20.496894409937887, 42.18171809786716, 21.532091097308488),
            "grm_llama3": (24.43064182194617, 45.79529396299579, 24.84472049689441)}


@pytest.mark.parametrize("model", sorted(OFFICIAL))
def test_golden_official_result_files(model: str) -> None:
    """The authors' scores of 483 problems x 10 solutions give the numbers their evaluation printed."""
    import gzip

    with gzip.open(Path(__file__).parent / "data" / "rewardmath_official_scores.json.gz", "rt") as handle:
        problems = json.load(handle)["scores"][model]
    assert len(problems) == 483 and {len(p) for p in problems} == {10}
    frame = pd.DataFrame([{"problem": f"p{p}", "eval_solution": [f"p{p} s{k}"],
                           "solution_type": "chosen" if k == 0 else "rejected", "problem_id": p, "subject": "all"}
                          for p, scores in enumerate(problems) for k in range(len(scores))])
    result = rewardmath.evaluate(frame, np.array([s for scores in problems for s in scores]))
    accuracy, mrr, with_ties = OFFICIAL[model]
    assert 100 * result.score == pytest.approx(accuracy, abs=1e-9)
    assert 100 * result.sections["MRR"] == pytest.approx(mrr, abs=1e-9)
    assert 100 * result.sections["Accuracy with ties"] == pytest.approx(with_ties, abs=1e-9)
