"""Best-of-N curves from per-candidate reward scores and correctness.

Formulas follow DogeRM (arXiv 2407.01470, SEED_FACTS.md section 3) and the unbiased pass@k
estimator of Chen et al. (2021); all are re-implemented here.

* ``expected``: exact mean accuracy of "pick the highest-scored of N candidates" over all C(M, N)
  subsets. Rank candidates by (score desc, index asc); a subset picks its best-ranked member, so
  candidate at rank r (1-based) is picked in C(M - r, N - 1) subsets:
  ``sum_r c_r * C(M - r, N - 1) / C(M, N)``.
* ``first_n``: the authors' protocol: argmax over the first N candidates, first index wins ties.
* ``oracle``: pass@N = 1 - C(M - c, N) / C(M, N) with c correct candidates.
* ``majority``: most frequent extracted answer among the first N candidates (missing answers do not
  vote; equal counts go to the answer seen first); correct if that answer's candidates are correct.

NaN scores rank below every real score (a NaN is never picked over a scored candidate).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

DEFAULT_NS: tuple[int, ...] = (1, 2, 4, 8, 16)


def _sort_key_scores(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(values), -np.inf, values)


def _check(scores: Sequence[float], correct: Sequence[bool], n: int) -> int:
    m = len(correct)
    if len(scores) != m:
        raise ValueError(f"{len(scores)} scores for {m} candidates")
    if not 1 <= n <= m:
        raise ValueError(f"N={n} needs 1 <= N <= M={m}")
    return m


def expected_best_of_n(scores: Sequence[float], correct: Sequence[bool], n: int) -> float:
    """Exact expected accuracy of reward-argmax over all C(M, N) subsets of the candidates."""
    m = _check(scores, correct, n)
    keys = _sort_key_scores(scores)
    order = sorted(range(m), key=lambda i: (-keys[i], i))
    total = sum(math.comb(m - rank, n - 1) for rank, i in enumerate(order, start=1) if correct[i])
    return total / math.comb(m, n)


def first_n_best_of_n(scores: Sequence[float], correct: Sequence[bool], n: int) -> float:
    """Authors' protocol: 1.0 if the argmax of the first N scores (first index on ties) is correct."""
    _check(scores, correct, n)
    pick = int(np.argmax(_sort_key_scores(scores)[:n]))  # argmax returns the first maximum
    return float(bool(correct[pick]))


def oracle_pass_at_n(correct: Sequence[bool], n: int) -> float:
    """Unbiased pass@N: probability that a random N-subset holds at least one correct candidate."""
    m = _check(correct, correct, n)
    wrong = m - sum(bool(c) for c in correct)
    return 1.0 - math.comb(wrong, n) / math.comb(m, n)


def majority_vote(answers: Sequence[Hashable | None], correct: Sequence[bool], n: int) -> float:
    """1.0 if the most frequent answer among the first N candidates is correct (see module doc)."""
    _check(answers, correct, n)
    votes = Counter(a for a in answers[:n] if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winner = next(a for a in answers[:n] if a is not None and votes[a] == top)
    return float(any(bool(c) for a, c in zip(answers[:n], correct[:n]) if a == winner))


def usable_ns(num_candidates: Sequence[int], ns: Sequence[int] = DEFAULT_NS) -> list[int]:
    """The N values that every problem can support (N <= its candidate count)."""
    smallest = min(num_candidates)
    return [n for n in ns if n <= smallest]


def bon_table(
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    answers: Sequence[Sequence[Hashable | None]] | None = None,
    ns: Sequence[int] = DEFAULT_NS,
) -> dict[int, dict[str, float | None]]:
    """Mean of each curve over problems, for each N in ``ns`` (``majority`` is None without answers)."""
    if len(scores) != len(correct) or not scores:
        raise ValueError("need one score list and one correctness list per problem, and >= 1 problem")
    table: dict[int, dict[str, float | None]] = {}
    for n in ns:
        row: dict[str, float | None] = {
            "expected": float(np.mean([expected_best_of_n(s, c, n) for s, c in zip(scores, correct)])),
            "first_n": float(np.mean([first_n_best_of_n(s, c, n) for s, c in zip(scores, correct)])),
            "oracle": float(np.mean([oracle_pass_at_n(c, n) for c in correct])),
            "majority": None,
        }
        if answers is not None:
            row["majority"] = float(np.mean([majority_vote(a, c, n) for a, c in zip(answers, correct)]))
        table[n] = row
    return table
