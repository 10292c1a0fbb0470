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

The second half holds what the GSM8K and MBPP Best-of-N benchmarks share: matching a candidate file to the
dataset and wrapping it as a `dogerm_eval.benchmarks.Task` (so scoring, caching, resumable checkpoints and the
result files are the same as for every other benchmark), the Best-of-N evaluation, and the sweep metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable
from dogerm_eval.errors import BenchmarkError, DataError
from dogerm_eval.generate import CandidateRecord, read_candidates, record_fingerprint
from dogerm_eval.results import Evaluation
from dogerm_eval.sandbox import SandboxLimits, execute_many
from dogerm_eval.task import Task

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


def prepare(
    name: str,
    table: LoadedTable,
    problem_ids: Sequence[int | str],
    candidates_path: str | Path,
    build: Callable[[list[int], list[CandidateRecord]], pd.DataFrame],
    extra: Mapping[str, Any],
) -> Task:
    """Read the candidate file, match each record to its dataset row, build the per-problem frame, wrap as a Task.

    ``build(rows, records)`` returns one row per problem with ``problem_id``, ``prompt`` and ``responses`` (the
    reward model's user and assistant texts), ``correct`` (list of bools), optionally ``answers`` (for majority
    voting) and any other per-example columns. The task's revision combines the dataset revision with the candidate
    file's sha256 and ``extra`` (e.g. sandbox limits), so cached results are reused only for identical inputs.
    Raises DataError for unknown problem ids or invalid candidate files, before any scoring.
    """
    if not problem_ids:
        raise DataError(f"{table.dataset} has no rows")
    records = read_candidates(candidates_path)
    position = {pid: row for row, pid in enumerate(problem_ids)}
    unknown = [r.problem_id for r in records if r.problem_id not in position]
    if unknown:
        raise DataError(
            f"{candidates_path}: {len(unknown)} problem id(s) not in {table.dataset}, e.g. {unknown[:5]!r} "
            f"(ids there are {type(problem_ids[0]).__name__}s such as {problem_ids[0]!r})"
        )
    records.sort(key=lambda r: position[r.problem_id])
    ns = usable_ns([len(r.candidates) for r in records])  # never empty: every record has >= 1 candidate
    candidates = record_fingerprint(Path(candidates_path))
    frame = build([position[r.problem_id] for r in records], records)
    fingerprint = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:16]
    revision = f"{table.revision}+candidates:{candidates['sha256'][:16]}+settings:{fingerprint}"
    benchmark = BestOfN(NAME=name, ns=tuple(ns), extra={
        **extra, "candidates": candidates, "dataset_problems": len(table.frame),
        "candidates_per_problem": sorted({len(r.candidates) for r in records}),
        "source_dataset_revision": table.revision,
    })
    return Task(benchmark, LoadedTable(frame=frame, dataset=table.dataset, revision=revision))


@dataclass(frozen=True)
class BestOfN:
    """A Best-of-N benchmark in the shape `dogerm_eval.benchmarks.run_task` expects (one pass of all candidates)."""

    NAME: str
    ns: tuple[int, ...]
    extra: Mapping[str, Any]

    def passes(self, frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
        """All (prompt, candidate) pairs, problem by problem, in candidate order."""
        return [[(prompt, text) for prompt, texts in zip(frame["prompt"], frame["responses"]) for text in texts]]

    def evaluate(self, frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
        """The Best-of-N table from the scores; per-example rows hold each candidate's score and correctness."""
        bounds = np.cumsum([0] + [len(texts) for texts in frame["responses"]])
        per_problem = [scores[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]
        correct = [list(map(bool, c)) for c in frame["correct"]]
        answers = [list(a) for a in frame["answers"]] if "answers" in frame.columns else None
        table = bon_table(per_problem, correct, answers, self.ns)
        per_example = frame.drop(columns=["prompt", "responses"]).assign(scores=per_problem)
        top = max(self.ns)
        extra = {**self.extra, "bon": {str(n): row for n, row in table.items()}, "num_problems": len(frame)}
        return Evaluation(subsets={}, sections={}, score=float(table[top]["expected"]), per_example=per_example,
                          extra=extra)

    def metrics(self, result: Mapping[str, Any]) -> dict[str, float]:
        """Sweep columns, see :func:`metrics`."""
        return metrics(result)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns ``<benchmark>/<curve>@<N>`` (e.g. ``bon-gsm8k/expected@16``); null curves are left out."""
    name = result["benchmark"]
    return {
        f"{name}/{curve}@{n}": float(value)
        for n, row in result["bon"].items()
        for curve, value in row.items()
        if value is not None
    }


def run_programs(programs: Sequence[Sequence[str]], limits: SandboxLimits, workers: int = 1) -> list[list[str]]:
    """Each problem's candidate programs run in the sandbox (MBPP, HumanEval): their statuses, per problem; a failure
    of the sandbox itself stops here, before any scoring, as accuracies would be wrong."""
    from tqdm import tqdm

    flat = [text for group in programs for text in group]
    with tqdm(total=len(flat), desc="running candidates", unit="program") as bar:
        executed = execute_many(flat, limits, workers=workers, progress=bar.update)
    broken = [r for r in executed if r.status == "error"]
    if broken:
        raise BenchmarkError(f"the sandbox failed on {len(broken)} of {len(executed)} programs: {broken[0].output}")
    results = iter(executed)
    return [[next(results).status for _ in group] for group in programs]
