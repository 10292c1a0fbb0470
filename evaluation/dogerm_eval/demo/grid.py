"""The demo's grid of per-domain lambdas: every domain LM of the world merged into the RM at once, in memory
(``dogerm-eval sweep --in-memory --domain A --domain B --grid 'lambda[A]=...' --grid 'lambda[B]=...'``), scored on
the world's pairs; ``grid.csv``, one heatmap per metric, and the best pair.

Best pair rule (stated before looking at any grid): among the points whose ``pairwise/general`` is at most
``GENERAL_LOSS`` below the all-zero point (the RM alone), the one whose *smallest* gain over the domains (pair
accuracy minus the all-zero point's, per domain subset) is largest; ties go to the larger summed gain, then to the
smaller summed lambda (the less merged model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from dogerm_eval.demo.world import World

GRID_CSV = "grid.csv"
GENERAL_LOSS = 0.02
"""The largest drop of general accuracy (from the RM alone) a merge may cost to count as the demo's best."""


def evaluate_grid(world: World, step: float, output_dir: Path, settings: dict[str, Any], make_scorer: Any,
                  tasks: list[Any]) -> pd.DataFrame:
    """Score every lambda vector of the 0:1:``step`` grid per domain (sums <= 1) on ``tasks``; one
    ``lambda[<subset>]`` column per domain LM of ``world.domains``, then the metrics (results cached under
    ``output_dir / "eval"``)."""
    from tqdm.auto import tqdm

    from dogerm_eval.inmemory import InMemorySweep
    from dogerm_eval.report import sweep_frame
    from dogerm_eval.sweep import evaluate_sweep

    folders = {str(path): subset for subset, path in world.domains.items()}
    grids = [f"lambda[{path.name}]=0:1:{step:g}" for path in world.domains.values()]
    merged = InMemorySweep(str(world.rm), list(folders), grids=grids)
    members = tqdm(merged.members, desc=f"grid of {len(merged.members)} merges", leave=False)
    evaluated = evaluate_sweep(members, tasks, settings, merged.scorer_factory(make_scorer), output_dir / "eval",
                               overwrite=True)
    frame = sweep_frame([(point, results) for point, _, results in evaluated])
    names = {f"lambda[{path}]": f"lambda[{subset}]" for path, subset in folders.items()}
    metrics = [f"pairwise/{subset}" for subset in ("general", *world.domains)]
    return frame.rename(columns=names)[[*names.values(), *metrics]]


@dataclass(frozen=True)
class BestPair:
    """The grid point the rule picks, with the all-zero point's and its own accuracies."""

    lambdas: dict[str, float]  # domain subset -> lambda
    start: dict[str, float]  # metric subset (general and each domain) -> accuracy at the all-zero point
    best: dict[str, float]

    def gain(self, subset: str) -> float:
        return self.best[subset] - self.start[subset]

    def line(self) -> str:
        at = ", ".join(f"lambda[{d}] = {lam:g}" for d, lam in self.lambdas.items())
        gains = ", ".join(f"{d} {self.start[d] * 100:.1f} -> {self.best[d] * 100:.1f} ({self.gain(d) * 100:+.1f})"
                          for d in self.lambdas)
        return (f"grid best pair {at} (general within {GENERAL_LOSS * 100:g} points, largest smallest gain): "
                f"{gains}, general {self.start['general'] * 100:.1f} -> {self.best['general'] * 100:.1f}")


def best_pair(frame: pd.DataFrame) -> BestPair:
    """The module's rule applied to a grid table (``lambda[<subset>]`` columns, ``pairwise/<subset>`` metrics)."""
    domains = [c[len("lambda["):-1] for c in frame.columns if c.startswith("lambda[")]
    zero = frame[(frame[[f"lambda[{d}]" for d in domains]] == 0).all(axis=1)].iloc[0]
    allowed = frame[frame["pairwise/general"] >= zero["pairwise/general"] - GENERAL_LOSS - 1e-9]
    gains = allowed[[f"pairwise/{d}" for d in domains]] - zero[[f"pairwise/{d}" for d in domains]]
    key = [(round(min(g), 9), round(sum(g), 9), -round(sum(row[f"lambda[{d}]"] for d in domains), 9))
           for (_, g), (_, row) in zip(gains.iterrows(), allowed.iterrows())]
    best = allowed.iloc[max(range(len(key)), key=key.__getitem__)]
    metrics = ["general", *domains]
    return BestPair({d: float(best[f"lambda[{d}]"]) for d in domains},
                    {m: float(zero[f"pairwise/{m}"]) for m in metrics},
                    {m: float(best[f"pairwise/{m}"]) for m in metrics})


def write_heatmaps(frame: pd.DataFrame, output_dir: Path) -> list[Path]:
    """``grid-<metric>.png`` per ``pairwise/<subset>`` metric of a two-domain grid: the accuracy (in %) at each
    lambda pair, grid points the sum rule leaves out blank."""
    from matplotlib.figure import Figure

    x, y = [c for c in frame.columns if c.startswith("lambda[")][:2]
    xs, ys = sorted(frame[x].unique()), sorted(frame[y].unique())
    paths = []
    for metric in [c for c in frame.columns if c.startswith("pairwise/") and c != "pairwise/score"]:
        table = frame.pivot_table(index=y, columns=x, values=metric).reindex(index=ys, columns=xs) * 100
        fig = Figure(figsize=(5, 4.2))
        ax = fig.subplots()
        image = ax.imshow(table.to_numpy(), origin="lower", cmap="viridis", aspect="auto")
        for i, row in enumerate(table.to_numpy()):
            for j, value in enumerate(row):
                if value == value:  # not NaN
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8, color="white")
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
        ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{metric} (%)")
        fig.colorbar(image, ax=ax)
        path = output_dir / f"grid-{metric.replace('/', '-')}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)
    return paths
