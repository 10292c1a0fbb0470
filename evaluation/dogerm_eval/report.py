"""Sweep report: `OUT/sweep.csv` (lambda + one column per metric), one PNG per benchmark, and a printed table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

from dogerm_eval.errors import BenchmarkError  # noqa: E402
from dogerm_mergekit.files import atomic_file  # noqa: E402

SWEEP_CSV = "sweep.csv"


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def sweep_frame(rows: Sequence[tuple[float, Mapping[str, Mapping[str, Any]]]]) -> pd.DataFrame:
    """One row per lambda: `lambda`, then the `<benchmark>/<metric>` numbers stored in each result's `metrics`."""
    records = []
    for lam, results in rows:
        record: dict[str, float] = {"lambda": float(lam)}
        for benchmark, result in results.items():
            if "metrics" not in result:
                raise BenchmarkError(f"the {benchmark} result has no `metrics` (written by an older dogerm-eval?)")
            record.update({key: _number(value) for key, value in result["metrics"].items()})
        records.append(record)
    return pd.DataFrame.from_records(records).sort_values("lambda", kind="stable").reset_index(drop=True)


def plot_benchmark(frame: pd.DataFrame, benchmark: str, path: Path) -> Path:
    """Plot `benchmark`'s metrics against lambda; the lambda = 0 value (the unmerged RM) is a dashed line."""
    columns = [c for c in frame.columns if c.startswith(f"{benchmark}/")]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    try:
        for index, column in enumerate(columns):
            color = f"C{index % 10}"
            axes.plot(frame["lambda"], frame[column], marker="o", color=color, label=column.split("/", 1)[1])
            reference = frame.loc[frame["lambda"] == 0.0, column]
            if not reference.empty:
                axes.axhline(float(reference.iloc[0]), color=color, linestyle="--", linewidth=1, alpha=0.7)
        axes.set_xlabel("lambda (weight of the domain model)")
        axes.set_ylabel("accuracy")
        axes.set_title(f"{benchmark} vs lambda (dashed: lambda = 0, the reward model)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small", ncols=2)
        figure.tight_layout()
        with atomic_file(path) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(figure)
    return path


def write_report(frame: pd.DataFrame, output_dir: Path) -> list[Path]:
    """Write `OUT/sweep.csv` and `OUT/sweep-<benchmark>.png` per benchmark; return the paths written."""
    output_dir = Path(output_dir)
    csv = output_dir / SWEEP_CSV
    with atomic_file(csv) as tmp:
        frame.to_csv(tmp, index=False)
    benchmarks = dict.fromkeys(c.split("/", 1)[0] for c in frame.columns if "/" in c)
    return [csv, *(plot_benchmark(frame, b, output_dir / f"sweep-{b}.png") for b in benchmarks)]


def format_table(frame: pd.DataFrame) -> str:
    """The sweep as a text table (lambda down, metrics across, 4 decimals)."""
    return frame.to_string(index=False, float_format=lambda value: f"{value:.4f}")
