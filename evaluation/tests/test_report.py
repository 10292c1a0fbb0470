"""Sweep discovery and the sweep report: CSV values equal the per-model JSONs, one PNG per benchmark."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dogerm_mergekit.contract import MetricsTable, checkpoint_name

from dogerm_eval.benchmarks import prepare_task
from dogerm_eval.benchmarks.samples import autoj_row, rewardbench_rows
from dogerm_eval.errors import ModelError
from dogerm_eval.models import ResolvedModel
from dogerm_eval.report import format_table, sweep_frame, write_report
from dogerm_eval.sweep import discover_sweep, evaluate_sweep
from evaluation.tests.manifests import write_manifest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SETTINGS = {"dtype": "float32"}
AUTOJ = [("math_reasoning", 0), ("math_reasoning", 1), ("code_generation", 0), ("chitchat", 1), ("chitchat", 2)]


class ShiftedScorer:
    """A different fake model per lambda: preferred texts score 1 + index/100, others gain 3 * lambda."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray:
        return np.array([(1.0 if r.startswith(("good", "r1")) else 3 * self.lam) + len(p) / 100
                         for p, r in conversations])

    def settings_record(self) -> dict:
        return {}


def make_sweep(root: Path, lambdas: list[float]) -> Path:
    for lam in lambdas:
        (root / checkpoint_name(lam)).mkdir(parents=True)
        (root / checkpoint_name(lam) / "config.json").write_text(json.dumps({"lambda": lam}))
    (root / "not-a-member").mkdir()
    return root


