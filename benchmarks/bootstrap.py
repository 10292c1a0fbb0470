"""What search's bootstrap intervals cost, per evaluated point: the benchmark's own formula on every resampled frame
(pandas, row by row) against the vectorised count matrix of :func:`dogerm_eval.split_eval.bootstrap_pairs` (same
resamples, same intervals), on synthetic scores in RewardBench's and the pairwise benchmark's shapes. Prints each
median time and their ratio, measured in this run.

    python benchmarks/bootstrap.py [--rows 1000] [--samples 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from dogerm_eval.benchmarks import get_benchmark
from dogerm_eval.benchmarks.rewardbench import EXAMPLE_COUNTS
from dogerm_eval.split_eval import bootstrap_intervals, bootstrap_pairs


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="dev rows (RewardBench v1 has 2985 in all)")
    parser.add_argument("--samples", type=int, default=200, help="resamples (dogerm-eval search's default)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"| benchmark | rows | resamples | row by row (s) | vectorised (s) | ratio |\n|---|---|---|---|---|---|")
    for name, subsets in (("pairwise", ["general", "arithmetic", "strings"]), ("rewardbench", sorted(EXAMPLE_COUNTS))):
        module = get_benchmark(name)
        frame = pd.DataFrame({"id": range(args.rows), "subset": rng.choice(subsets, args.rows)})
        chosen, rejected = rng.normal(size=args.rows), rng.normal(size=args.rows)

        def by_rows(index: np.ndarray) -> dict[str, float]:
            return module.metrics(module.evaluate(frame.iloc[index].reset_index(drop=True),
                                                  np.concatenate([chosen[index], rejected[index]])).summary())

        slow = _median_seconds(lambda: bootstrap_intervals(by_rows, args.rows, args.samples), args.repeats)
        fast = _median_seconds(lambda: bootstrap_pairs(chosen > rejected, frame["subset"].tolist(), lambda a, p: (
            module.metrics(module.summary_of(a, p))), args.samples), args.repeats)
        print(f"| {name} | {args.rows} | {args.samples} | {slow:.3f} | {fast:.4f} | {slow / fast:.0f}x |")


if __name__ == "__main__":
    main()
