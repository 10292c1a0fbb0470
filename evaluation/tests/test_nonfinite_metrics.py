"""Every benchmark's figures from score vectors holding NaN, +inf and -inf (allowed with --allow-nonfinite-scores),
against an independent numpy computation of the published formula with the rule "a non-finite score never wins and
ranks below every real score". Property-based (hypothesis), seeded and bounded."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dogerm_eval.benchmarks import autoj, ppe, ppe_preference, rewardbench, rewardbench2, rewardmath, rmbench
from dogerm_eval.bestofn import expected_best_of_n
from dogerm_eval.nonfinite import neutralise
from evaluation.tests.published import autoj_rows, ppe_rows, rewardmath_rows, rmbench_rows

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None)
VALUES = [0.0, 1.0, 2.0, 2.5, math.nan, math.inf, -math.inf]


def scores(n: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.sampled_from(VALUES), min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float64))


def wins(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a beats b: both finite and a > b."""
    return np.isfinite(a) & np.isfinite(b) & (a > b)


RB_FRAME = pd.DataFrame({"id": range(8), "prompt": [f"p{i}" for i in range(8)],
                         "subset": ["math-prm"] * 3 + ["hep-go"] * 3 + ["alpacaeval-easy"] * 2})


@PROPERTY
@given(raw=scores(16))
def test_rewardbench(raw: np.ndarray) -> None:
    result = rewardbench.evaluate(RB_FRAME, neutralise(raw))
    correct = wins(raw[:8], raw[8:])
    subset = RB_FRAME["subset"].to_numpy()
    acc = {name: correct[subset == name].mean() for name in ("math-prm", "hep-go", "alpacaeval-easy")}
    assert result.subsets == pytest.approx(acc)
    reasoning = (984 * acc["math-prm"] + 164 * acc["hep-go"]) / (984 + 164)
    assert result.sections["Reasoning"] == pytest.approx(reasoning)
    assert result.score == pytest.approx((reasoning + acc["alpacaeval-easy"]) / 2)


@PROPERTY
@given(raw=scores(10 * 6))
def test_rmbench(raw: np.ndarray) -> None:
    frame = pd.DataFrame(rmbench_rows(2))
    result = rmbench.evaluate(frame, neutralise(raw))
    per_row = raw.reshape(10, 6)
    m = np.array([[[wins(r[i], r[3 + j]) for j in range(3)] for i in range(3)] for r in per_row], dtype=float)
    domain = frame["domain"].str.split("-").str[0].to_numpy()
    accuracy = {}
    for name in ("chat", "math", "code", "safety"):
        mean = m[domain == name].mean(axis=0)
        levels = (mean[np.triu_indices(3, 1)].mean(), np.diag(mean).mean(), mean[np.tril_indices(3, -1)].mean())
        accuracy[name] = np.mean(levels)
        assert result.sections[name.capitalize()] == pytest.approx(accuracy[name])
    assert result.score == pytest.approx(np.mean(list(accuracy.values())))


@PROPERTY
@given(raw=scores(3 * 5))
def test_rewardmath(raw: np.ndarray) -> None:
    frame = pd.DataFrame(rewardmath_rows(problems=3, rejected=4))
    result = rewardmath.evaluate(frame, neutralise(raw))
    accuracy, ties, reciprocal = [], [], []
    for chosen, rejected in ((p[0], p[1:]) for p in raw.reshape(3, 5)):
        real = rejected[np.isfinite(rejected)]  # non-finite rejected solutions rank below every real score
        if not np.isfinite(chosen):
            accuracy.append(False), ties.append(False), reciprocal.append(1 / 5)
            continue
        accuracy.append(bool((chosen > real).all()))
        ties.append(bool((chosen >= real).all()))
        reciprocal.append(1 / (1 + int((real >= chosen).sum())))
    assert result.score == pytest.approx(np.mean(accuracy))
    assert result.sections["MRR"] == pytest.approx(np.mean(reciprocal))
    assert result.sections["Accuracy with ties"] == pytest.approx(np.mean(ties))


