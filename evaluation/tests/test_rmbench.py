"""RM-Bench: the 3x3 style matrix, hard/normal/easy and domain figures against a brute-force count; schema errors;
the Hub loader; the command end to end."""

from __future__ import annotations

import itertools
import json
import math
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import rmbench
from dogerm_eval.cli import main
from dogerm_eval.errors import BenchmarkError, DataError

DOMAINS = ["chat", "chat", "math", "math", "math", "code", "safety-refuse", "safety-response", "safety-response"]


def rmbench_row(index: int, domain: str) -> dict:
    """One row of RM-Bench's total_dataset.json (id, prompt, chosen[3], rejected[3], domain); texts unique."""
    return {"id": f"{domain}/{index}", "prompt": f"question {index}?",
            "chosen": [f"good {index} {style}" for style in rmbench.STYLES],
            "rejected": [f"bad {index} {style}" for style in rmbench.STYLES], "domain": domain}


def random_scores(rows: list[dict], seed: int) -> dict[str, float]:
    """Scores keyed by text; small integers so that ties happen, plus one NaN."""
    rng = random.Random(seed)
    scores = {text: float(rng.randint(0, 3)) for row in rows for text in [*row["chosen"], *row["rejected"]]}
    scores[rows[0]["rejected"][2]] = math.nan
    return scores


def brute_force(rows: list[dict], scores: dict[str, float]) -> dict[str, Fraction | float]:
    """The published procedure, written out with counters and exact fractions: per domain count the wins of
    chosen style i over rejected style j, divide by the domain's rows, then average the cells of each triangle."""
    expected: dict[str, Fraction | float] = {}
    per_domain_levels = {}
    for domain in ("chat", "math", "code", "safety"):
        members = [r for r in rows if r["domain"].startswith(domain)]
        wins = [[0] * 3 for _ in range(3)]
        for row in members:
            for i in range(3):
                for j in range(3):
                    c, r = scores[row["chosen"][i]], scores[row["rejected"][j]]
                    if not math.isnan(c) and not math.isnan(r) and c > r:
                        wins[i][j] += 1
        cell = [[Fraction(wins[i][j], len(members)) for j in range(3)] for i in range(3)]
        hard = (cell[0][1] + cell[0][2] + cell[1][2]) / 3
        normal = (cell[0][0] + cell[1][1] + cell[2][2]) / 3
        easy = (cell[1][0] + cell[2][0] + cell[2][1]) / 3
        per_domain_levels[domain] = (hard, normal, easy)
        expected[domain] = (hard + normal + easy) / 3
    for k, level in enumerate(("hard", "normal", "easy")):
        expected[level] = sum(v[k] for v in per_domain_levels.values()) / 4
    expected["score"] = sum(expected[d] for d in ("chat", "math", "code", "safety")) / 4
    return expected


