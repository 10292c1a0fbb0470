"""NaN / inf scores on every benchmark path (pairwise, RewardBench v1/v2, Auto-J, RM-Bench, RewardMATH, PPE,
Best-of-N): refused with the count before a result is written, or allowed and marked (JSON, sweep table, score line).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dogerm_eval import nonfinite
from dogerm_eval.benchmarks import gsm8k, prepare_task, run_model
from dogerm_eval.errors import ScoreError
from dogerm_eval.models import ResolvedModel
from dogerm_eval.report import format_table, sweep_frame
from dogerm_eval.results import read_per_example, result_path
from dogerm_eval.task import Task
from evaluation.tests.published import ROWS, gsm8k_rows, write

MODEL = ResolvedModel(path=Path("unused"), ref="org/broken-rm@main", repo_id="org/broken-rm", revision="main",
                      commit="c" * 40)
FORMAT = {"rmbench": "array", "rewardmath": "array", "autoj": "lines"}


def poisoned(response: str) -> float:
    """A deterministic score per text; about a third of the texts NaN, some +inf or -inf."""
    h = zlib.crc32(response.encode())
    return (math.nan, math.inf, -math.inf, 0.0, 0.0, 0.0)[h % 6] or float(h % 97)


class PoisonedScorer:
    """Scores every (prompt, response) with :func:`poisoned`."""

    def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray:
        return np.array([poisoned(response) for _, response in conversations], dtype=np.float64)

    def settings_record(self) -> dict[str, str]:
        return {"scorer": "poisoned"}


def task_for(name: str, tmp_path: Path) -> Task:
    if name == gsm8k.NAME:
        data = write(gsm8k_rows(), tmp_path / "gsm8k.json", "array")
        candidates = tmp_path / "candidates.jsonl"
        candidates.write_text("".join(json.dumps({"problem_id": i, "prompt": row["question"], "candidates": [
            f"The answer is {2 * (i + 1)}.", "The answer is 0.", f"{i} apples", "The answer is 7."]}) + "\n"
            for i, row in enumerate(gsm8k_rows())))
        return gsm8k.task(str(data), candidates)
    fmt = FORMAT.get(name, "parquet")
    path = write(ROWS[name](), tmp_path / f"{name}.{'parquet' if fmt == 'parquet' else 'json'}", fmt)
    return prepare_task(name, str(path), None)


BENCHMARKS = ("pairwise", "rewardbench", "rewardbench2", "autoj", "rmbench", "rewardmath", "ppe", "judgebench",
              gsm8k.NAME)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_refused_then_allowed_and_marked(name: str, tmp_path: Path) -> None:
    task = task_for(name, tmp_path)
    positions = [response for conversations in task.benchmark.passes(task.table.frame) for _, response in conversations]
    raw = np.array([poisoned(r) for r in positions])
    expected = int((~np.isfinite(raw)).sum())
    assert 0 < expected < len(raw), "the data must mix finite and non-finite scores"
    out = tmp_path / "out"
    with pytest.raises(ScoreError, match=rf"^org/broken-rm@main: {expected} of {len(raw)} scores are not finite \("):
        run_model([task], MODEL, {}, lambda _: PoisonedScorer(), out)
    assert not result_path(out, MODEL, task.benchmark.NAME).exists()  # nothing misleading written

    allowed = {nonfinite.POLICY_KEY: nonfinite.ALLOW}
    result = run_model([task], MODEL, allowed, lambda _: PoisonedScorer(), out)[task.benchmark.NAME]
    counts = result[nonfinite.POLICY_KEY]
    assert (counts["total"], counts["scores"], counts["allowed"]) == (expected, len(raw), True)
    assert (counts["nan"], counts["posinf"], counts["neginf"]) == tuple(
        int(test(raw).sum()) for test in (np.isnan, np.isposinf, np.isneginf))
    if "subset" in read_per_example(result_path(out, MODEL, task.benchmark.NAME)).columns:  # rows with a subset
        assert sum(counts["by_subset"].values()) == expected
    # the formula saw every non-finite score as NaN: the same result as from NaN-only scores
    neutral = task.benchmark.evaluate(task.table.frame, np.where(np.isfinite(raw), raw, np.nan))
    assert result["score"] == pytest.approx(neutral.score, nan_ok=True)
    frame = sweep_frame([({"lambda": 0.0}, {task.benchmark.NAME: result})])
    assert frame[f"{task.benchmark.NAME}/{nonfinite.COLUMN}"].tolist() == [expected]
    assert f"{task.benchmark.NAME}/{nonfinite.COLUMN}" in format_table(frame)
    assert f"{expected} of {len(raw)} scores are not finite" in nonfinite.note(result)
    # the settings key never enters the cache key: the allowed result is cached, but refused without the option
    with pytest.raises(ScoreError, match="scores are not finite"):
        run_model([task], MODEL, {}, lambda _: PoisonedScorer(), out)


def test_finite_scores_leave_no_mark(tmp_path: Path) -> None:
    task = task_for("pairwise", tmp_path)

    class Finite(PoisonedScorer):
        def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray:
            return np.array([float(len(r)) for _, r in conversations])

    result = run_model([task], MODEL, {}, lambda _: Finite(), tmp_path / "out")["pairwise"]
    assert result[nonfinite.POLICY_KEY] == {"nan": 0, "posinf": 0, "neginf": 0, "total": 0, "scores": 12,
                                            "allowed": False}
    assert nonfinite.note(result) == ""
    assert f"pairwise/{nonfinite.COLUMN}" not in sweep_frame([({"lambda": 0.0}, {"pairwise": result})]).columns
