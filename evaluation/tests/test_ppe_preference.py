"""PPE human preference: accuracy over non-tie pairs, per language and category flag, and the Brier score against
an independent computation; schema errors; the Hub split; the command end to end on parquet and JSON lines."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import ppe_preference
from dogerm_eval.cli import main
from dogerm_eval.errors import BenchmarkError, DataError

WINNERS = ["model_a", "model_b", "tie", "tie (bothbad)"]


def row(index: int, winner: str, language: str, hard: bool) -> dict:
    """One row in the Hub set's schema (its columns used here, a model pair and a category flag)."""
    return {"question_id": f"q{index}", "model_a": "m1", "model_b": "m2", "winner": winner, "language": language,
            "prompt": f"prompt {index}", "response_1": f"first {index}", "response_2": f"second {index}",
            "hard_prompt": hard}


def rows(seed: int, n: int = 50) -> list[dict]:
    rng = random.Random(seed)
    return [row(i, rng.choice(WINNERS), rng.choice(["English", "Chinese"]), rng.random() < 0.4) for i in range(n)]


def independent(data: list[dict], first: list[float], second: list[float]) -> dict[str, float]:
    """Written out per row: skip ties; a win when the preferred side's score is larger; Brier of
    1 / (1 + e^-(s1 - s2)) against 1 when response_1 was preferred."""
    wins, hard, brier = [], [], []
    for r, a, b in zip(data, first, second):
        if r["winner"] not in ("model_a", "model_b"):
            continue
        won = a > b if r["winner"] == "model_a" else b > a
        wins.append(won)
        if r["hard_prompt"]:
            hard.append(won)
        brier.append((1 / (1 + math.exp(b - a)) - (r["winner"] == "model_a")) ** 2)
    return {"score": sum(wins) / len(wins), "hard_prompt": sum(hard) / len(hard), "brier": sum(brier) / len(brier)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_and_brier_match_an_independent_computation(seed: int) -> None:
    data = rows(seed)
    rng = random.Random(seed + 10)
    first = [float(rng.randint(-2, 2)) for _ in data]
    second = [float(rng.randint(-2, 2)) for _ in data]
    result = ppe_preference.evaluate(pd.DataFrame(data), np.array(first + second))
    expected = independent(data, first, second)
    assert result.score == pytest.approx(expected["score"], abs=1e-15)
    assert result.sections["hard_prompt"] == pytest.approx(expected["hard_prompt"], abs=1e-15)
    assert result.extra["brier"] == pytest.approx(expected["brier"], rel=1e-12)
    assert result.extra["ties_excluded"] == sum(r["winner"].startswith("tie") for r in data)
    metrics = ppe_preference.metrics(result.summary())
    assert metrics["ppe-preference/score"] == result.score and "ppe-preference/brier" in metrics


def test_schema_errors_and_languages(tmp_path: Path) -> None:
    data = rows(0, 12)
    path = tmp_path / "ppe.parquet"
    pd.DataFrame(data).to_parquet(path)
    assert set(ppe_preference.load(str(path), ["Chinese"]).frame["language"]) == {"Chinese"}
    with pytest.raises(BenchmarkError, match="unknown language"):
        ppe_preference.load(str(path), ["French"])
    pd.DataFrame([{**r, "winner": "model_c"} for r in data]).to_parquet(path)
    with pytest.raises(DataError, match="winner 'model_c'"):
        ppe_preference.load(str(path), None)
    pd.DataFrame([{**r, "winner": "tie"} for r in data]).to_parquet(path)
    with pytest.raises(DataError, match="every row is a tie"):
        ppe_preference.load(str(path), None)
    pd.DataFrame([{k: v for k, v in r.items() if k != "response_2"} for r in data]).to_parquet(path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['response_2'\]"):
        ppe_preference.load(str(path), None)


def test_hub_split_at_recorded_commit(tmp_path: Path, hub_client, hub_env) -> None:
    repo = ppe_preference.HUB_ID
    hub_client.create_repo(repo, repo_type="dataset")
    pd.DataFrame(rows(1, 8)).to_parquet(tmp_path / "test-00000-of-00001.parquet")
    hub_client.upload_file(path_or_fileobj=tmp_path / "test-00000-of-00001.parquet",
                           path_in_repo="data/test-00000-of-00001.parquet", repo_id=repo, repo_type="dataset")
    table = ppe_preference.load(None, None)
    assert table.revision == hub_env.refs(repo, repo_type="dataset")["main"] and len(table.frame) == 8


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_command_end_to_end(tiny_rm_dir: Path, tmp_path: Path, suffix: str) -> None:
    data = rows(4, 14)
    path = tmp_path / f"ppe{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(data).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["ppe-preference", str(tiny_rm_dir), "--data", str(path), "--output-dir",
                                       str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / tiny_rm_dir.name / "ppe-preference.json").read_text())
    per_example = pd.read_parquet(out / tiny_rm_dir.name / saved["per_example"])
    expected = independent(data, per_example["score_1"].tolist(), per_example["score_2"].tolist())
    assert saved["score"] == pytest.approx(expected["score"], abs=1e-15)
    assert saved["metrics"]["ppe-preference/brier"] == pytest.approx(expected["brier"], rel=1e-12)
    assert "ppe-preference/hard_prompt" in result.output
