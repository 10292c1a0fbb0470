"""``dogerm-eval suite``: the seven benchmarks reward-model papers report (Skywork-Reward-V2's README: "RewardBench
v1, RewardBench v2, PPE Preference, PPE Correctness, RMB, RM-Bench, and JudgeBench") and their unweighted average.

Each benchmark contributes its registry headline (``dogerm_eval.registry``); the summary is ``suite/<benchmark>``
per benchmark and ``suite/average``, written per model to ``OUT/<model-slug>/suite.json`` and as one row per model
of ``OUT/suite.csv``; a sweep adds the same columns to its table and plots them in ``OUT/sweep-suite.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dogerm_eval.errors import BenchmarkError
from dogerm_eval.registry import REGISTRY, SUITE

NAME = "suite"
SUITE_CSV = "suite.csv"


def summary(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The suite of one model from its benchmark results: each headline and the average (NaN when one is)."""
    missing = [name for name in SUITE if name not in results]
    if missing:
        raise BenchmarkError(f"the suite needs results of {missing}")
    headlines = {}
    for name in SUITE:
        metric = REGISTRY[name].headline_metric
        value = results[name]["metrics"].get(metric)
        headlines[name] = math.nan if value is None else float(value)
    average = math.fsum(headlines.values()) / len(headlines)
    metrics = {f"{NAME}/{name}": value for name, value in headlines.items()}
    return {"benchmarks": {name: {"title": REGISTRY[name].title, "metric": REGISTRY[name].headline_metric,
                                  "value": headlines[name]} for name in SUITE},
            "average": average, "metrics": {**metrics, f"{NAME}/average": average}}


def table(record: Mapping[str, Any]) -> str:
    """The suite of one model as a text table: benchmark, headline metric, value; then the average."""
    rows = [(b["title"], b["metric"], f"{b['value']:.4f}") for b in record["benchmarks"].values()]
    rows.append(("Average", f"{NAME}/average", f"{record['average']:.4f}"))
    widths = [max(len(r[i]) for r in [("benchmark", "metric", "value"), *rows]) for i in range(3)]
    lines = [("benchmark", "metric", "value"), *rows]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))) for line in lines)


def write(output_dir: Path, model: Any, record: Mapping[str, Any]) -> list[Path]:
    """``OUT/<slug>/suite.json`` (the record, with the model and its revision) and this model's row of
    ``OUT/suite.csv`` (other models' rows are kept)."""
    import pandas as pd

    from dogerm_eval.results import json_text, result_path
    from dogerm_mergekit.files import atomic_file, atomic_write, output_lock

    output_dir = Path(output_dir)
    path = result_path(output_dir, model, NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json_text({"model": model.repo_id or model.ref, "revision": model.version, **record}))
    row = {"model": model.repo_id or model.ref, "revision": model.version,
           **{name: b["value"] for name, b in record["benchmarks"].items()}, "average": record["average"]}
    csv = output_dir / SUITE_CSV
    with output_lock(output_dir / ".locks" / SUITE_CSV, wait=True):  # models scored side by side wait for each other
        rows = pd.read_csv(csv, dtype={"model": str, "revision": str}) if csv.is_file() else pd.DataFrame()
        if not rows.empty:
            rows = rows[~((rows["model"] == row["model"]) & (rows["revision"].fillna("") == (row["revision"] or "")))]
        frame = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
        with atomic_file(csv) as tmp:
            frame.to_csv(tmp, index=False)
    return [path, csv]
