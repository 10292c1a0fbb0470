"""Sweep report: `OUT/sweep.csv` (lambda, or a grid's parameters, + one column per metric), the same table as
`OUT/metrics.json`, one PNG per benchmark, and a printed table.

A table never loses a number: a later sweep into the same OUT is joined to the existing table (the union of their
rows and columns: other benchmarks are added, a rerun keeps it whole) wherever every number they share agrees;
otherwise (e.g. a run on some subsets, whose scores differ) it goes beside it as
`OUT/sweep.<benchmarks>[@<subsets>].csv` (`metrics.<...>.json`, `sweep.<...>-<benchmark>.png`); `overwrite` replaces
`OUT/sweep.csv`. The printed table marks with `*` each number computed over only part of its benchmark (a result's
`partial`) and says below it what is missing.

Baselines (a `dogerm-eval judge` result) are reference rows below the members: no parameters, their name in the
column `baseline` (empty for members), the same metric columns; a dotted line in the plots; not in `metrics.json`
(the checkpoints' own table, for their model card)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from dogerm_eval import nonfinite, truncation
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.results import PARTIAL, partial_notes, result_name
from dogerm_mergekit.contract import METRICS, MetricsTable, is_parameter, point_label
from dogerm_mergekit.files import atomic_file

LOG = logging.getLogger(__name__)
SWEEP_CSV = "sweep.csv"

BASELINE = "baseline"
"""The column naming a reference row (e.g. ``judge org/domain-lm``); only present when the table has baselines."""
#: Count columns (integers, never plotted): ``<benchmark>/nonfinite-scores``, ``<benchmark>/truncated-texts``.
COUNTS = (f"/{nonfinite.COLUMN}", f"/{truncation.COLUMN}")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def parameter_columns(frame: pd.DataFrame) -> list[str]:
    """The swept parameters: `lambda`, or a grid's (`density`, `weight[MODEL]`, `lambda[MODEL]`)."""
    return [c for c in frame.columns if is_parameter(c) and c != BASELINE]


def split_baselines(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(members, baselines) of a sweep table: the members' rows without the column `baseline`, and the baselines'
    rows (none, but the column, when the table has no baselines)."""
    if BASELINE not in frame.columns:
        return frame, frame.iloc[:0].reindex(columns=[*frame.columns, BASELINE])
    reference = frame[BASELINE].notna()
    return frame[~reference].drop(columns=BASELINE), frame[reference]


def sweep_frame(rows: Sequence[tuple[Mapping[str, float], Mapping[str, Mapping[str, Any]]]],
                baselines: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> pd.DataFrame:
    """One row per member: its point's parameters (`lambda`, or a grid's; none for a single model), then the
    `<benchmark>/<metric>` numbers stored in each result's `metrics`; a benchmark some member scored with non-finite
    scores (allowed) gets the column `<benchmark>/nonfinite-scores` with each member's count, one some member's texts
    were cut for the column `<benchmark>/truncated-texts` (:mod:`dogerm_eval.truncation`). Each of `baselines`
    (name, result) adds a row after the members: no parameters, its result's `metrics`, its name in `baseline`."""
    records = []
    marked: set[str] = set()
    notes: dict[str, str] = {}
    for point, results in rows:
        record: dict[str, float] = dict(point)
        for benchmark, result in results.items():
            if "metrics" not in result:
                raise BenchmarkError(f"the {benchmark} result has no `metrics` (written by an older dogerm-eval?)")
            record.update({key: _number(value) for key, value in result["metrics"].items()})
            notes.update(partial_notes(benchmark, result))
            counts = result.get(nonfinite.POLICY_KEY) or {}
            record[f"{benchmark}/{nonfinite.COLUMN}"] = float(counts.get("total", 0))
            if counts.get("total"):
                marked.add(f"{benchmark}/{nonfinite.COLUMN}")
            cut = (result.get(truncation.KEY) or {}).get("texts", 0)
            record[f"{benchmark}/{truncation.COLUMN}"] = float(cut)
            if cut:
                marked.add(f"{benchmark}/{truncation.COLUMN}")
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    frame = frame.drop(columns=[c for c in frame.columns if c.endswith(COUNTS) and c not in marked])
    parameters = parameter_columns(frame)
    frame = frame.sort_values(parameters, kind="stable").reset_index(drop=True) if parameters else frame
    if baselines:
        references = pd.DataFrame.from_records(
            [{**{key: _number(value) for key, value in result["metrics"].items()}, BASELINE: name}
             for name, result in baselines])
        for _, result in baselines:
            notes.update(partial_notes(result.get("judged_benchmark", ""), result))
        frame = pd.concat([frame, references], ignore_index=True)
    frame.attrs[PARTIAL] = {column: note for column, note in notes.items() if column in frame.columns}
    return frame


