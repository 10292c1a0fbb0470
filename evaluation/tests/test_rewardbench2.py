"""RewardBench 2: best-of-4 tie credit and the Ties formula against hand computations; schema errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dogerm_eval.benchmarks import rewardbench2
from dogerm_eval.benchmarks.samples import rewardbench2_row
from dogerm_eval.errors import BenchmarkError, DataError


# Scores of every response, keyed by its text (texts are unique), and the rows using them.
SCORES = {
    "a0": 3, "a1": 1, "a2": 2, "a3": 0,            # Math: chosen strictly best -> 1
    "b0": 2, "b1": 2, "b2": 1, "b3": 0,            # tie with one rejected at the top -> 1/2
    "c0": 2, "c1": 2, "c2": 2, "c3": 2,            # four-way tie -> 1/4
    "d0": 1, "d1": 3, "d2": 0, "d3": 0,            # rejected wins -> 0
    "e0": math.nan, "e1": 0, "e2": 0, "e3": 0,     # NaN -> 0
    # Ties subset
    "r1c": 5, "r1i0": 1, "r1i1": 2,                # ref:1   cim 3, acc
    "t1c0": 4, "t1c1": 6, "t1c2": 5, "t1i0": 1, "t1i1": 3,   # tied:1  cim 1, dcm 2, acc
    "r2c": 2, "r2i": 3,                            # ref:2   cim -1, wrong
    "t2c0": 4, "t2c1": 4.5, "t2i": 0,              # tied:2  cim 4, dcm 0.5, acc
    "r3c": 1, "r3i": 0,                            # ref:3   (no tied row) acc
    "r4c": 1, "r4i": 0,                            # ref:4   cim 1, acc
    "t4c0": 2, "t4c1": 2, "t4i": 1,                # tied:4  cim 1, dcm 0 (left out of the tanh term)
}
ROWS = [
    rewardbench2_row("m1", "Math", ["a0"], ["a1", "a2", "a3"]),
    rewardbench2_row("m2", "Math", ["b0"], ["b1", "b2", "b3"]),
    rewardbench2_row("m3", "Math", ["c0"], ["c1", "c2", "c3"]),
    rewardbench2_row("m4", "Math", ["d0"], ["d1", "d2", "d3"]),
    rewardbench2_row("m5", "Math", ["e0"], ["e1", "e2", "e3"]),
    rewardbench2_row("ref:1", "Ties", ["r1c"], ["r1i0", "r1i1"]),
    rewardbench2_row("tied:1", "Ties", ["t1c0", "t1c1", "t1c2"], ["t1i0", "t1i1"]),
    rewardbench2_row("ref:2", "Ties", ["r2c"], ["r2i"]),
    rewardbench2_row("tied:2", "Ties", ["t2c0", "t2c1"], ["t2i"]),
    rewardbench2_row("ref:3", "Ties", ["r3c"], ["r3i"]),
    rewardbench2_row("ref:4", "Ties", ["r4c"], ["r4i"]),
    rewardbench2_row("tied:4", "Ties", ["t4c0", "t4c1"], ["t4i"]),
]
EXPECTED_MATH = (1 + 1 / 2 + 1 / 4 + 0 + 0) / 5
EXPECTED_TIES = (
    0.3 * 1.0                                  # tied rows 1, 2, 4 all accurate
    + 0.3 * 0.75                               # ref rows 1, 3, 4 of 4
    + 0.2 * (2 / 3)                            # prompts in both: 1, 2, 4; cim_tied > dcm for 2 and 4
    + 0.2 * (1 / 3)                            # min(cim_ref, cim_tied) > dcm only for 4
    + 0.01 * (math.tanh(1 / 2 - 1) + math.tanh(-1 / 0.5 - 1)) / 2   # dcm > 0: prompts 1 and 2
)


def score_rows(frame: pd.DataFrame) -> np.ndarray:
    pairs = [pair for scoring_pass in rewardbench2.passes(frame) for pair in scoring_pass]
    return np.array([SCORES[response] for _, response in pairs], dtype=np.float64)


def test_tie_credit_and_ties_formula_by_hand(tmp_path: Path) -> None:
    pd.DataFrame(ROWS).to_parquet(tmp_path / "rb2.parquet")
    table = rewardbench2.load(str(tmp_path / "rb2.parquet"), None)
    result = rewardbench2.evaluate(table.frame, score_rows(table.frame))
    assert result.per_example["credit"].tolist()[:5] == [1.0, 0.5, 0.25, 0.0, 0.0]
    assert result.subsets["Math"] == pytest.approx(EXPECTED_MATH)
    assert result.subsets["Ties"] == pytest.approx(EXPECTED_TIES, abs=1e-12)
    assert result.score == pytest.approx((EXPECTED_MATH + EXPECTED_TIES) / 2)
    ties = result.extra["ties"]
    assert (ties["prompts_both"], ties["prompts_margin"]) == (3, 2)
    assert ties["accuracy_ref"] == 0.75
    # per-example lists keep every completion's score, chosen first
    assert result.per_example["score_chosen"].iloc[6].tolist() == [4, 6, 5]
    assert result.per_example["score_rejected"].iloc[6].tolist() == [1, 3]
    assert result.per_example["correct"].tolist()[5:8] == [True, True, False]


def test_ties_tanh_term_zero_when_no_spread() -> None:
    rows = pd.DataFrame({"id": ["ref:1", "tied:1"], "score_chosen": [[1.0], [2.0, 2.0]],
                         "score_rejected": [[0.0], [0.5]]})
    score, detail = rewardbench2.ties_score(rows)
    assert detail["prompts_margin"] == 0 and detail["correctness_margin"] == 0.0
    assert score == pytest.approx(0.3 + 0.3 + 0.2 + 0.2)


def test_jsonl_lists_and_subset_selection(tmp_path: Path) -> None:
    path = tmp_path / "rb2.jsonl"
    pd.DataFrame(ROWS).to_json(path, orient="records", lines=True)
    table = rewardbench2.load(str(path), ["Math"])
    assert len(table.frame) == 5
    assert rewardbench2.evaluate(table.frame, score_rows(table.frame)).score == pytest.approx(EXPECTED_MATH)
    with pytest.raises(BenchmarkError, match="Chat"):
        rewardbench2.load(str(path), ["Chat"])


def test_schema_errors(tmp_path: Path) -> None:
    bad_id = pd.DataFrame([rewardbench2_row("7", "Ties", ["x"], ["y"])])
    bad_id.to_parquet(tmp_path / "bad_id.parquet")
    with pytest.raises(DataError, match="ref:<k>"):
        rewardbench2.load(str(tmp_path / "bad_id.parquet"), None)
    empty = pd.DataFrame([rewardbench2_row("m1", "Math", ["x"], ["y"]), rewardbench2_row("m2", "Math", ["x"], [])])
    empty.to_json(tmp_path / "empty.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"row 1 \(id 'm2'\), column 'rejected': expected at least 1 items, 0 found"):
        rewardbench2.load(str(tmp_path / "empty.jsonl"), None)
    pd.DataFrame(ROWS).drop(columns=["subset"]).to_parquet(tmp_path / "no_subset.parquet")
    with pytest.raises(DataError, match="subset"):
        rewardbench2.load(str(tmp_path / "no_subset.parquet"), None)


def test_metrics_names() -> None:
    metrics = rewardbench2.metrics({"subsets": {"Precise IF": 0.5, "Ties": 0.25}, "score": 0.375})
    assert metrics == {"rewardbench2/precise-if": 0.5, "rewardbench2/ties": 0.25, "rewardbench2/score": 0.375}


def ties_rows(rows: list[tuple[str, list[float], list[float]]]) -> pd.DataFrame:
    return pd.DataFrame({"id": [r[0] for r in rows], "score_chosen": [r[1] for r in rows],
                         "score_rejected": [r[2] for r in rows]})


def test_ties_tied_row_with_one_correct_answer_leaves_the_last_terms() -> None:
    """rewardbench 0.1.4: such a row has dcm = None, so its prompt is dropped from both 0.2 terms (and the tanh)."""
    rows = ties_rows([("ref:1", [5.0], [1.0]), ("tied:1", [4.0], [1.0]),              # single correct: dropped
                      ("ref:2", [3.0], [1.0]), ("tied:2", [4.0, 5.0], [0.0])])         # cim_tied 4 > dcm 1
    score, detail = rewardbench2.ties_score(rows)
    assert (detail["prompts_both"], detail["prompts_used"], detail["prompts_single_correct_tied"]) == (2, 1, 1)
    assert detail["correctness_preferred"] == 1.0 and detail["correctness_preferred_hard"] == 1.0
    assert score == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01 * math.tanh(2 / 1 - 1))


def test_ties_without_a_prompt_in_both_rows_gives_zero_terms_not_nan() -> None:
    rows = ties_rows([("ref:1", [5.0], [1.0]), ("tied:2", [4.0, 4.5], [1.0]), ("ref:3", [0.0], [1.0])])
    score, detail = rewardbench2.ties_score(rows)
    assert detail["prompts_both"] == 0
    assert (detail["correctness_preferred"], detail["correctness_preferred_hard"], detail["correctness_margin"]) == (
        0.0, 0.0, 0.0)
    assert score == pytest.approx(0.3 * 1.0 + 0.3 * 0.5)
    only_single = ties_rows([("ref:1", [5.0], [1.0]), ("tied:1", [4.0], [1.0])])
    assert rewardbench2.ties_score(only_single)[0] == pytest.approx(0.6)   # every prompt dropped: terms 0


def test_ties_ids_are_keyed_by_int() -> None:
    """"ref:01" and "tied:1" are one prompt, as rewardbench keys them by int(k); a later duplicate replaces."""
    rows = ties_rows([("ref:01", [5.0], [1.0]), ("tied:1", [4.0, 4.5], [1.0])])
    assert rewardbench2.ties_score(rows)[1]["prompts_both"] == 1
    duplicate = ties_rows([("ref:1", [0.0], [1.0]), ("ref:001", [5.0], [1.0]), ("tied:1", [4.0, 4.5], [1.0])])
    assert rewardbench2.ties_score(duplicate)[1]["accuracy_ref"] == 1.0
    assert rewardbench2.ties_prompt_key("abc") == "abc"   # not an integer (rewardbench raises): kept as text
