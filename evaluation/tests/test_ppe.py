"""PPE correctness: conflict-pair accuracy and best-of-K curves against brute force over subsets; the local and Hub
loaders; and the three new benchmarks together in `sweep` (checkpoints and in memory) and `--push-results`."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dogerm_eval.benchmarks import ppe
from dogerm_eval.cli import main
from dogerm_eval.errors import BenchmarkError, DataError
from evaluation.tests.manifests import write_manifest
from evaluation.tests.test_rewardmath import dataset as rewardmath_dataset
from evaluation.tests.test_rmbench import DOMAINS, rmbench_row


def ppe_row(question: int, model: str, correct: list[bool], subset: str | None = None, seed: int = 0) -> dict:
    """One row of a PPE Best-of-K set (question_id, model_name, prompt, scores, response_1..N, conflict_pairs,
    sampled_conflict_pairs, plus a set-specific column); responses encode question, model and index."""
    rng = random.Random(seed)
    good = [i for i, c in enumerate(correct) if c]
    bad = [i for i, c in enumerate(correct) if not c]
    conflict = [[i, j] for i in range(len(correct)) for j in range(i + 1, len(correct)) if correct[i] != correct[j]]
    row = {"question_id": f"q{question}", "problem": f"What is {question} + 1?", "model_name": model,
           "prompt": f"Solve: what is {question} + 1?", "scores": list(correct), "mean_score": float(np.mean(correct)),
           "conflict_pairs": conflict,
           "sampled_conflict_pairs": [[rng.choice(good), rng.choice(bad)] for _ in range(3)] if good and bad else []}
    row.update({f"response_{k + 1}": f"q{question} {model} answer {k}" for k in range(len(correct))})
    if subset is not None:
        row["subset"] = subset
    return row


def rows_of(n: int, count: int, seed: int, subset: str | None = None) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for q in range(count):
        correct = [rng.random() < 0.4 for _ in range(n)]
        correct[0], correct[1] = True, False  # every row has a conflict
        rows.append(ppe_row(q, f"model-{q % 2}", correct, subset, seed=seed + q))
    return rows


def brute_best_of_k(scores: list[float], correct: list[bool], k: int) -> float:
    """Mean correctness of the top-scored member (lowest index on equal scores) over every K-subset."""
    subsets = itertools.combinations(range(len(scores)), k)
    picks = [correct[max(subset, key=lambda i: (scores[i], -i))] for subset in subsets]
    return sum(picks) / len(picks)


def scores_for(frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    rng = random.Random(seed)
    (only_pass,) = ppe.passes(frame)
    by_text = {text: float(rng.randint(0, 5)) for _, text in only_pass}  # small integers: ties happen
    return np.array([by_text[text] for _, text in only_pass]), by_text


@pytest.mark.parametrize("seed", [0, 1])
def test_best_of_k_all_k_by_brute_force(tmp_path: Path, seed: int) -> None:
    rows = rows_of(8, 5, seed, subset="mbpp-plus")
    pd.DataFrame(rows).to_parquet(tmp_path / "ppe.parquet")
    table = ppe.load(str(tmp_path / "ppe.parquet"), None)
    scores, by_text = scores_for(table.frame, seed)
    result = ppe.evaluate(table.frame, scores)
    assert result.extra["ks"] == [1, 2, 4, 8]
    curve = {}
    for k in (1, 2, 4, 8):
        expected = np.mean([brute_best_of_k([by_text[r[f"response_{i + 1}"]] for i in range(8)], r["scores"], k)
                            for r in rows])
        curve[k] = expected
        assert result.extra["bok"]["mbpp-plus"][str(k)]["expected"] == pytest.approx(expected, abs=1e-12)
    assert result.extra["figures"]["mbpp-plus"]["max"] == pytest.approx(max(curve.values()))
    assert result.extra["figures"]["mbpp-plus"]["end"] == pytest.approx(curve[8])
    wins = total = 0
    for r in rows:
        for i, j in r["sampled_conflict_pairs"]:
            good, bad = (i, j) if r["scores"][i] else (j, i)
            wins += by_text[r[f"response_{good + 1}"]] > by_text[r[f"response_{bad + 1}"]]
            total += 1
    assert result.subsets == {"mbpp-plus": pytest.approx(wins / total)}
    assert result.sections == {"Code": pytest.approx(wins / total)} and result.score == pytest.approx(wins / total)


def test_thirty_two_responses_as_published(tmp_path: Path) -> None:
    """The real shape: 32 responses per row; K = 1, 2, 4 by brute force, K = 32 is the top-scored response."""
    rows = rows_of(32, 3, seed=7)
    path = tmp_path / "PPE-MATH-Best-of-K.jsonl"  # no subset column: the file name says which set
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    table = ppe.load(str(path), None)
    assert set(table.frame["subset"]) == {"math"}
    scores, by_text = scores_for(table.frame, 3)
    result = ppe.evaluate(table.frame, scores)
    assert result.extra["ks"] == list(ppe.KS) and result.extra["responses_per_row"] == 32
    for k in (1, 2, 4):
        expected = np.mean([brute_best_of_k([by_text[r[f"response_{i + 1}"]] for i in range(32)], r["scores"], k)
                            for r in rows])
        assert result.extra["bok"]["math"][str(k)]["expected"] == pytest.approx(expected, abs=1e-12)
    top = [r["scores"][max(range(32), key=lambda i: (by_text[r[f"response_{i + 1}"]], -i))] for r in rows]
    assert result.extra["bok"]["math"]["32"]["expected"] == pytest.approx(np.mean(top))
    assert result.extra["bok"]["math"]["32"]["oracle"] == 1.0
    metrics = ppe.metrics(json.loads(json.dumps({"subsets": result.subsets, "sections": result.sections,
                                                 "score": result.score, **result.extra})))
    assert metrics["ppe/math"] == result.subsets["math"] and metrics["ppe/math-bok@32"] == np.mean(top)
    assert metrics["ppe/math-max"] == result.extra["figures"]["math"]["max"] and "ppe/code" not in metrics


def test_each_response_scored_once_in_order() -> None:
    frame = pd.DataFrame(rows_of(4, 2, seed=1, subset="gpqa"))
    (only_pass,) = ppe.passes(frame)
    assert [t for _, t in only_pass] == [frame[f"response_{i}"][r] for r in range(2) for i in range(1, 5)]
    assert only_pass[0][0] == frame["prompt"][0]


def test_local_file_errors(tmp_path: Path) -> None:
    rows = rows_of(4, 2, seed=0)
    pd.DataFrame(rows).to_parquet(tmp_path / "unnamed.parquet")
    with pytest.raises(DataError, match="names none of the PPE sets"):
        ppe.load(str(tmp_path / "unnamed.parquet"), None)
    pd.DataFrame([{**rows[0], "scores": [True, False]}]).to_parquet(tmp_path / "PPE-GPQA-Best-of-K.parquet")
    with pytest.raises(DataError, match="2 scores for 4 responses"):
        ppe.load(str(tmp_path / "PPE-GPQA-Best-of-K.parquet"), None)
    same = {**rows[0], "scores": [True, True, False, False], "sampled_conflict_pairs": [[0, 1]]}
    pd.DataFrame([same]).to_parquet(tmp_path / "PPE-IFEval-Best-of-K.parquet")
    with pytest.raises(DataError, match=r"conflict pair \[0, 1\]"):
        ppe.load(str(tmp_path / "PPE-IFEval-Best-of-K.parquet"), None)
    pd.DataFrame([{**r, "subset": "math"} for r in rows]).to_parquet(tmp_path / "mixed.parquet")
    with pytest.raises(BenchmarkError, match="unknown PPE set"):
        ppe.load(str(tmp_path / "mixed.parquet"), ["code"])
    with pytest.raises(DataError, match="no rows"):
        ppe.load(str(tmp_path / "mixed.parquet"), ["gpqa"])


def test_hub_sets_at_recorded_commits(tmp_path: Path, hub_client, hub_env) -> None:
    """Only the sets asked for are downloaded; each set's commit is recorded."""
    commits = {}
    for name, seed in (("math", 1), ("mbpp-plus", 2)):
        repo = ppe.HUB_IDS[name]
        hub_client.create_repo(repo, repo_type="dataset")
        pd.DataFrame(rows_of(4, 3, seed)).to_parquet(tmp_path / f"{name}.parquet")
        hub_client.upload_file(path_or_fileobj=tmp_path / f"{name}.parquet", path_in_repo="data/train-00000.parquet",
                               repo_id=repo, repo_type="dataset")
        commits[name] = hub_env.refs(repo, repo_type="dataset")["main"]
    table = ppe.load(None, ["math", "mbpp-plus"])  # the other three sets do not exist on this Hub
    assert table.revision == f"math@{commits['math']},mbpp-plus@{commits['mbpp-plus']}"
    assert table.dataset == f"{ppe.HUB_IDS['math']},{ppe.HUB_IDS['mbpp-plus']}"
    assert table.frame["subset"].value_counts().to_dict() == {"math": 3, "mbpp-plus": 3}


