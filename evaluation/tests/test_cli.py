"""End-to-end `dogerm-eval` on tiny reward models (CliRunner), errors before any output, and --push-results.

The push test uses the repository-wide `hub_env`/`hub_client` fixtures (root conftest.py, tests/hub_server/):
run it from the repository root (`pytest` or `pytest -c pyproject.toml evaluation/tests`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dogerm_eval.benchmarks.samples import autoj_row, rewardbench2_row, rewardbench_rows
from dogerm_eval.cli import main
from dogerm_eval.formatting import FormatSettings
from dogerm_eval.scorer import RewardScorer
from dogerm_mergekit.contract import MetricsTable
from evaluation.tests.manifests import write_manifest

COUNTS = {"math-prm": 4, "hep-go": 3, "alpacaeval-easy": 3}
RB2_ROWS = [
    rewardbench2_row("m1", "Math", ["x = 2"], ["x = 3", "x = 4", "x = 5"]),
    rewardbench2_row("m2", "Math", ["the sky is blue"], ["green", "red", "a fox"]),
    rewardbench2_row("ref:1", "Ties", ["Paris"], ["Rome", "Berlin"]),
    rewardbench2_row("tied:1", "Ties", ["Paris", "It is Paris"], ["Rome"]),
]
AUTOJ = [("math_reasoning", 0), ("code_generation", 1), ("explaining_code", 2), ("chitchat", 0)]


def write_rewardbench(path: Path, counts: dict[str, int]) -> Path:
    rewardbench_rows(counts).to_parquet(path)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


HEAVY = ("torch", "transformers", "datasets", "matplotlib", "pandas", "mergekit")



@pytest.mark.parametrize("module", ["dogerm_eval.cli", "dogerm_eval.demo.cli", "dogerm_mergekit.cli"])
def test_command_lines_import_no_heavy_library(module: str) -> None:
    """`--help` stays fast: the command-line modules leave torch, transformers, ... to the commands that run."""
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


def test_registry_entries_are_the_benchmarks_and_their_commands() -> None:
    """Each registry entry names its module's NAME, has its command with the entry's summary as help, and the
    sweep's help lists it."""
    from dogerm_eval.benchmarks import BENCHMARKS
    from dogerm_eval.registry import ENTRIES

    assert list(BENCHMARKS) == [entry.name for entry in ENTRIES]
    for entry in ENTRIES:
        assert BENCHMARKS[entry.name].NAME == entry.name
        assert main.commands[entry.name].help.startswith(entry.summary)
    sweep_help = next(p.help for p in main.commands["sweep"].params if p.name == "benchmarks")
    assert all(entry.name in sweep_help for entry in ENTRIES)


def test_help_documents_every_command() -> None:
    code, output = invoke("--help")
    assert code == 0
    for command in ("rewardbench", "rewardbench2", "autoj", "sweep"):
        assert command in output
        sub_code, sub_output = invoke(command, "--help")
        assert sub_code == 0 and "--output-dir" in sub_output and "--push-results" in sub_output


def test_rewardbench_end_to_end_matches_direct_scoring(tiny_rm_dir: Path, tmp_path: Path) -> None:
    data = write_rewardbench(tmp_path / "rb.parquet", COUNTS)
    out = tmp_path / "out"
    code, output = invoke("rewardbench", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(out),
                          "--checkpoint-every", "4")
    assert code == 0, output
    result = json.loads((out / tiny_rm_dir.name / "rewardbench.json").read_text())
    frame = pd.read_parquet(data)
    scorer = RewardScorer(str(tiny_rm_dir), format=FormatSettings(), dtype="float32")
    chosen = scorer.score(list(zip(frame["prompt"], frame["chosen"])))
    rejected = scorer.score(list(zip(frame["prompt"], frame["rejected"])))
    expected = pd.Series(chosen > rejected).groupby(frame["subset"]).mean().to_dict()
    assert result["subsets"] == pytest.approx(expected)
    per_example = pd.read_parquet(out / tiny_rm_dir.name / result["per_example"])
    np.testing.assert_allclose(per_example["score_chosen"], chosen, atol=1e-5)  # batching: ~1e-7
    assert result["settings"]["scorer"]["dtype"] == "float32"
    assert f"rewardbench score: {result['score']:.4f}" in output
    # same model, data and settings: reused without scoring
    code, output = invoke("rewardbench", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(out),
                          "--checkpoint-every", "4")
    assert code == 0 and "reusing cached result" in output and "scored" not in output
    # another setting is another cache key: the result is replaced only when asked
    code, output = invoke("rewardbench", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(out),
                          "--system-prompt", "llama2-default")
    assert code == 1 and "holds a result on other settings format" in output and "pass --overwrite" in output
    code, output = invoke("rewardbench", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(out),
                          "--system-prompt", "llama2-default", "--overwrite")
    assert code == 0 and "reusing" not in output


