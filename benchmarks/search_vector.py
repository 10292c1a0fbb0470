"""Searching two domain models' lambdas (and depth schedules) vs the full grid, on the two-domain demo world, per
seed, from one run.

For each seed: the demo world (built or reused from the cache), its pairs split into dev and test (50/50 by row
id, split seed 0), objective ``mean(pairwise/arithmetic, pairwise/strings)``, constraint ``pairwise/general >=
value_at_lambda0 - 0.02``, each point scored without bootstrap intervals (both sides alike), then
- the grid: lambda[arithmetic] x lambda[strings] over 0, 0.1, ..., 1 with sums <= 1 (66 merges) scored on dev and
  on test; its best point chosen on dev as ``search`` chooses (the constraint on dev), reported on test;
- the joint search: ``dogerm-eval search``'s study (its default for one worker: the constrained Gaussian process,
  seed S, starting from each domain model alone at 0.5) with at most ``--max-evals`` dev evaluations, the chosen
  point evaluated once on test;
- depth schedules: each domain's lambda as ``--knots`` knots across the layers (mergekit's gradient syntax), the
  same study with at most ``--depth-evals`` evaluations, against the grid's best plain point (both on test).
Prints one row per seed: test objective of each, differences in points, wall times (evaluations only: models are
read once before the clocks start).

    python benchmarks/search_vector.py [--seeds 0,1,2] [--max-evals 12] [--depth-evals 30] [--knots 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar per scored point

from dogerm_eval.criteria import Constraint, Evaluated, Objective, choose
from dogerm_eval.demo.world import build_world
from dogerm_eval.options import default_options
from dogerm_eval.space import dogerm_source, parse_space
from dogerm_eval.split_eval import SplitEvaluator
from dogerm_eval.study import StudySpec, run_study

OBJECTIVE = "mean(pairwise/arithmetic, pairwise/strings)"
CONSTRAINT = "pairwise/general >= value_at_lambda0 - 0.02"


def _study(evaluator: SplitEvaluator, goal: Objective, rule: Constraint, max_evals: int, seed: int, folder: Path,
           name: str) -> tuple[Evaluated, float, float]:
    """(chosen point, its test objective, seconds) of a study over ``evaluator``'s space."""
    start = time.perf_counter()
    spec = StudySpec(str(folder / f"{name}.journal"), name, "gp", seed, max_evals, goal, rule, evaluator.space)
    evaluate = lambda point: evaluator.evaluate(point, "dev", 0, goal.with_value)  # noqa: E731
    points, reference, _ = run_study(spec, evaluate, lambda: evaluate, 1)
    chosen, _ = choose([reference, *points], reference, goal, rule, evaluator.space.magnitude)
    test = goal.value(evaluator.evaluate(chosen.params, "test", 0)[0])
    return chosen, test, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-evals", type=int, default=12)
    parser.add_argument("--depth-evals", type=int, default=30)
    parser.add_argument("--knots", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--size", default=None, help="world size (default: the demo's)")
    args = parser.parse_args()
    goal, rule = Objective.parse(OBJECTIVE), Constraint.parse(CONSTRAINT)
    scoring = default_options(dtype="float32", device="cpu")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        world = build_world(args.cache_dir, seed=seed, **({"size": args.size} if args.size else {}))
        domains = [str(world.domains[name]) for name in ("arithmetic", "strings")]
        source = dogerm_source(str(world.rm), domains)
        evaluator = SplitEvaluator(parse_space(source, "demo", ()), "pairwise", str(world.rewardbench_data), None,
                                   0.5, 0, scoring)
        evaluator.load()
        keys = [p.key for p in evaluator.space.parameters]
        start = time.perf_counter()
        grid = []
        for i in range(11):
            for j in range(11 - i):
                point = dict(zip(keys, (i / 10, j / 10)))
                dev = goal.with_value(evaluator.evaluate(point, "dev", 0)[0])
                grid.append((Evaluated(point, dev), goal.value(evaluator.evaluate(point, "test", 0)[0])))
        grid_time = time.perf_counter() - start
        reference = grid[0][0]
        best, _ = choose([g for g, _ in grid], reference, goal, rule, evaluator.space.magnitude)
        grid_test = dict((id(g), t) for g, t in grid)[id(best)]
        with tempfile.TemporaryDirectory() as folder:
            chosen, search_test, search_time = _study(evaluator, goal, rule, args.max_evals, seed, Path(folder),
                                                      "joint")
            knots = [f"lambda[{d}]@{args.knots}=0:1" for d in domains]
            depth = SplitEvaluator(parse_space(source, "demo", knots), "pairwise", str(world.rewardbench_data),
                                   None, 0.5, 0, scoring)
            depth.load()
            schedule, depth_test, depth_time = _study(depth, goal, rule, args.depth_evals, seed, Path(folder),
                                                      "depth")
        rows.append((seed, best.params, grid_test, grid_time, chosen.params, search_test, search_time,
                     schedule.params, depth_test, depth_time))

    def short(params: dict[str, float]) -> str:
        return ", ".join(f"{v:g}" for v in params.values())

    print("| seed | grid best (dev) | test | grid time | search point | test | diff | search time | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, gp, gt, gtime, sp, st, stime, *_ in rows:
        print(f"| {seed} | {short(gp)} | {gt * 100:.1f} | {gtime:.0f} s | {short(sp)} | {st * 100:.1f} | "
              f"{(st - gt) * 100:+.1f} | {stime:.0f} s | {stime / gtime * 100:.0f}% |")
    print(f"\n| seed | depth schedule ({args.knots} knots per domain, <= {args.depth_evals} evaluations) | test | "
          "grid best plain point's test | diff | time |")
    print("|---|---|---|---|---|---|")
    for seed, _, gt, _, _, _, _, dp, dt, dtime in rows:
        print(f"| {seed} | {short(dp)} | {dt * 100:.1f} | {gt * 100:.1f} | {(dt - gt) * 100:+.1f} | {dtime:.0f} s |")


if __name__ == "__main__":
    main()
