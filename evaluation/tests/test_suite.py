"""`dogerm-eval suite`: the seven headline numbers and their average (one table, suite.json, a suite.csv row per
model) equal to the benchmarks' own results; `sweep --benchmark suite` plots them; errors before any scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval import suite
from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_eval.cli import main
from dogerm_eval.registry import REGISTRY, SUITE
from evaluation.tests.test_cli import COUNTS, RB2_ROWS
from evaluation.tests.test_judgebench import SOURCES, pair
from evaluation.tests.test_ppe import rows_of
from evaluation.tests.test_ppe_preference import rows as ppe_preference_rows
from evaluation.tests.test_rmb import records, write_tree
from evaluation.tests.test_rmbench import DOMAINS, rmbench_row


def write_seven(tmp_path: Path) -> dict[str, Path]:
    """Small files of the seven benchmarks, each in its authors' format."""
    paths = {"rewardbench": tmp_path / "rb.parquet", "rewardbench2": tmp_path / "rb2.jsonl",
             "ppe-preference": tmp_path / "ppe-preference.parquet", "ppe": tmp_path / "PPE-MATH-Best-of-K.parquet",
             "rmbench": tmp_path / "total_dataset.parquet",
             "judgebench": tmp_path / "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl"}
    rewardbench_rows(COUNTS).to_parquet(paths["rewardbench"])
    paths["rewardbench2"].write_text("".join(json.dumps(r) + "\n" for r in RB2_ROWS))
    pd.DataFrame(ppe_preference_rows(0, 10)).to_parquet(paths["ppe-preference"])
    pd.DataFrame(rows_of(4, 3, 0)).to_parquet(paths["ppe"])
    paths["rmb"] = write_tree(tmp_path / "rmb", records(0, 10))
    pd.DataFrame([rmbench_row(i, d) for i, d in enumerate(DOMAINS)]).to_parquet(paths["rmbench"])
    paths["judgebench"].write_text("".join(json.dumps(pair(i, s, "A>B" if i % 2 else "B>A")) + "\n"
                                           for i, s in enumerate(SOURCES * 2)))
    return paths


def data_args(paths: dict[str, Path]) -> list[str]:
    return [arg for name, path in paths.items() for arg in ("--data", f"{name}={path}")]


def fake_results(values: dict[str, float | None]) -> dict[str, dict]:
    return {name: {"metrics": {REGISTRY[name].headline_metric: value, f"{name}/other": 0.5}}
            for name, value in values.items()}


def test_summary_table_and_csv_rows(tmp_path: Path) -> None:
    values = dict(zip(SUITE, (0.9, 0.7, 0.6, 0.55, 0.65, 0.7, 0.6)))
    record = suite.summary(fake_results(values))
    assert record["average"] == pytest.approx(sum(values.values()) / 7, abs=1e-15)
    assert record["metrics"] == {**{f"suite/{n}": v for n, v in values.items()}, "suite/average": record["average"]}
    text = suite.table(record)
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["RewardBench", "RewardBench", "PPE", "PPE",
                                                                  "RMB", "RM-Bench", "JudgeBench", "Average"]
    assert f"{record['average']:.4f}" in text.splitlines()[-1]
    assert "*" not in text and "partial" not in text and record["complete"] is True
    # a benchmark without a number: the average is over the other six, named so, and the table says which is missing
    with_nan = suite.summary(fake_results({**values, "rmb": None}))
    six = [v for k, v in values.items() if k != "rmb"]
    assert math.isnan(with_nan["benchmarks"]["rmb"]["value"]) and with_nan["average"] == pytest.approx(sum(six) / 6)
    lines = suite.table(with_nan).splitlines()
    assert lines[-2].startswith("Average of 6 ") and lines[-2].endswith(f"{sum(six) / 6:.4f}*")
    assert lines[-1] == "* suite/average is partial: over 6 of 7, missing rmb"
    # a benchmark scored on part of its data (RewardBench on 2 of its 23 subsets): marked, and so is the average
    results = fake_results(values)
    results["rewardbench"].update(complete=False, partial={"score": {"missing": ["a", "b", "c", "d"], "of": 6}})
    lines = suite.table(suite.summary(results)).splitlines()
    assert lines[1].startswith("RewardBench v1") and lines[1].endswith(f"{values['rewardbench']:.4f}*")
    assert lines[-3].startswith("Average ") and lines[-3].endswith("*")
    assert lines[-2:] == ["* suite/rewardbench is partial: over 2 of 6, missing a, b, c and 1 more",
                          "* suite/average is partial: from partial rewardbench"]
    assert suite.summary(results)["average"] == pytest.approx(sum(values.values()) / 7)
    assert math.isnan(suite.summary(fake_results(dict.fromkeys(values)))["average"])
    with pytest.raises(Exception, match="needs results of \\['judgebench'\\]"):
        suite.summary(fake_results({k: v for k, v in values.items() if k != "judgebench"}))

    from dogerm_eval.models import ResolvedModel

    first, second = (ResolvedModel(path=tmp_path, ref=name) for name in ("rm-a", "rm-b"))
    suite.write(tmp_path / "out", first, record)
    suite.write(tmp_path / "out", second, record)
    suite.write(tmp_path / "out", first, suite.summary(fake_results({**values, "rmb": 0.1})))
    csv = pd.read_csv(tmp_path / "out" / "suite.csv")
    assert csv["model"].tolist() == ["rm-b", "rm-a"] and list(csv.columns) == ["model", "revision", *SUITE, "average"]
    assert csv.set_index("model").loc["rm-a", "rmb"] == 0.1

    from concurrent.futures import ThreadPoolExecutor

    models = [ResolvedModel(path=tmp_path, ref=f"rm-{i}") for i in range(8)]  # side by side: each waits its turn
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda model: suite.write(tmp_path / "side", model, record), models))
    assert sorted(pd.read_csv(tmp_path / "side" / "suite.csv")["model"]) == sorted(m.ref for m in models)
    assert not list((tmp_path / "side" / ".locks").iterdir())  # no lock file left behind


