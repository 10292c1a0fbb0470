"""Non-finite reward scores (NaN, +inf, -inf): counted after scoring; refused, or allowed and marked.

A reward model whose weights hold a NaN, or that overflows in fp16, scores NaN or inf, and every benchmark would
still print a number (a NaN comparison is just "not better"). So ``run_task`` counts the non-finite scores and, unless
``--allow-nonfinite-scores`` was given, fails with one line naming the model, the benchmark and the counts before any
result is written (the score checkpoints stay, so a rerun with the option does not score again). When allowed, every
non-finite score is made NaN before the benchmark's formula runs, so each benchmark's NaN rule applies to all of them
(a NaN never wins a comparison and ranks below every real score; +inf is not a win), and the result is marked: its
JSON holds ``nonfinite_scores`` (counts, per subset), the printed table a ``<benchmark>/nonfinite-scores`` column
and the score line the count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from dogerm_eval.errors import ScoreError

if TYPE_CHECKING:  # pandas is imported by callers that have per-example tables; --help stays light
    import pandas as pd

POLICY_KEY = "nonfinite_scores"
"""Key of the scoring settings (present only with --allow-nonfinite-scores); never part of a cache key."""
ALLOW = "allow"
COLUMN = "nonfinite-scores"
"""Sweep-table column ``<benchmark>/nonfinite-scores``: the count, for results computed with non-finite scores."""
OPTION = "--allow-nonfinite-scores"


def split_policy(settings: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The settings without the policy key, and whether non-finite scores are allowed."""
    rest = {key: value for key, value in settings.items() if key != POLICY_KEY}
    return rest, settings.get(POLICY_KEY) == ALLOW


def count(scores: np.ndarray) -> dict[str, int]:
    """How many scores are NaN, +inf, -inf, in all (``total``), out of ``scores`` (the scored positions)."""
    scores = np.asarray(scores, dtype=np.float64)
    nan, posinf, neginf = (int(np.count_nonzero(test(scores))) for test in (np.isnan, np.isposinf, np.isneginf))
    return {"nan": nan, "posinf": posinf, "neginf": neginf, "total": nan + posinf + neginf, "scores": int(scores.size)}


def describe(counts: Mapping[str, int]) -> str:
    """``12 of 248 scores are not finite (NaN 10, +inf 2)``."""
    parts = [f"{label} {counts[key]}" for key, label in (("nan", "NaN"), ("posinf", "+inf"), ("neginf", "-inf"))
             if counts[key]]
    return f"{counts['total']} of {counts['scores']} scores are not finite ({', '.join(parts)})"


def refusal(model: str, benchmark: str, counts: Mapping[str, int]) -> ScoreError:
    """The one-line error for a model with non-finite scores on a benchmark."""
    return ScoreError(f"{model}: {describe(counts)} on {benchmark}; no result was written. The model is broken "
                      f"(NaN/inf weights, or fp16 overflow: try --dtype float32); {OPTION} writes results that count "
                      "them as never winning, marked with the count")


def neutralise(scores: np.ndarray) -> np.ndarray:
    """The scores with every non-finite value made NaN (the value each benchmark's formula treats as a loss)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(np.isfinite(scores), scores, np.nan)


def row_counts(per_example: pd.DataFrame) -> pd.Series:
    """NaN scores per per-example row: the first of these groups of score columns a benchmark writes (score_1/2 of
    Auto-J, which also writes score_chosen/rejected; score_a/b of JudgeBench; score_chosen/rejected; scores), a cell
    a number or a list of numbers."""
    groups = (("score_1", "score_2"), ("score_a", "score_b"), ("score_chosen", "score_rejected", "scores"))
    columns = next(([c for c in g if c in per_example.columns] for g in groups
                    if any(c in per_example.columns for c in g)), [])
    total = per_example.index.to_series() * 0
    for column in columns:
        total += per_example[column].map(lambda cell: int(np.isnan(np.asarray(cell, dtype=np.float64)).sum()))
    return total


def record(counts: Mapping[str, int], per_example: pd.DataFrame, allow: bool) -> dict[str, Any]:
    """The result JSON's ``nonfinite_scores``: the counts, whether they were allowed and, when there are any, the
    rule applied and the count per subset."""
    entry: dict[str, Any] = {**counts, "allowed": allow}
    if counts["total"]:
        entry["rule"] = "every non-finite score counts as NaN: never a win, ranked below every real score"
    if counts["total"] and "subset" in per_example.columns:
        rows = row_counts(per_example)
        by_subset = rows.groupby(per_example["subset"].astype(str)).sum()
        entry["by_subset"] = {str(name): int(value) for name, value in by_subset.items() if value}
    return entry


def check_cached(result: Mapping[str, Any], model: str, allow: bool) -> None:
    """Refuse a cached result computed with non-finite scores unless they are allowed now too."""
    counts = result.get(POLICY_KEY) or {}
    if counts.get("total") and not allow:
        raise refusal(model, str(result.get("benchmark")), counts)


def note(result: Mapping[str, Any]) -> str:
    """`` [marked: 12 of 248 scores are not finite (NaN 12), counted as never winning]`` or an empty string."""
    counts = result.get(POLICY_KEY) or {}
    return f" [marked: {describe(counts)}, counted as never winning]" if counts.get("total") else ""
