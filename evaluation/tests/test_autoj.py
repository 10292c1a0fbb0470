"""Auto-J pairwise: DogeRM's tie-free Math/Code/Other split and Auto-J's agreement with a test-tuned tie threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dogerm_eval.benchmarks import autoj
from dogerm_eval.benchmarks.samples import autoj_row
from dogerm_eval.errors import BenchmarkError, DataError

# (scenario, label, score of response 1, score of response 2)
CASES = [
    ("math_reasoning", 0, 2.0, 1.0),                   # Math correct
    ("solving_exam_question_with_math", 1, 2.0, 1.0),  # Math wrong
    ("math_reasoning", 2, 1.0, 1.05),                  # tie: dropped by DogeRM
    ("code_generation", 1, 0.0, 1.0),                  # Code correct
    ("explaining_code", 0, 1.0, 1.0),                  # Code: exact tie of scores -> wrong
    ("code_correction_rewriting", 0, 3.0, -1.0),       # Code correct
    ("writing_email", 0, 5.0, 1.0),                    # Other correct
    ("writing_email", 2, 0.0, 0.2),                    # tie
    ("chitchat", 1, 1.0, 0.0),                         # Other wrong
]


def autoj_lines(cases: list[tuple[str, int, float, float]]) -> list[dict]:
    return [autoj_row(i, scenario, label) for i, (scenario, label, _, _) in enumerate(cases)]


def write_autoj(path: Path, cases: list[tuple[str, int, float, float]] = CASES) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in autoj_lines(cases)))
    return path


def scores_for(frame: pd.DataFrame, cases: list[tuple[str, int, float, float]] = CASES) -> np.ndarray:
    values = []
    for _, response in (pair for scoring_pass in autoj.passes(frame) for pair in scoring_pass):
        which, index = response.split("-")
        values.append(cases[int(index)][2 if which == "r1" else 3])
    return np.array(values)


def test_dogerm_view_category_split(tmp_path: Path) -> None:
    table = autoj.load(str(write_autoj(tmp_path / "autoj.jsonl")), None)
    result = autoj.evaluate(table.frame, scores_for(table.frame))
    assert result.sections == pytest.approx({"Math": 1 / 2, "Code": 2 / 3, "Other": 1 / 2})
    assert result.score == pytest.approx(4 / 7)
    assert result.extra["pairs"] == {"all": 7, "Math": 2, "Code": 3, "Other": 2}
    assert result.extra["ties_dropped"] == 2
    assert result.subsets["writing_email"] == 1.0 and result.subsets["chitchat"] == 0.0
    assert result.per_example["correct"].isna().sum() == 2
    assert result.per_example["id"].tolist() == list(range(len(CASES)))


def test_tie_threshold_tuned_by_hand() -> None:
    gaps = np.array([0.1, 0.2, 3.0, -4.0, 0.05])
    labels = np.array([2, 2, 0, 1, 0])
    predicted = np.where(gaps > 0, 0, 1)
    # t=0: .6, t=.05: .4, t=.1: .6, t=.2: .8, t=3: .6, t=4: .4
    assert autoj.tune_tie_threshold(gaps, predicted, labels) == (pytest.approx(0.2), pytest.approx(0.8))


def test_agreement_reported_and_flagged(tmp_path: Path) -> None:
    table = autoj.load(str(write_autoj(tmp_path / "autoj.jsonl")), None)
    result = autoj.evaluate(table.frame, scores_for(table.frame))
    agreement = result.extra["agreement"]
    assert agreement["tuned_on_test"] is True
    # threshold 0.2 turns both ties right (gaps .05, .2) and the exact score tie wrong-labelled anyway -> 6/9
    assert agreement["tie_threshold"] == pytest.approx(0.2)
    assert agreement["value"] == pytest.approx(6 / 9)
    assert agreement["value_at_threshold_0"] == pytest.approx(4 / 9)


def test_subsets_by_scenario_or_group(tmp_path: Path) -> None:
    path = str(write_autoj(tmp_path / "autoj.jsonl"))
    assert set(autoj.load(path, ["code"]).frame["scenario"]) == {
        "code_generation", "explaining_code", "code_correction_rewriting"}
    assert set(autoj.load(path, ["Other", "math_reasoning"]).frame["scenario"]) == {
        "writing_email", "chitchat", "math_reasoning"}
    with pytest.raises(BenchmarkError, match="poetry"):
        autoj.load(path, ["poetry"])


def test_schema_errors(tmp_path: Path) -> None:
    lines = autoj_lines(CASES)
    del lines[3]["response 2"]
    (tmp_path / "missing.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(DataError, match=r"row 3 \(id 3\).*'response 2'"):
        autoj.load(str(tmp_path / "missing.jsonl"), None)
    lines = autoj_lines(CASES)
    lines[1]["label"] = 5
    (tmp_path / "label.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(DataError, match=r"row 1 \(id 1\), column 'label': expected .*less than or equal to 2, found int 5"):
        autoj.load(str(tmp_path / "label.jsonl"), None)