def test_rewardbench2_and_autoj_end_to_end(tiny_rm_dir: Path, tmp_path: Path) -> None:
    pd.DataFrame(RB2_ROWS).to_parquet(tmp_path / "rb2.parquet")
    out = tmp_path / "out"
    code, output = invoke("rewardbench2", str(tiny_rm_dir), "--data", str(tmp_path / "rb2.parquet"),
                          "--output-dir", str(out))
    assert code == 0, output
    rb2 = json.loads((out / tiny_rm_dir.name / "rewardbench2.json").read_text())
    assert set(rb2["subsets"]) == {"Math", "Ties"} and rb2["ties"]["prompts_both"] == 1
    assert rb2["score"] == pytest.approx(np.mean(list(rb2["subsets"].values())))
    per_example = pd.read_parquet(out / tiny_rm_dir.name / rb2["per_example"])
    assert [len(s) for s in per_example["score_rejected"]] == [3, 3, 2, 1]
    pd.DataFrame([autoj_row(i, *case) for i, case in enumerate(AUTOJ)]).to_json(
        tmp_path / "autoj.jsonl", orient="records", lines=True)
    code, output = invoke("autoj", str(tiny_rm_dir), "--data", str(tmp_path / "autoj.jsonl"),
                          "--output-dir", str(out), "--subsets", "math,code")
    assert code == 0, output
    autoj = json.loads((out / tiny_rm_dir.name / "autoj@code+math.json").read_text())  # a run on some subsets
    assert set(autoj["sections"]) == {"Math", "Code"} and autoj["agreement"]["tuned_on_test"] is True
    assert autoj["partial"] == {"score": {"missing": ["Other"], "of": 3}} and autoj["complete"] is False
    assert "autoj/score*" in output and "* autoj/score is partial: over 2 of 3, missing Other" in output


def test_sweep_end_to_end(tiny_rm_dir: Path, make_tiny_rm, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep_out"
    shutil.copytree(tiny_rm_dir, sweep / "lambda-0.00")
    shutil.copytree(make_tiny_rm(seed=1), sweep / "lambda-0.50")
    write_manifest(sweep, [0.0, 0.5])
    data = write_rewardbench(tmp_path / "rb.parquet", COUNTS)
    out = tmp_path / "out"
    code, output = invoke("sweep", str(sweep), "--benchmark", "rewardbench", "--data", str(data),
                          "--output-dir", str(out))
    assert code == 0, output
    csv = pd.read_csv(out / "sweep.csv", float_precision="round_trip")
    assert csv["lambda"].tolist() == [0.0, 0.5]
    for lam in (0.0, 0.5):
        result = json.loads((out / f"lambda-{lam:.2f}" / "rewardbench.json").read_text())
        row = csv[csv["lambda"] == lam].iloc[0]
        assert row["rewardbench/math"] == result["sections"]["Math"]
        assert row["rewardbench/score"] == result["score"]
    assert (out / "sweep-rewardbench.png").read_bytes()[:4] == b"\x89PNG"
    assert "rewardbench/code" in output
    assert pd.DataFrame(MetricsTable.load(out / "metrics.json").rows).equals(csv)  # for dogerm-push --results
    assert f"wrote {out / 'metrics.json'}" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "{sweep}", "--benchmark", "rewardbench,nope"], "unknown benchmark"),
        (["rewardbench", "{model}", "--subsets", "math-prm,nope"], "nope"),
        (["rewardbench", "{model}", "--data", "{nocol}"], "rejected"),
        (["rewardbench", "{tmp}/missing-model"], "does not exist"),
        (["sweep", "{sweep}", "--benchmark", "rewardbench,bon-gsm8k"], "unknown benchmark"),
    ],
)
def test_errors_before_any_output(tiny_rm_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_rm_dir, sweep / "lambda-0.00")
    data = write_rewardbench(tmp_path / "rb.parquet", COUNTS)
    pd.read_parquet(data).drop(columns="rejected").to_parquet(tmp_path / "nocol.parquet")
    values = {"sweep": str(sweep), "model": str(tiny_rm_dir), "nocol": str(tmp_path / "nocol.parquet"),
              "tmp": str(tmp_path)}
    out = tmp_path / "out"
    filled = [a.format(**values) for a in args]
    if "--data" not in filled:
        filled += ["--data", str(data)]
    code, output = invoke(*filled, "--output-dir", str(out))
    assert code != 0 and message in output
    assert not out.exists()


def test_push_results_local_folder_is_a_noop(tiny_rm_dir: Path, tmp_path: Path) -> None:
    data = write_rewardbench(tmp_path / "rb.parquet", COUNTS)
    code, output = invoke("rewardbench", str(tiny_rm_dir), "--data", str(data), "--output-dir",
                          str(tmp_path / "out"), "--push-results")
    assert code == 0 and "local folder" in output and "nothing pushed" in output