def score_frame(frame: pd.DataFrame, scores: dict[str, float]) -> np.ndarray:
    pairs = [pair for scoring_pass in rmbench.passes(frame) for pair in scoring_pass]
    return np.array([scores[text] for _, text in pairs], dtype=np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_and_levels_match_brute_force(tmp_path: Path, seed: int) -> None:
    rows = [rmbench_row(i, d) for i, d in enumerate(DOMAINS)]
    pd.DataFrame(rows).to_json(tmp_path / "total_dataset.jsonl", orient="records", lines=True)
    table = rmbench.load(str(tmp_path / "total_dataset.jsonl"), None)
    scores = random_scores(rows, seed)
    result = rmbench.evaluate(table.frame, score_frame(table.frame, scores))
    expected = brute_force(rows, scores)
    for domain in ("chat", "math", "code", "safety"):
        assert result.sections[domain.capitalize()] == pytest.approx(float(expected[domain]), abs=1e-12)
    for level in ("hard", "normal", "easy"):
        assert result.sections[level.capitalize()] == pytest.approx(float(expected[level]), abs=1e-12)
    assert result.score == pytest.approx(float(expected["score"]), abs=1e-12)
    # Overall = Domain Avg = Difficulty Avg (RM-Bench-Leaderboard README)
    assert result.score == pytest.approx(np.mean([result.sections[k] for k in ("Hard", "Normal", "Easy")]))
    assert result.extra["ties"]["nan"] == 1 and result.extra["complete"]
    assert set(result.subsets) == set(rmbench.SUBDOMAINS)


def test_one_row_by_hand() -> None:
    frame = pd.DataFrame([rmbench_row(0, "math")])
    # chosen: concise 1, plain 2, markdown 3; rejected: concise 0, plain 2.5, markdown 4
    result = rmbench.evaluate(frame, np.array([1, 2, 3, 0, 2.5, 4], dtype=np.float64))
    assert result.extra["matrix"]["math"] == [[1, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert (result.sections["Hard"], result.sections["Normal"], result.sections["Easy"]) == (0.0, 1 / 3, 1.0)
    assert result.sections["Math"] == pytest.approx(4 / 9) and result.score == pytest.approx(4 / 9)
    assert result.per_example["correct"].iloc[0].tolist() == [True, False, False, True, False, False, True, True, False]
    assert "Chat" not in result.sections  # only domains present
    others = {"missing": ["chat", "code", "safety-refuse", "safety-response"], "of": 5}
    assert result.extra["partial"] == {"score": others, "Hard": others, "Normal": others, "Easy": others}
    refuse = rmbench.evaluate(pd.DataFrame([rmbench_row(0, "safety-refuse")]), np.arange(6, dtype=np.float64))
    assert refuse.extra["partial"]["Safety"] == {"missing": ["safety-response"], "of": 2}


def test_each_text_scored_once_in_dataset_order() -> None:
    frame = pd.DataFrame([rmbench_row(i, "chat") for i in range(2)])
    (only_pass,) = rmbench.passes(frame)
    assert [t for _, t in only_pass] == [*frame["chosen"][0], *frame["rejected"][0], *frame["chosen"][1],
                                         *frame["rejected"][1]]
    assert len(set(only_pass)) == len(only_pass)


def test_subsets_and_schema_errors(tmp_path: Path) -> None:
    rows = [rmbench_row(i, d) for i, d in enumerate(DOMAINS)]
    pd.DataFrame(rows).to_parquet(tmp_path / "rm.parquet")
    table = rmbench.load(str(tmp_path / "rm.parquet"), ["safety-refuse", "safety-response"])
    assert set(table.frame["domain"]) == {"safety-refuse", "safety-response"} and len(table.frame) == 3
    with pytest.raises(BenchmarkError, match="safety"):
        rmbench.load(str(tmp_path / "rm.parquet"), ["safety"])
    short = [*rows[:2], {**rows[2], "rejected": rows[2]["rejected"][:2]}]
    pd.DataFrame(short).to_json(tmp_path / "short.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"row 2 \(id 'math/2'\), column 'rejected': expected at least 3 items, 2 found"):
        rmbench.load(str(tmp_path / "short.jsonl"), None)
    pd.DataFrame([{**rows[0], "domain": "poetry"}]).to_parquet(tmp_path / "odd.parquet")
    with pytest.raises(DataError, match="poetry"):
        rmbench.load(str(tmp_path / "odd.parquet"), None)
    pd.DataFrame(rows).drop(columns="domain").to_parquet(tmp_path / "nodomain.parquet")
    with pytest.raises(DataError, match="domain"):
        rmbench.load(str(tmp_path / "nodomain.parquet"), None)


def test_metrics_names() -> None:
    sections = {"Chat": 0.1, "Math": 0.2, "Code": 0.3, "Safety": 0.4, "Hard": 0.5, "Normal": 0.6, "Easy": 0.7}
    assert rmbench.metrics({"sections": sections, "score": 0.25}) == {
        "rmbench/chat": 0.1, "rmbench/math": 0.2, "rmbench/code": 0.3, "rmbench/safety": 0.4, "rmbench/hard": 0.5,
        "rmbench/normal": 0.6, "rmbench/easy": 0.7, "rmbench/score": 0.25}


def test_hub_dataset_at_recorded_commit(tmp_path: Path, hub_client, hub_env) -> None:
    """The Hub dataset laid out like the repository data/ folder (per-domain files and the total file in one
    split): each id once."""
    repo = rmbench.HUB_ID
    hub_client.create_repo(repo, repo_type="dataset")
    rows = [rmbench_row(i, d) for i, d in enumerate(DOMAINS)]
    pd.DataFrame(rows).to_json(tmp_path / "total_dataset.json", orient="records", lines=True)
    pd.DataFrame([r for r in rows if r["domain"] == "math"]).to_json(tmp_path / "math_filtered.json",
                                                                    orient="records", lines=True)
    for name in ("total_dataset.json", "math_filtered.json"):
        hub_client.upload_file(path_or_fileobj=tmp_path / name, path_in_repo=f"data/{name}", repo_id=repo,
                               repo_type="dataset")
    table = rmbench.load(None, None)
    assert table.dataset == repo and table.revision == hub_env.refs(repo, repo_type="dataset")["main"]
    assert sorted(table.frame["id"]) == sorted(r["id"] for r in rows)


def test_command_end_to_end(tiny_rm_dir: Path, tmp_path: Path) -> None:
    rows = [rmbench_row(i, d) for i, d in enumerate(DOMAINS)]
    pd.DataFrame(rows).to_parquet(tmp_path / "rm.parquet")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["rmbench", str(tiny_rm_dir), "--data", str(tmp_path / "rm.parquet"),
                                       "--output-dir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / tiny_rm_dir.name / "rmbench.json").read_text())
    per_example = pd.read_parquet(out / tiny_rm_dir.name / saved["per_example"])
    scores = {text: float(s) for row, cs, rs in zip(rows, per_example["score_chosen"], per_example["score_rejected"])
              for text, s in itertools.chain(zip(row["chosen"], cs), zip(row["rejected"], rs))}
    expected = brute_force(rows, scores)
    assert saved["metrics"]["rmbench/math"] == pytest.approx(float(expected["math"]), abs=1e-12)
    assert saved["metrics"]["rmbench/hard"] == pytest.approx(float(expected["hard"]), abs=1e-12)
    assert saved["score"] == pytest.approx(float(expected["score"]), abs=1e-12)
    assert "rmbench/code" in result.output