def test_discover_local_sweep(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_sweep(tmp_path / "sweep", [0.5, 0.0, 0.05, 0.125])
    (root / "lambda-x").mkdir()
    (root / "lambda-0.90").mkdir()  # no config.json: not a checkpoint
    assert discover_sweep(str(root)) == [({"lambda": lam}, str(root / name)) for lam, name in (
        (0.0, "lambda-0.00"), (0.05, "lambda-0.05"), (0.125, "lambda-0.125"), (0.5, "lambda-0.50"))]
    # with a manifest, its finished checkpoints are the members; the unfinished lambdas are reported
    write_manifest(root, [0.0, 0.05, 0.125, 0.5, 1.0], finished=[0.0, 0.05, 0.5])
    with caplog.at_level(logging.INFO, logger="dogerm_eval"):
        assert [point for point, _ in discover_sweep(str(root))] == [{"lambda": 0.0}, {"lambda": 0.05}, {"lambda": 0.5}]
    assert "[0.125, 1.0]" in caplog.messages[0] and "skipped" in caplog.messages[0]
    (root / "sweep.json").write_text(json.dumps({"lambdas": [0.0]}))
    with pytest.raises(ModelError, match="not a dogerm-sweep manifest"):
        discover_sweep(str(root))
    with pytest.raises(ModelError, match="no lambda"):
        discover_sweep(str(tmp_path / "sweep" / "not-a-member"))


def test_sweep_csv_and_png_match_results(tmp_path: Path) -> None:
    root = make_sweep(tmp_path / "sweep", [0.0, 0.3, 0.6])
    rewardbench_rows({"math-prm": 6, "hep-go": 4}).to_parquet(tmp_path / "rb.parquet")
    pd.DataFrame([autoj_row(i, *case) for i, case in enumerate(AUTOJ)]).to_json(
        tmp_path / "autoj.jsonl", orient="records", lines=True)
    tasks = [
        prepare_task("rewardbench", str(tmp_path / "rb.parquet"), None),
        prepare_task("autoj", str(tmp_path / "autoj.jsonl"), None),
    ]
    members = [(lam, ResolvedModel(path=Path(ref), ref=ref)) for lam, ref in discover_sweep(str(root))]
    out = tmp_path / "out"
    evaluated = evaluate_sweep(members, tasks, SETTINGS, lambda model: ShiftedScorer(
        json.loads((model.path / "config.json").read_text())["lambda"]), out)
    frame = sweep_frame([(lam, results) for lam, _, results in evaluated])
    paths = write_report(frame, out)
    assert [p.name for p in paths] == ["sweep.csv", "metrics.json", "sweep-rewardbench.png", "sweep-autoj.png"]
    for png in paths[2:]:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    csv = pd.read_csv(out / "sweep.csv")
    assert list(csv.columns)[:2] == ["lambda", "rewardbench/reasoning"]
    assert csv["lambda"].tolist() == [0.0, 0.3, 0.6]
    for lam in [0.0, 0.3, 0.6]:
        rb = json.loads((out / f"lambda-{lam:.2f}" / "rewardbench.json").read_text())
        aj = json.loads((out / f"lambda-{lam:.2f}" / "autoj.json").read_text())
        assert csv.loc[csv["lambda"] == lam, "rewardbench/math"].item() == rb["subsets"]["math-prm"]
        assert csv.loc[csv["lambda"] == lam, "rewardbench/code"].item() == rb["subsets"]["hep-go"]
        assert csv.loc[csv["lambda"] == lam, "rewardbench/score"].item() == rb["score"]
        assert csv.loc[csv["lambda"] == lam, "autoj/math"].item() == aj["sections"]["Math"]
        assert csv.loc[csv["lambda"] == lam, "autoj/agreement-tuned"].item() == aj["agreement"]["value"]
    # the fake models really differ: accuracy falls as lambda grows
    assert csv["rewardbench/score"].is_monotonic_decreasing and csv["rewardbench/score"].nunique() > 1
    assert "rewardbench/math" in format_table(frame)
    # metrics.json (what dogerm-push --results reads) holds the same numbers
    table = MetricsTable.load(out / "metrics.json")
    assert table.metric_names() == list(csv.columns[1:])
    assert pd.DataFrame(table.rows).equals(csv)


def test_other_benchmarks_contribute_metrics(tmp_path: Path) -> None:
    """Any result carrying `metrics` (e.g. Best-of-N's) joins the report, with its own plot."""
    rows = [({"lambda": 0.0}, {"bon-gsm8k": {"metrics": {"bon-gsm8k/expected@16": 0.49}}}),
            ({"lambda": 0.5}, {"bon-gsm8k": {"metrics": {"bon-gsm8k/expected@16": 0.54}}})]
    frame = sweep_frame(rows)
    assert frame.to_dict("list") == {"lambda": [0.0, 0.5], "bon-gsm8k/expected@16": [0.49, 0.54]}
    assert [p.name for p in write_report(frame, tmp_path)] == ["sweep.csv", "metrics.json", "sweep-bon-gsm8k.png"]


def test_missing_metric_is_null_and_no_global_backend(tmp_path: Path) -> None:
    """A metric one member lacks is NaN in the CSV and null in metrics.json; pyplot is never loaded."""
    rows = [({"lambda": 0.0}, {"x": {"metrics": {"x/a": 0.5}}}),
            ({"lambda": 0.5}, {"x": {"metrics": {"x/a": 0.6, "x/b": 0.7}}})]
    write_report(sweep_frame(rows), tmp_path)
    assert MetricsTable.load(tmp_path / "metrics.json").rows == [{"lambda": 0.0, "x/a": 0.5, "x/b": None},
                                                                 {"lambda": 0.5, "x/a": 0.6, "x/b": 0.7}]
    assert "matplotlib.pyplot" not in sys.modules


def _rows(metrics: dict[str, list[float]], lambdas: Sequence[float] = (0.0, 0.5), **extra: object) -> list:
    """Fake members: each lambda's `metrics` (column -> one value per lambda), grouped by benchmark."""
    rows = []
    for i, lam in enumerate(lambdas):
        results: dict[str, dict] = {}
        for column, values in metrics.items():
            results.setdefault(column.split("/")[0], {"metrics": {}, **extra})["metrics"][column] = values[i]
        rows.append(({"lambda": lam}, results))
    return rows


def test_a_later_sweep_into_the_same_folder_keeps_every_table(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A table is joined to sweep.csv where every number they share agrees (other benchmarks added, a table covering
    it replaces it, a table it covers leaves it whole), any other goes beside it (named by its benchmarks and
    subsets; a rerun joins its own), and --overwrite replaces sweep.csv."""
    full = {"rewardbench/math": [0.6, 0.7], "rewardbench/chat": [0.9, 0.8], "rewardbench/score": [0.75, 0.74]}
    bon = {"bon-humaneval/expected@4": [0.3, 0.4]}

    def csv(name: str = "sweep.csv") -> dict:
        return pd.read_csv(tmp_path / name).to_dict("list")

    write_report(sweep_frame(_rows(full)), tmp_path)
    with caplog.at_level(logging.INFO, logger="dogerm_eval"):
        paths = write_report(sweep_frame(_rows(bon)), tmp_path)
    assert [p.name for p in paths] == ["sweep.csv", "metrics.json", "sweep-rewardbench.png", "sweep-bon-humaneval.png"]
    assert csv() == {"lambda": [0.0, 0.5], **full, **bon}
    assert pd.DataFrame(MetricsTable.load(tmp_path / "metrics.json").rows).to_dict("list") == csv()
    assert f"{tmp_path / 'sweep.csv'}: this table joined to the one there (kept rewardbench)" in caplog.messages
    # one table of both (the README's `--benchmark rewardbench,bon-humaneval`) covers it: replaced, nothing beside
    write_report(sweep_frame(_rows({**full, **bon})), tmp_path)
    assert csv() == {"lambda": [0.0, 0.5], **full, **bon}
    # a rerun of the first step, or of one member: the numbers agree, the table stays whole
    write_report(sweep_frame(_rows(full)), tmp_path)
    write_report(sweep_frame(_rows({k: v[1:] for k, v in full.items()}, [0.5])), tmp_path)
    assert csv() == {"lambda": [0.0, 0.5], **full, **bon} and sorted(p.name for p in tmp_path.glob("*.csv")) == [
        "sweep.csv"]
    # a run on math-prm (to compare with a judge): beside, sweep.csv untouched
    math_only = {"rewardbench/math": [0.6, 0.7], "rewardbench/score": [0.6, 0.7]}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dogerm_eval"):
        paths = write_report(sweep_frame(_rows(math_only)), tmp_path, ["math-prm"])
    stem = "sweep.rewardbench@math-prm"
    assert [p.name for p in paths] == [f"{stem}.csv", "metrics.rewardbench@math-prm.json", f"{stem}-rewardbench.png"]
    assert csv() == {"lambda": [0.0, 0.5], **full, **bon} and csv(f"{stem}.csv") == {"lambda": [0.0, 0.5], **math_only}
    assert f"this table goes to {tmp_path / stem}.csv beside it" in caplog.text
    write_report(sweep_frame(_rows(math_only)), tmp_path, ["math-prm"])  # a rerun: the same file
    write_report(sweep_frame(_rows({k: [0.3] for k in math_only}, [0.0])), tmp_path, ["math-prm"])  # other numbers
    assert csv(f"{stem}-2.csv") == {"lambda": [0.0], **{k: [0.3] for k in math_only}}
    assert csv(f"{stem}.csv") == {"lambda": [0.0, 0.5], **math_only}
    write_report(sweep_frame(_rows(math_only)), tmp_path, ["math-prm"], overwrite=True)
    assert csv() == {"lambda": [0.0, 0.5], **math_only}
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == ["sweep.csv", f"{stem}-2.csv", f"{stem}.csv"]


def test_printed_table_marks_partial_numbers_and_blank_baseline_parameters() -> None:
    """A number over part of its benchmark is marked `*` with what it misses below; a baseline row has no lambda."""
    partial = {"score": {"missing": ["Chat", "Chat Hard", "Safety", "alpacaeval-easy"], "of": 6},
               "Reasoning": {"missing": ["hep-go"], "of": 7}}
    rows = _rows({"rewardbench/reasoning": [0.5, 0.6], "rewardbench/math": [0.6, 0.7],
                  "rewardbench/score": [0.5, 0.6]}, complete=False, partial=partial)
    judged = {"judged_benchmark": "rewardbench", "complete": False, "partial": partial,
              "metrics": {"rewardbench/reasoning": 0.55, "rewardbench/math": 0.5, "rewardbench/score": 0.55}}
    lines = format_table(sweep_frame(rows, [("judge tiny", judged)])).splitlines()
    assert lines[0].split() == ["lambda", "rewardbench/reasoning*", "rewardbench/math", "rewardbench/score*",
                                "baseline"]
    assert lines[1].split() == ["0.0000", "0.5000", "0.6000", "0.5000"]
    assert lines[3].split() == ["0.5500", "0.5000", "0.5500", "judge", "tiny"]  # no lambda NaN
    assert lines[4:] == ["* rewardbench/reasoning is partial: over 6 of 7, missing hep-go",
                         "* rewardbench/score is partial: over 2 of 6, missing Chat, Chat Hard, Safety and 1 more"]
    assert "*" not in format_table(sweep_frame(_rows({"rewardbench/score": [0.5, 0.6]}, complete=True)))
