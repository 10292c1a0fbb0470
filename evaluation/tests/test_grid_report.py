"""Grid sweeps (dogerm_<kernel> parameters, per-domain lambdas): discovered with every parameter, reported and
plotted with one curve per fixed value of the other parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from dogerm_mergekit.card import merge_card
from dogerm_mergekit.contract import (
    CheckpointRecord,
    MetricsTable,
    SweepManifest,
    grid_point_name,
    save_manifest,
)

from dogerm_eval.benchmarks import prepare_task
from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_eval.models import ResolvedModel
from dogerm_eval.report import _x_axis, sweep_frame, write_report
from dogerm_eval.sweep import discover_sweep, evaluate_sweep
from evaluation.tests.test_report import PNG_MAGIC, SETTINGS, ShiftedScorer

MODEL = "/models/MetaMath-7B-V1.0"


def make_grid(root: Path, densities: list[float], weights: list[float]) -> Path:
    checkpoints = {}
    points = []
    for density in densities:
        for weight in weights:
            point = {"density": density, f"weight[{MODEL}]": weight}
            name = grid_point_name(point, {MODEL: 2})
            (root / name).mkdir(parents=True)
            (root / name / "config.json").write_text(json.dumps({"lambda": density * weight}))
            checkpoints[name] = CheckpointRecord(files={}, parameters=point)
            points.append(point)
    save_manifest(root, SweepManifest(reward_model="rm", domain_model=MODEL, inputs={}, config_sha256="0" * 64,
                                      config="merge_method: dogerm_ties\n", lambdas=[], points=points,
                                      checkpoints=checkpoints))
    return root


def test_grid_members_carry_every_parameter(tmp_path: Path) -> None:
    root = make_grid(tmp_path / "grid", [0.5, 0.3], [1.0, 0.5, 0.25])
    members = discover_sweep(str(root))
    assert [key for key, _ in members][:2] == [{"density": 0.3, f"weight[{MODEL}]": 0.25},
                                                {"density": 0.3, f"weight[{MODEL}]": 0.5}]
    assert members[0][1] == str(root / "density-0.30_weight.2-0.25") and len(members) == 6


def test_grid_report_has_parameter_columns_and_one_curve_per_fixed_value(tmp_path: Path) -> None:
    root = make_grid(tmp_path / "grid", [0.3, 0.5], [0.25, 0.5, 1.0])
    rewardbench_rows({"math-prm": 6, "hep-go": 4}).to_parquet(tmp_path / "rb.parquet")
    tasks = [prepare_task("rewardbench", str(tmp_path / "rb.parquet"), None)]
    members = [(key, ResolvedModel(path=Path(ref), ref=ref)) for key, ref in discover_sweep(str(root))]
    out = tmp_path / "out"
    evaluated = evaluate_sweep(members, tasks, SETTINGS, lambda model: ShiftedScorer(
        json.loads((model.path / "config.json").read_text())["lambda"]), out)
    frame = sweep_frame([(key, results) for key, _, results in evaluated])
    assert _x_axis(frame) == (f"weight[{MODEL}]", ["density"])  # the parameter with the most values on x
    paths = write_report(frame, out)
    assert [p.name for p in paths] == ["sweep.csv", "metrics.json", "sweep-rewardbench.png"]
    assert paths[2].read_bytes()[:8] == PNG_MAGIC
    csv = pd.read_csv(out / "sweep.csv")
    assert list(csv.columns)[:2] == ["density", f"weight[{MODEL}]"] and len(csv) == 6
    rb = json.loads((out / "density-0.50_weight.2-1.00" / "rewardbench.json").read_text())
    row = csv[(csv["density"] == 0.5) & (csv[f"weight[{MODEL}]"] == 1.0)].iloc[0]
    assert row["rewardbench/score"] == rb["score"]
    table = MetricsTable.load(out / "metrics.json")
    assert table.parameter_names() == ["density", f"weight[{MODEL}]"] and "rewardbench/score" in table.metric_names()
    card = str(merge_card("rm", MODEL, "sweep", "merge_method: dogerm_ties", metrics=table, kernel="ties"))
    assert "| density=0.5, weight[MetaMath-7B-V1.0]=1 |" in card


def test_metrics_rows_need_a_parameter(tmp_path: Path) -> None:
    from dogerm_mergekit.errors import DogeRMError

    (tmp_path / "m.json").write_text(json.dumps({"rows": [{"rewardbench/score": 0.5}]}))
    with pytest.raises(DogeRMError, match="needs a `lambda`"):
        MetricsTable.load(tmp_path / "m.json")
