"""lambda search vs the 11-point grid on the miniature world, per seed, from one run.

For each seed: the demo world (built or reused from the cache), its ``pairwise`` data split into dev and test
(``--dev-fraction``, seed 0), then
- the search: ``dogerm-eval search``'s procedure with ``--max-evals`` (objective ``pairwise/arithmetic``,
  constraint ``pairwise/general >= value_at_lambda0 - 0.02``), wall time measured;
- the grid, as the paper's protocol: lambda = 0, 0.1, ..., 1 scored on every row (dev and test), and the best
  lambda on test that meets the same constraint there;
and the search's lambda evaluated once on test. Prints, per seed, both lambdas, their test arithmetic accuracy,
the difference (goal: within 1 point) and the wall-time ratio, search (5 dev + 1 test evaluations) over grid
(11 evaluations of all rows, no intervals) (goal: at most 40%), without and with the 200-resample bootstrap
intervals that `dogerm-eval search` computes by default.

    python benchmarks/lambda_search.py [--seeds 0,1,2] [--max-evals 5] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dogerm_eval.demo.world import build_world
from dogerm_eval.options import default_options
from dogerm_eval.criteria import Constraint, Objective, choose
from dogerm_eval.line_search import line_search
from dogerm_eval.space import dogerm_source, parse_space
from dogerm_eval.split_eval import SplitEvaluator

OBJECTIVE, CONSTRAINT = "pairwise/arithmetic", "pairwise/general >= value_at_lambda0 - 0.02"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-evals", type=int, default=5)
    parser.add_argument("--dev-fraction", type=float, default=0.5)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    rule, goal = Constraint.parse(CONSTRAINT), Objective.parse(OBJECTIVE)
    scoring = default_options(dtype="float32", device="cpu")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        world = build_world(args.cache_dir, seed=seed)
        space = parse_space(dogerm_source(str(world.rm), [str(world.domain)]), "demo", ())
        evaluator = SplitEvaluator(space, "pairwise", str(world.rewardbench_data), None, args.dev_fraction, 0, scoring)
        evaluator.load()
        times = {}
        for bootstrap in (0, 200):  # the search alone, then with dogerm-eval search's default intervals
            start = time.perf_counter()
            points, reference = line_search(lambda point: evaluator.evaluate(point, "dev", bootstrap), goal, rule,
                                            args.max_evals)
            chosen, _ = choose(points, reference, goal, rule, lambda params: params["lambda"])
            found = evaluator.evaluate(chosen.params, "test", 0)[0][OBJECTIVE]
            times[bootstrap] = time.perf_counter() - start
        start = time.perf_counter()
        grid = {}
        for step in range(11):
            evaluator.evaluate({"lambda": step / 10}, "dev", bootstrap=0)  # the grid scores every row, no bootstrap
            grid[step / 10] = evaluator.evaluate({"lambda": step / 10}, "test", bootstrap=0)[0]
        grid_time = time.perf_counter() - start
        feasible = [lam for lam, m in grid.items() if rule.violation(m, grid[0.0]) == 0.0]
        best = max(feasible, key=lambda lam: (grid[lam][OBJECTIVE], -lam))
        reference = grid[best][OBJECTIVE]
        rows.append((seed, chosen.params["lambda"], found, best, reference, times[0] / grid_time, times[200] / grid_time))
    print("| seed | search lambda | test arithmetic | grid lambda | test arithmetic | difference | time ratio | "
          "with 200-resample intervals |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, lam, found, best, reference, ratio, with_intervals in rows:
        print(f"| {seed} | {lam:g} | {found * 100:.1f} | {best:g} | {reference * 100:.1f} | "
              f"{(found - reference) * 100:+.1f} | {ratio * 100:.0f}% | {with_intervals * 100:.0f}% |")


if __name__ == "__main__":
    main()