def test_push_results_writes_model_index(tiny_rm_dir: Path, tmp_path: Path, hub_client, hub_env) -> None:
    repo = "me/tiny-rm"
    hub_client.create_repo(repo)
    hub_client.create_branch(repo, branch="lambda-0.30")
    hub_client.upload_folder(repo_id=repo, folder_path=tiny_rm_dir, revision="lambda-0.30")
    evaluated_commit = hub_env.refs(repo)["lambda-0.30"]
    data = write_rewardbench(tmp_path / "rb.parquet", COUNTS)
    out = tmp_path / "out"
    code, output = invoke("rewardbench", f"{repo}@lambda-0.30", "--data", str(data), "--output-dir", str(out),
                          "--push-results")
    assert code == 0, output
    result = json.loads((out / "me--tiny-rm@lambda-0.30" / "rewardbench.json").read_text())
    assert (result["model"], result["revision"]) == (repo, evaluated_commit)
    card = hub_env.files(repo, revision="lambda-0.30")["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["rewardbench/math"] == pytest.approx(result["sections"]["Math"], abs=1e-6)
    assert metrics["rewardbench/score"] == pytest.approx(result["score"], abs=1e-6)
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "allenai/reward-bench"
    assert "README.md" not in hub_env.files(repo, revision="main")


def test_hub_dataset_loaded_at_recorded_commit(tiny_rm_dir: Path, tmp_path: Path, hub_client, hub_env) -> None:
    """Without --data the benchmark comes from the Hub dataset (here the local Hub), its commit recorded."""
    repo = "allenai/reward-bench"
    hub_client.create_repo(repo, repo_type="dataset")
    rows = rewardbench_rows(COUNTS)
    rows.to_parquet(tmp_path / "filtered.parquet")
    rewardbench_rows({"math-prm": 2}, prefix="raw ").to_parquet(tmp_path / "raw.parquet")
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: filtered\n    path: data/filtered-*\n"
        "  - split: raw\n    path: data/raw-*\n---\n")
    for local, remote in [("filtered.parquet", "data/filtered-00000-of-00001.parquet"),
                          ("raw.parquet", "data/raw-00000-of-00001.parquet"), ("README.md", "README.md")]:
        hub_client.upload_file(path_or_fileobj=tmp_path / local, path_in_repo=remote, repo_id=repo,
                               repo_type="dataset")
    commit = hub_env.refs(repo, repo_type="dataset")["main"]
    out = tmp_path / "out"
    code, output = invoke("rewardbench", str(tiny_rm_dir), "--output-dir", str(out))
    assert code == 0, output
    result = json.loads((out / tiny_rm_dir.name / "rewardbench.json").read_text())
    assert (result["dataset"], result["dataset_revision"]) == (repo, commit)
    assert sum(result["counts"].values()) == len(rows)


def test_sweep_members_from_hub_branches(hub_client, hub_env) -> None:
    from dogerm_eval.sweep import discover_sweep

    repo = "me/rm-sweep"
    hub_client.create_repo(repo)
    for branch in ("lambda-0.50", "lambda-0.00", "lambda-1.00", "other"):
        hub_client.create_branch(repo, branch=branch)
    assert discover_sweep(repo) == [({"lambda": lam}, f"{repo}@lambda-{lam:.2f}") for lam in (0.0, 0.5, 1.0)]


def test_push_keeps_other_card_entries(tiny_rm_dir: Path, tmp_path: Path, hub_client, hub_env) -> None:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    repo = "me/carded-rm"
    hub_client.create_repo(repo)
    hub_client.upload_folder(repo_id=repo, folder_path=tiny_rm_dir)
    other = EvalResult(task_type="text-classification", dataset_type="other/bench", dataset_name="other",
                       metric_type="accuracy", metric_name="other/score", metric_value=0.7)
    stale = EvalResult(task_type="text-classification", dataset_type="allenai/reward-bench", dataset_name="rb",
                       metric_type="accuracy", metric_name="rewardbench/score", metric_value=-1.0)
    card = ModelCard.from_template(ModelCardData(model_name="carded-rm", eval_results=[other, stale]))
    card.push_to_hub(repo)
    data = write_rewardbench(tmp_path / "rb.parquet", COUNTS)
    code, output = invoke("rewardbench", repo, "--data", str(data), "--output-dir", str(tmp_path / "out"),
                          "--push-results")
    assert code == 0, output
    meta = yaml.safe_load(hub_env.files(repo)["README.md"].decode().split("---")[1])
    metrics = {(r["dataset"]["type"], m["name"]): m["value"] for r in meta["model-index"][0]["results"]
               for m in r["metrics"]}
    assert metrics[("other/bench", "other/score")] == 0.7
    assert metrics[("allenai/reward-bench", "rewardbench/score")] >= 0.0
    assert meta["model-index"][0]["name"] == "carded-rm"


def test_missing_hub_dataset_is_a_clear_error(tiny_rm_dir: Path, tmp_path: Path, hub_env) -> None:
    code, output = invoke("rewardbench2", str(tiny_rm_dir), "--output-dir", str(tmp_path / "out"))
    assert code != 0 and "allenai/reward-bench-2 not found" in output and "--data" in output
    assert not (tmp_path / "out").exists()
