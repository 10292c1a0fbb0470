"""Linear DogeRM against TIES (task vectors against the shared base) on the miniature world, from one run.

For each seed, the demo world's reward model and domain model are merged in memory
- linearly: ``dogerm``, lambda = 0, 0.1, ..., 1;
- with TIES against the world's pretrained base: ``dogerm_ties``, the reward model at weight 1 and the domain
  model at weight w = 0, 0.1, ..., 1, both at ``--density``;
and each merge is scored on the world's held-out pairs (``general``, ``arithmetic``). Prints both curves per seed
and writes ``OUT/merge-methods-seed<S>.png`` (accuracy against lambda or w, one line per method and subset).

    python benchmarks/merge_methods.py [--seeds 0,1,2] [--density 0.5] [--output-dir merge-methods/]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_eval.benchmarks import pairwise
from dogerm_eval.demo.world import build_world
from dogerm_eval.models import resolve_model
from dogerm_eval.options import default_options, scorer_factory, scoring_settings
from dogerm_mergekit.inmemory import InMemoryMerger, merged_state_dict

STEPS = [round(i / 10, 1) for i in range(11)]


def accuracies(scorer, frame, state) -> dict[str, float]:
    scorer.network.load_state_dict(state, strict=True)
    scores = np.concatenate([scorer.score(p) for p in pairwise.passes(frame)])
    return pairwise.evaluate(frame, scores).subsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output-dir", type=Path, default=Path("merge-methods"))
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    scoring = default_options(dtype="float32", device="cpu")
    fmt, _ = scoring_settings(scoring)
    options = MergeOptions(quiet=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        world = build_world(args.cache_dir, seed=seed)
        frame = pairwise.load(str(world.rewardbench_data), None).frame.reset_index(drop=True)
        reward = resolve_model(str(world.rm))
        scorer = scorer_factory(fmt, scoring)(reward)
        merger = InMemoryMerger(str(world.rm), str(world.domain))
        curves: dict[str, dict[float, dict[str, float]]] = {"linear": {}, "ties": {}}
        for step in STEPS:
            scorer.model = replace(reward, ref=f"linear@{step}", commit=f"linear:{step}")  # one score memory each
            curves["linear"][step] = accuracies(scorer, frame, merger.state_dict(step))
            config = MergeConfiguration.model_validate({
                "merge_method": "dogerm_ties", "base_model": str(world.base),
                "models": [{"model": str(world.rm), "parameters": {"weight": 1.0, "density": args.density}},
                           {"model": str(world.domain), "parameters": {"weight": step, "density": args.density}}],
                "parameters": {"normalize": False},
            })
            scorer.model = replace(reward, ref=f"ties@{step}", commit=f"ties:{step}")
            curves["ties"][step] = accuracies(scorer, frame, merged_state_dict(config, options))
        print(f"seed {seed} (density {args.density})")
        print("| method | " + " | ".join(f"{s:g}" for s in STEPS) + " |")
        print("|---" * (len(STEPS) + 1) + "|")
        for method, points in curves.items():
            for subset in ("general", "arithmetic"):
                values = " | ".join(f"{points[s][subset] * 100:.1f}" for s in STEPS)
                print(f"| {method} {subset} | {values} |")
        figure = Figure(figsize=(7, 4))
        axes = figure.add_subplot()
        for method, style in (("linear", "-"), ("ties", "--")):
            for subset in ("general", "arithmetic"):
                axes.plot(STEPS, [curves[method][s][subset] for s in STEPS], style, marker="o",
                          label=f"{method} {subset}")
        axes.set_xlabel("lambda (linear) / domain weight w (TIES, RM weight 1)")
        axes.set_ylabel("pair accuracy")
        axes.legend(fontsize=8)
        figure.savefig(args.output_dir / f"merge-methods-seed{seed}.png", dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()