def _x_axis(frame: pd.DataFrame) -> tuple[str, list[str]]:
    """The parameter on the x axis (`lambda`, else the one with the most values) and the others (one curve each)."""
    parameters = parameter_columns(frame)
    if parameters == ["lambda"]:
        return "lambda", []
    x = max(parameters, key=lambda c: (frame[c].nunique(), -parameters.index(c)))
    return x, [c for c in parameters if c != x]


def plot_benchmark(frame: pd.DataFrame, benchmark: str, path: Path) -> Path:
    """Plot `benchmark`'s metrics into `path` (see :func:`benchmark_figure`)."""
    figure = benchmark_figure(frame, benchmark)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return path


def benchmark_figure(frame: pd.DataFrame, benchmark: str) -> Figure:
    """`benchmark`'s metrics against lambda (the lambda = 0 value, the unmerged RM, dashed), or against one
    parameter of a grid with one curve per fixed value of the other parameters; each baseline's value dotted."""
    frame, baselines = split_baselines(frame)
    columns = [c for c in frame.columns if c.startswith(f"{benchmark}/") and not c.endswith(COUNTS)]
    x, fixed = _x_axis(frame)
    figure = Figure(figsize=(7, 4.5))  # no pyplot: no global backend, nothing to close
    axes = figure.subplots()
    groups = list(frame.groupby(fixed, sort=True)) if fixed else [((), frame)]
    markers = "osD^vP*X"
    for index, column in enumerate(columns):
        color = f"C{index % 10}"
        for number, (values, group) in enumerate(groups):
            values = values if isinstance(values, tuple) else (values,)
            label = column.split("/", 1)[1]
            if fixed:
                label += f" ({point_label(dict(zip(fixed, values)))})"
            axes.plot(group[x], group[column], marker=markers[number % len(markers)], color=color, label=label,
                      linestyle=("-", "--", ":", "-.")[number % 4] if fixed else "-")
        reference = frame.loc[frame[x] == 0.0, column] if x == "lambda" else frame.iloc[:0][column]
        if not reference.empty:
            axes.axhline(float(reference.iloc[0]), color=color, linestyle="--", linewidth=1, alpha=0.7)
        for number, (name, value) in enumerate(zip(baselines[BASELINE], baselines[column])):
            if not math.isnan(value):
                axes.axhline(value, color=color, linestyle=(":", "-.")[number % 2], linewidth=1.5,
                             label=f"{column.split('/', 1)[1]} ({name})")
    if x == "lambda":
        axes.set_xlabel("lambda (weight of the domain model)")
        axes.set_title(f"{benchmark} vs lambda (dashed: lambda = 0, the reward model)")
    else:
        axes.set_xlabel(point_label({x: 0}).split("=")[0])
        others = ", ".join(point_label({c: 0}).split("=")[0] for c in fixed)
        axes.set_title(f"{benchmark} vs {axes.get_xlabel()}" + (f"\none curve per fixed {others}" if fixed else ""))
    if len(baselines):
        axes.set_title(f"{axes.get_title()}\ndotted: {', '.join(baselines[BASELINE])}")
    axes.set_ylabel("accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", ncols=2)
    figure.tight_layout()
    return figure


def metrics_table(frame: pd.DataFrame) -> MetricsTable:
    """The members' rows (baselines left out) as ``dogerm_mergekit.contract.MetricsTable`` (NaN, a metric not
    measured, as None)."""
    members, _ = split_baselines(frame)
    return MetricsTable(rows=[{k: None if math.isnan(v) else v for k, v in row.items()}
                              for row in members.to_dict("records")])


def _benchmarks(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(c.split("/", 1)[0] for c in frame.columns if not is_parameter(c) and c != BASELINE))