# --- the three benchmarks together: sweep (checkpoints, in memory) and --push-results -------------------------


def write_three(tmp_path: Path) -> dict[str, Path]:
    """Small data files of RM-Bench, RewardMATH and PPE (MATH and MBPP-Plus rows)."""
    paths = {"rmbench": tmp_path / "rmbench.parquet", "rewardmath": tmp_path / "rewardmath.json",
             "ppe": tmp_path / "ppe.parquet"}
    pd.DataFrame([rmbench_row(i, d) for i, d in enumerate(DOMAINS)]).to_parquet(paths["rmbench"])
    paths["rewardmath"].write_text(json.dumps(rewardmath_dataset(3)))
    pd.DataFrame(rows_of(4, 2, 0, "math") + rows_of(4, 2, 1, "mbpp-plus")).to_parquet(paths["ppe"])
    return paths


def sweep_args(paths: dict[str, Path]) -> list[str]:
    data = [arg for name, path in paths.items() for arg in ("--data", f"{name}={path}")]
    return ["--benchmark", ",".join(paths), *data]


SHARED = ("rmbench/math", "rmbench/code", "rewardmath/math", "ppe/math", "ppe/code")


def test_sweep_reads_across_benchmarks(tiny_rm_dir: Path, make_tiny_rm, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep_out"
    shutil.copytree(tiny_rm_dir, sweep / "lambda-0.00")
    shutil.copytree(make_tiny_rm(seed=1), sweep / "lambda-0.50")
    write_manifest(sweep, [0.0, 0.5])
    out = tmp_path / "out"
    args = ["sweep", str(sweep), *sweep_args(write_three(tmp_path)), "--output-dir", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out / "sweep.csv")
    assert set(SHARED) <= set(csv.columns) and "ppe/math-bok@4" in csv.columns and "rmbench/hard" in csv.columns
    for lam in (0.0, 0.5):
        row = csv[csv["lambda"] == lam].iloc[0]
        for name in ("rmbench", "rewardmath", "ppe"):
            saved = json.loads((out / f"lambda-{lam:.2f}" / f"{name}.json").read_text())
            assert all(row[k] == pytest.approx(v) for k, v in saved["metrics"].items()), name
    for name in ("rmbench", "rewardmath", "ppe"):
        assert (out / f"sweep-{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_in_memory_sweep_runs_the_new_benchmarks(tmp_path: Path) -> None:
    from dogerm_mergekit import testing as tiny

    rm, lm = tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    out = tmp_path / "out"
    args = ["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm), "--lambdas", "0,1",
            *sweep_args(write_three(tmp_path)), "--output-dir", str(out), "--dtype", "float32"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out / "sweep.csv")
    assert csv["lambda"].tolist() == [0.0, 1.0] and set(SHARED) <= set(csv.columns)


def test_push_results_writes_the_new_metrics(tiny_rm_dir: Path, tmp_path: Path, hub_client, hub_env) -> None:
    repo = "me/tiny-rm"
    hub_client.create_repo(repo)
    hub_client.create_branch(repo, branch="lambda-0.30")
    hub_client.upload_folder(repo_id=repo, folder_path=tiny_rm_dir, revision="lambda-0.30")
    out = tmp_path / "out"
    for name, data in write_three(tmp_path).items():
        result = CliRunner().invoke(main, [name, f"{repo}@lambda-0.30", "--data", str(data), "--output-dir", str(out),
                                           "--push-results"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    card = hub_env.files(repo, revision="lambda-0.30")["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    pushed = {(r["dataset"]["type"], m["name"]): m["value"] for r in meta["model-index"][0]["results"]
              for m in r["metrics"]}
    for name, dataset_type in (("rmbench", "THU-KEG/RM-Bench"), ("rewardmath", "RewardMATH/RewardMATH"),
                               ("ppe", ppe.CARD_DATASET)):
        saved = json.loads((out / "me--tiny-rm@lambda-0.30" / f"{name}.json").read_text())
        for metric, value in saved["metrics"].items():
            assert pushed[(dataset_type, metric)] == pytest.approx(value, abs=1e-6)