def test_suite_command_end_to_end(tiny_rm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["suite", str(tiny_rm_dir), *data_args(write_seven(tmp_path)),
                                       "--output-dir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    folder = out / tiny_rm_dir.name
    scores = {name: json.loads((folder / f"{name}.json").read_text())["score"] for name in SUITE}
    saved = json.loads((folder / "suite.json").read_text())
    assert {n: b["value"] for n, b in saved["benchmarks"].items()} == scores
    assert saved["average"] == pytest.approx(sum(scores.values()) / 7, abs=1e-15)
    row = pd.read_csv(out / "suite.csv").iloc[0]
    assert row["average"] == pytest.approx(saved["average"], abs=1e-12) and row["model"] == str(tiny_rm_dir)
    assert "Average" in result.output and "JudgeBench" in result.output
    # the small files hold some subsets of RewardBench v1 (3 of 23): its line and the average are marked and named
    lines = result.output.splitlines()
    assert next(line for line in lines if line.startswith("RewardBench v1")).endswith("*")
    assert "rewardbench" in saved["partial"]["average"]["partial"] and saved["complete"] is False
    assert "* suite/rewardbench is partial: over 3 of 23, missing alpacaeval-length" in result.output
    assert any(line.startswith("* suite/average is partial: from partial ") for line in lines)


@pytest.mark.parametrize("args, message", [
    (["--subsets", "math"], "the suite scores every subset"),
    (["--data", "rmb.json"], "with several benchmarks write --data NAME=PATH"),
    (["--data", "autoj=x.jsonl"], "autoj is not among the benchmarks"),
])
def test_suite_refuses_before_scoring(tiny_rm_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["suite", str(tiny_rm_dir), *args, "--output-dir", str(out)])
    assert result.exit_code != 0 and message in result.output and not out.exists()


def test_rmb_without_data_is_named(tiny_rm_dir: Path, tmp_path: Path) -> None:
    paths = write_seven(tmp_path)
    del paths["rmb"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["suite", str(tiny_rm_dir), *data_args(paths), "--output-dir", str(out)])
    assert result.exit_code == 1 and "rmb needs --data rmb=PATH: the RMB_dataset folder" in result.output
    assert not list(out.glob("*/*.json"))


def test_in_memory_sweep_plots_the_suite(tmp_path: Path) -> None:
    from dogerm_mergekit import testing as tiny

    rm, lm = tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    out = tmp_path / "out"
    args = ["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm), "--lambdas", "0,1", "--benchmark", "suite",
            *data_args(write_seven(tmp_path)), "--output-dir", str(out), "--dtype", "float32"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out / "sweep.csv")
    for _, row in csv.iterrows():
        headlines = [row[REGISTRY[n].headline_metric] for n in SUITE]
        assert [row[f"suite/{n}"] for n in SUITE] == headlines
        assert row["suite/average"] == pytest.approx(sum(headlines) / 7, abs=1e-12)
    assert (out / "sweep-suite.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(out / "suite.csv")) == 2
