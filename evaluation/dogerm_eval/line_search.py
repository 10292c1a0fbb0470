"""One lambda, found by Brent's method: the search of one domain model's lambda when nothing asks for a study.

lambda = 0 (the reward model alone) is evaluated first: the constraint's reference and the answer when nothing
beats it; lambda = 1 next, since the bounded method never evaluates a bound and curves that rise to the end of
[0, 1] are common. scipy's bounded scalar minimisation (golden-section steps, parabolic ones where the curve allows)
then proposes lambdas in [0, 1] on the penalised objective until ``max_evals`` evaluations are spent. A DogeRM
curve is one bump or flat in practice; Brent needs no gradient, spends few evaluations on a bump and, with ``xatol``
0.05, does not chase differences finer than a 21-point grid resolves. A second peak it does not bracket can be
missed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dogerm_eval.criteria import Constraint, Evaluated, Objective, penalised
from dogerm_eval.errors import BenchmarkError

Evaluate = Callable[[dict[str, float]], tuple[dict[str, float], dict[str, tuple[float, float]]]]


class _BudgetSpent(Exception):
    pass


def line_search(evaluate: Evaluate, objective: Objective, constraint: Constraint | None, max_evals: int,
                known: Mapping[float, Evaluated] | None = None, xatol: float = 0.05
                ) -> tuple[list[Evaluated], Evaluated]:
    """(the evaluated points in lambda order, the reference lambda = 0) within ``max_evals`` evaluations.

    ``evaluate({"lambda": x})`` returns (metrics, intervals); ``known`` points (an earlier run's) are reused instead
    of evaluated (they still count as steps of the budget, so a rerun retraces the same search).
    """
    from scipy.optimize import minimize_scalar

    if max_evals < 1:
        raise BenchmarkError("--max-evals must be at least 1 (lambda = 0 is always evaluated)")
    points: dict[float, Evaluated] = {}
    cache = dict(known or {})

    def point(lam: float) -> Evaluated:
        lam = round(float(lam), 4)
        if lam in points:
            return points[lam]
        if len(points) >= max_evals:
            raise _BudgetSpent
        if lam not in cache:
            metrics, intervals = evaluate({"lambda": lam})
            cache[lam] = Evaluated({"lambda": lam}, objective.with_value(metrics), intervals)
        points[lam] = cache[lam]
        objective.value(points[lam].metrics)  # a metric the benchmark lacks is refused at the first point
        return points[lam]

    reference = point(0.0)
    try:
        point(1.0)
        minimize_scalar(lambda lam: penalised(objective, constraint, point(lam).metrics, reference.metrics),
                        bounds=(0.0, 1.0), method="bounded", options={"xatol": xatol, "maxiter": 100})
    except _BudgetSpent:
        pass
    return sorted(points.values(), key=lambda p: p.params["lambda"]), reference
