"""What a search maximises, under which constraint, and which evaluated point it chooses.

``--objective`` is one metric (``pairwise/arithmetic``) or the mean or minimum of several
(``mean(pairwise/arithmetic, pairwise/strings)``); ``--constraint`` bounds one metric, absolutely (``X >= 0.9``) or
relative to the reward model alone (``pairwise/general >= value_at_lambda0 - 0.02``).
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dogerm_eval.errors import BenchmarkError

_CONSTRAINT = re.compile(
    r"^\s*(?P<metric>[\w./@-]+)\s*(?P<op>>=|<=)\s*(?:(?P<ref>value_at_lambda0)\s*(?:(?P<sign>[+-])\s*"
    r"(?P<offset>[\d.eE+-]+))?|(?P<value>[-+]?[\d.eE+-]+))\s*$"
)
_COMBINED = re.compile(r"^\s*(?P<how>mean|min)\s*\((?P<names>[^()]+)\)\s*$")
_METRIC = re.compile(r"^[\w./@-]+$")


def check_reported(option: str, metric: str, reported: Mapping[str, float] | set[str]) -> None:
    """Refuse ``metric`` (named by ``option``) if the benchmark does not report it, naming the closest one."""
    if metric in reported:
        return
    names = sorted(k for k in reported if "(" not in k)  # not a combined objective's own value
    close = difflib.get_close_matches(metric, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise BenchmarkError(f"{option} names {metric!r}, which the benchmark does not report; {hint}choose from {names}")


def check_metrics(objective: Objective, constraint: Constraint | None, reported: set[str]) -> None:
    """Refuse an objective or constraint naming a metric the benchmark does not report (run before a model loads)."""
    for metric in objective.metrics:
        check_reported("--objective", metric, reported)
    if constraint:
        check_reported("--constraint", constraint.metric, reported)


@dataclass
class Evaluated:
    """One evaluated point: its parameters, dev metrics and their bootstrap 95% intervals."""

    params: dict[str, float]
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    meets_constraint: bool = True


@dataclass(frozen=True)
class Objective:
    """A metric, or ``mean(...)`` / ``min(...)`` of metrics; ``name`` is the text the user wrote, normalised."""

    how: str | None
    metrics: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Objective:
        combined = _COMBINED.match(text)
        names = tuple(n.strip() for n in combined["names"].split(",")) if combined else (text.strip(),)
        if not all(_METRIC.match(n) for n in names) or (combined and len(names) < 2):
            raise BenchmarkError(f"--objective {text!r}: give a metric (pairwise/arithmetic) or mean(A, B) / min(A, B)")
        return cls(combined["how"] if combined else None, names)

    @property
    def name(self) -> str:
        return f"{self.how}({', '.join(self.metrics)})" if self.how else self.metrics[0]

    def value(self, metrics: Mapping[str, float]) -> float:
        for metric in self.metrics:
            check_reported("--objective", metric, metrics)
        values = [metrics[m] for m in self.metrics]
        return float(min(values)) if self.how == "min" else float(sum(values) / len(values))

    def with_value(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """``metrics`` with the objective added under its name (a combined one; a plain metric is there already)."""
        return {**metrics, self.name: self.value(metrics)}


@dataclass(frozen=True)
class Constraint:
    """``METRIC >= value_at_lambda0 - 0.02`` (relative to the reward model alone) or ``METRIC >= 0.9``."""

    metric: str
    op: str
    offset: float | None = None
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        if not match:
            raise BenchmarkError(
                f"--constraint {text!r}: write METRIC >= value_at_lambda0 - 0.02, or METRIC >= 0.9 (>= or <=)"
            )
        if match["ref"]:
            offset = float(match["offset"] or 0) * (-1 if match["sign"] == "-" else 1)
            return cls(match["metric"], match["op"], offset=offset)
        return cls(match["metric"], match["op"], value=float(match["value"]))

    def bound(self, reference: Mapping[str, float]) -> float:
        if self.value is not None:
            return self.value
        return reference[self.metric] + (self.offset or 0.0)

    def excess(self, metrics: Mapping[str, float], reference: Mapping[str, float]) -> float:
        """How far ``metrics`` are on the wrong side of the bound (<= 0 when met), as optuna's constrained
        samplers read a constraint."""
        self.violation(metrics, reference)  # a metric the benchmark lacks is refused by name
        bound, value = self.bound(reference), metrics[self.metric]
        return bound - value if self.op == ">=" else value - bound

    def violation(self, metrics: Mapping[str, float], reference: Mapping[str, float]) -> float:
        """How far ``metrics`` miss the constraint (0 when met)."""
        check_reported("--constraint", self.metric, metrics)
        bound, value = self.bound(reference), metrics[self.metric]
        compare = operator.ge if self.op == ">=" else operator.le
        return 0.0 if compare(value, bound) or math.isclose(value, bound, abs_tol=1e-12) else abs(value - bound)


def penalised(objective: Objective, constraint: Constraint | None, metrics: Mapping[str, float],
              reference: Mapping[str, float]) -> float:
    """The value a minimiser sees: the objective negated, plus 1 and the miss where the constraint fails (any
    feasible point beats every infeasible one, since metrics lie in [0, 1])."""
    missed = constraint.violation(metrics, reference) if constraint else 0.0
    return -objective.value(metrics) + (1.0 + missed if missed else 0.0)


def choose(points: Sequence[Evaluated], reference: Evaluated, objective: Objective, constraint: Constraint | None,
           magnitude=lambda params: 0.0, tie: float = 1e-9) -> tuple[Evaluated, str | None]:
    """The best dev objective among points meeting the constraint (the reward model alone, ``reference``, among
    them); among ties the one nearest the reward model (smallest ``magnitude``), then the earliest. With no point
    feasible: the reference, with a note saying so."""
    candidates = [reference, *(p for p in points if p is not reference)]
    for found in candidates:
        found.meets_constraint = not constraint or constraint.violation(found.metrics, reference.metrics) == 0.0
    feasible = [p for p in candidates if p.meets_constraint]
    if not feasible:
        return reference, (f"no evaluated point meets {constraint.metric} {constraint.op} "
                           f"{constraint.bound(reference.metrics):.4f}; the reward model alone is returned")
    best = max(objective.value(p.metrics) for p in feasible)
    tied = [p for p in feasible if objective.value(p.metrics) >= best - tie]
    return min(tied, key=lambda p: magnitude(p.params)), None