@PROPERTY
@given(raw=scores(8))
def test_autoj(raw: np.ndarray) -> None:
    frame = pd.DataFrame(autoj_rows()).assign(id=range(4))
    result = autoj.evaluate(frame, neutralise(raw))
    labels = frame["label"].to_numpy()
    first, second = raw[:4], raw[4:]
    correct = np.where(labels == 0, wins(first, second), wins(second, first))[labels != 2]
    assert result.score == pytest.approx(correct.mean())


@PROPERTY
@given(raw=scores(4 * 3))
def test_rewardbench2_best_of_4(raw: np.ndarray) -> None:
    frame = pd.DataFrame([{"id": str(i), "subset": "Math", "prompt": "p", "chosen": ["c"], "rejected": ["r"] * 3}
                          for i in range(3)])
    result = rewardbench2.evaluate(frame, neutralise(raw))
    credit = []
    for row in raw.reshape(3, 4):
        top = row.max() if np.isfinite(row).all() else None  # rewardbench 0.1.4: any NaN score gives the row 0
        credit.append(0.0 if top is None or row[0] != top else 1 / int((row == top).sum()))
    assert result.subsets["Math"] == pytest.approx(np.mean(credit))


@PROPERTY
@given(raw=scores(2 * 4))
def test_ppe_pairs_and_best_of_k(raw: np.ndarray) -> None:
    frame = pd.DataFrame(ppe_rows(4))
    result = ppe.evaluate(frame, neutralise(raw))
    per_row = raw.reshape(2, 4)
    pairs = [wins(s[i], s[j]) if c[i] else wins(s[j], s[i]) for s, c, p in
             zip(per_row, frame["scores"], frame["sampled_conflict_pairs"]) for i, j in p]
    assert result.subsets["math"] == pytest.approx(np.mean(pairs))
    for k in (1, 2, 4):  # brute force over every k-subset; ties to the lower index, non-finite ranked last
        expected = []
        for s, c in zip(per_row, frame["scores"]):
            key = np.where(np.isfinite(s), s, -np.inf)
            picks = [min(subset, key=lambda i: (-key[i], i)) for subset in itertools.combinations(range(4), k)]
            expected.append(np.mean([c[i] for i in picks]))
        assert result.extra["bok"]["math"][str(k)]["expected"] == pytest.approx(np.mean(expected))
        assert expected_best_of_n(neutralise(per_row[0]).tolist(), frame["scores"][0], k) == pytest.approx(
            expected[0])


@PROPERTY
@given(raw=scores(12))
def test_ppe_preference_accuracy_and_brier(raw: np.ndarray) -> None:
    """NaN never wins in the accuracy nor in the Brier score's probability, so the Brier score stays a number."""
    winners = ["model_a", "model_b", "tie"] * 2
    frame = pd.DataFrame({"question_id": range(6), "winner": winners, "language": ["en"] * 6})
    result = ppe_preference.evaluate(frame, neutralise(raw))
    first, second = raw[:6], raw[6:]
    decided = [i for i, w in enumerate(winners) if w != "tie"]
    correct = [wins(first[i:i + 1], second[i:i + 1])[0] if winners[i] == "model_a"
               else wins(second[i:i + 1], first[i:i + 1])[0] for i in decided]
    assert result.score == pytest.approx(np.mean(correct))

    def probability(a: float, b: float) -> float:
        a, b = (x if math.isfinite(x) else math.nan for x in (a, b))
        if math.isnan(a) or math.isnan(b):
            return 0.5 if math.isnan(a) and math.isnan(b) else 0.0 if math.isnan(a) else 1.0
        return 1 / (1 + math.exp(-(a - b)))

    expected = np.mean([(probability(first[i], second[i]) - (winners[i] == "model_a")) ** 2 for i in decided])
    assert math.isfinite(result.extra["brier"]) and result.extra["brier"] == pytest.approx(expected)