def _combine(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame | None:
    """`old` and `new` joined row by row (by parameters and baseline name) where every number they share is the
    same: the union of their rows and columns (`old`'s columns first). None where they have other parameters or a
    shared cell differs (then joining would lose a number)."""
    parameters = parameter_columns(new)
    if parameter_columns(old) != parameters:
        return None
    keys = [*parameters, BASELINE]
    old, new_ = (f if BASELINE in f.columns else f.assign(**{BASELINE: None}) for f in (old, new))
    joined = new_.merge(old, on=keys, how="outer", suffixes=("", " (earlier)"), sort=False)
    for column in [c for c in new_.columns if c in old.columns and c not in keys]:
        earlier = joined.pop(f"{column} (earlier)")
        now = pd.to_numeric(joined[column])
        earlier = pd.to_numeric(earlier)
        if not (now.isna() | earlier.isna() | (now == earlier)).all():
            return None
        joined[column] = now.where(now.notna(), earlier)
    members, baselines = split_baselines(joined)
    members = members.sort_values(parameters, kind="stable") if parameters else members
    columns = list(dict.fromkeys(c for c in [*old.columns, *new_.columns] if c != BASELINE))
    if baselines.empty:
        ordered = members[columns].reset_index(drop=True)
    else:
        ordered = pd.concat([members.assign(**{BASELINE: None}), baselines], ignore_index=True)[[*columns, BASELINE]]
    ordered = ordered.astype({c: float for c in columns})
    ordered.attrs = dict(new.attrs)
    return ordered


def _place(frame: pd.DataFrame, output_dir: Path, tag: str, overwrite: bool) -> tuple[str, pd.DataFrame]:
    """The name stem (`sweep`, else `sweep.<tag>`, `sweep.<tag>-2`, ...) and the table to write there: the first
    stem free, or holding a table `frame` joins without losing a number (``_combine``); says what it did."""
    stems = ["sweep", f"sweep.{tag}", *(f"sweep.{tag}-{n}" for n in range(2, 1000))]
    for stem in stems:
        path = output_dir / f"{stem}.csv"
        if overwrite or not path.is_file():
            break
        try:
            old = pd.read_csv(path, dtype={BASELINE: str}, float_precision="round_trip")  # the floats written
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        combined = _combine(old, frame)
        if combined is not None:
            kept = [b for b in _benchmarks(old) if b not in _benchmarks(frame)]
            rows = len(combined) - len(frame)
            if kept or rows:
                LOG.info("%s: this table joined to the one there (kept %s)", path,
                         ", ".join([*kept, *([f"{rows} more rows"] if rows else [])]))
            return stem, combined
    if stem != "sweep":
        LOG.info("%s holds other numbers for some of this table's cells, so it stays; this table goes to %s beside "
                 "it (--overwrite replaces it)", output_dir / SWEEP_CSV, output_dir / f"{stem}.csv")
    return stem, frame


def write_report(frame: pd.DataFrame, output_dir: Path, subsets: Sequence[str] | None = None,
                 overwrite: bool = False) -> list[Path]:
    """Write `OUT/sweep.csv`, `OUT/metrics.json` and `OUT/sweep-<benchmark>.png` per benchmark; return their paths.

    An existing `OUT/sweep.csv` is joined with this table where they agree, else this table goes beside it as
    `OUT/sweep.<benchmarks>[@<subsets>].csv`, `metrics.<...>.json` and `sweep.<...>-<benchmark>.png` (``_place``);
    `overwrite` replaces it."""
    output_dir = Path(output_dir)
    stem, frame = _place(frame, output_dir, result_name("+".join(_benchmarks(frame)), subsets), overwrite)
    csv = output_dir / f"{stem}.csv"
    metrics = output_dir / (METRICS if stem == "sweep" else f"metrics{stem.removeprefix('sweep')}.json")
    with atomic_file(csv) as tmp:
        frame.to_csv(tmp, index=False)
    metrics_table(frame).save(metrics)
    return [csv, metrics, *(plot_benchmark(frame, b, output_dir / f"{stem}-{b}.png") for b in _benchmarks(frame))]


def format_table(frame: pd.DataFrame) -> str:
    """The sweep as a text table (lambda or grid points down, metrics across, 4 decimals; non-finite counts as
    integers; a baseline row's parameters blank); a number computed over part of its benchmark is marked `*`, and
    a line below says what it misses."""
    counts = {c: "Int64" for c in frame.columns if c.endswith(COUNTS)}
    shown = frame.astype(counts)
    if BASELINE in shown.columns:
        reference = shown[BASELINE].notna()
        shown[BASELINE] = shown[BASELINE].fillna("")
        for column in parameter_columns(shown):
            shown[column] = [("" if ref else f"{value:.4f}") for value, ref in zip(shown[column], reference)]
    notes = frame.attrs.get(PARTIAL, {})
    shown = shown.rename(columns={column: f"{column}*" for column in notes})
    lines = [shown.to_string(index=False, float_format=lambda value: f"{value:.4f}")]
    lines += [f"* {column} is partial: {notes[column]}" for column in frame.columns if column in notes]
    return "\n".join(lines)
