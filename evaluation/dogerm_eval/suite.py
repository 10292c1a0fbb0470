"""``dogerm-eval suite``: the seven benchmarks reward-model papers report (Skywork-Reward-V2's README: "RewardBench
v1, RewardBench v2, PPE Preference, PPE Correctness, RMB, RM-Bench, and JudgeBench") and their unweighted average.

Each benchmark contributes its registry headline (``dogerm_eval.registry``); the summary is ``suite/<benchmark>``
per benchmark and ``suite/average`` (over the benchmarks with a number; its ``partial`` names those without one and
those scored on part of their data, and the table says so), written per model to ``OUT/<model-slug>/suite.json``
and as one row per model of ``OUT/suite.csv``; a sweep adds the same columns to its table and plots them in
``OUT/sweep-suite.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dogerm_eval.errors import BenchmarkError
from dogerm_eval.registry import REGISTRY, SUITE
from dogerm_eval.results import PARTIAL, partial_notes

NAME = "suite"
SUITE_CSV = "suite.csv"


def summary(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The suite of one model from its benchmark results: each headline and the average over those with a number
    (NaN when none has); ``partial`` (as ``results.coverage`` writes it) names each headline computed over part of its
    benchmark and, for the average, the benchmarks without a number (missing) and those partial."""
    missing = [name for name in SUITE if name not in results]
    if missing:
        raise BenchmarkError(f"the suite needs results of {missing}")
    headlines, partial = {}, {}
    for name in SUITE:
        metric = REGISTRY[name].headline_metric
        value = results[name]["metrics"].get(metric)
        headlines[name] = math.nan if value is None else float(value)
        gap = (results[name].get(PARTIAL) or {}).get("score")
        if gap is not None or results[name].get("complete") is False:
            partial[name] = gap or {"missing": [], "of": 0, PARTIAL: [name]}
    covered = [value for value in headlines.values() if not math.isnan(value)]
    average = math.fsum(covered) / len(covered) if covered else math.nan
    absent = [name for name, value in headlines.items() if math.isnan(value)]
    if absent or partial:
        partial["average"] = {"missing": absent, "of": len(SUITE), PARTIAL: [n for n in SUITE if n in partial]}
    metrics = {f"{NAME}/{name}": value for name, value in headlines.items()}
    return {"benchmarks": {name: {"title": REGISTRY[name].title, "metric": REGISTRY[name].headline_metric,
                                  "value": headlines[name]} for name in SUITE},
            "average": average, "metrics": {**metrics, f"{NAME}/average": average}, "complete": not partial,
            PARTIAL: partial}


def table(record: Mapping[str, Any]) -> str:
    """The suite of one model as a text table: benchmark, headline metric, value; then the average (named by what it
    covers when that is not all seven); a number over part of its data is marked `*`, with what it misses below."""
    notes = partial_notes(NAME, record)
    mark = {name: "*" if f"{NAME}/{name}" in notes else "" for name in [*record["benchmarks"], "average"]}
    rows = [(b["title"], b["metric"], f"{b['value']:.4f}{mark[name]}") for name, b in record["benchmarks"].items()]
    absent = (record.get(PARTIAL, {}).get("average") or {}).get("missing", [])
    label = f"Average of {len(SUITE) - len(absent)}" if absent else "Average"
    rows.append((label, f"{NAME}/average", f"{record['average']:.4f}{mark['average']}"))
    widths = [max(len(r[i]) for r in [("benchmark", "metric", "value"), *rows]) for i in range(3)]
    lines = [("benchmark", "metric", "value"), *rows]
    text = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join([*text, *(f"* {column} is partial: {note}" for column, note in notes.items())])


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
        rows = (pd.read_csv(csv, dtype={"model": str, "revision": str}, float_precision="round_trip")  # as written
                if csv.is_file() else pd.DataFrame())
        if not rows.empty:
            rows = rows[~((rows["model"] == row["model"]) & (rows["revision"].fillna("") == (row["revision"] or "")))]
        frame = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
        with atomic_file(csv) as tmp:
            frame.to_csv(tmp, index=False)
    return [path, csv]
