"""Best-of-N formulas against brute force over every subset."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from dogerm_eval.bestofn import (
    bon_table,
    expected_best_of_n,
    first_n_best_of_n,
    majority_vote,
    oracle_pass_at_n,
    usable_ns,
)


def _brute_expected(scores: list[float], correct: list[bool], n: int) -> float:
    hits = []
    for subset in itertools.combinations(range(len(scores)), n):
        best = subset[0]
        for i in subset[1:]:  # strictly greater: the lowest index wins ties
            if scores[i] > scores[best]:
                best = i
        hits.append(correct[best])
    return sum(hits) / len(hits)


def _brute_oracle(correct: list[bool], n: int) -> float:
    subsets = list(itertools.combinations(range(len(correct)), n))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


def _random_case(rng: random.Random, m: int) -> tuple[list[float], list[bool]]:
    scores = [float(rng.choice([-1.0, 0.0, 0.5, 2.0])) for _ in range(m)]  # few values: many ties
    correct = [rng.random() < 0.4 for _ in range(m)]
    return scores, correct


@pytest.mark.parametrize("seed", range(40))
def test_expected_and_oracle_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    m = rng.randint(1, 10)
    scores, correct = _random_case(rng, m)
    for n in range(1, m + 1):
        assert expected_best_of_n(scores, correct, n) == pytest.approx(_brute_expected(scores, correct, n), abs=1e-12)
        assert oracle_pass_at_n(correct, n) == pytest.approx(_brute_oracle(correct, n), abs=1e-12)


def test_expected_with_sixteen_candidates_and_ties() -> None:
    rng = random.Random(7)
    scores, correct = _random_case(rng, 16)
    for n in (1, 2, 4, 8, 16):
        assert expected_best_of_n(scores, correct, n) == pytest.approx(_brute_expected(scores, correct, n), abs=1e-12)
    assert expected_best_of_n(scores, correct, 1) == pytest.approx(sum(correct) / 16)


def test_first_n_takes_first_index_on_ties() -> None:
    scores = [1.0, 3.0, 3.0, 5.0]
    correct = [False, True, False, False]
    assert first_n_best_of_n(scores, correct, 1) == 0.0
    assert first_n_best_of_n(scores, correct, 2) == 1.0
    assert first_n_best_of_n(scores, correct, 3) == 1.0  # index 1 and 2 tie: index 1 wins
    assert first_n_best_of_n(scores, correct, 4) == 0.0


def test_first_n_matches_authors_loop() -> None:
    rng = random.Random(3)
    for _ in range(50):
        scores, correct = _random_case(rng, 16)
        for n in (1, 2, 4, 8, 16):
            select = 0  # the authors' selection loop (calculate_acc in run_gsm8k.py)
            for idx in range(1, n):
                if scores[idx] > scores[select]:
                    select = idx
            assert first_n_best_of_n(scores, correct, n) == float(correct[select])


def test_nan_scores_are_never_preferred() -> None:
    scores = [float("nan"), 0.0]
    assert first_n_best_of_n(scores, [True, False], 2) == 0.0
    assert expected_best_of_n(scores, [True, False], 2) == 0.0


def test_majority_vote_counts_first_n_and_breaks_ties_by_first_seen() -> None:
    answers = [3.0, 4.0, 4.0, None, 3.0, 3.0]
    correct = [True, False, False, False, True, True]
    assert majority_vote(answers, correct, 1) == 1.0
    assert majority_vote(answers, correct, 3) == 0.0
    assert majority_vote(answers, correct, 5) == 1.0  # 3.0 and 4.0 tie at 2 votes: 3.0 seen first
    assert majority_vote([None, None], [False, False], 2) == 0.0


def test_oracle_closed_form() -> None:
    correct = [True] * 3 + [False] * 13
    assert oracle_pass_at_n(correct, 4) == pytest.approx(1 - math.comb(13, 4) / math.comb(16, 4))


def test_bon_table_averages_over_problems() -> None:
    scores = [[0.1, 0.9], [0.5, 0.2]]
    correct = [[False, True], [False, True]]
    table = bon_table(scores, correct, answers=[[1, 2], [1, 2]], ns=usable_ns([2, 2]))
    assert set(table) == {1, 2}
    # answer 1 (wrong) is seen first in both problems and ties with answer 2 at N=2
    assert table[1] == {"expected": 0.5, "first_n": 0.0, "oracle": 0.5, "majority": 0.0}
    assert table[2] == {"expected": 0.5, "first_n": 0.5, "oracle": 1.0, "majority": 0.0}
    assert bon_table(scores, correct, ns=[1])[1]["majority"] is None


def test_invalid_n_is_rejected() -> None:
    with pytest.raises(ValueError):
        expected_best_of_n([0.0], [True], 2)
