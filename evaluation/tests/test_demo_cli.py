"""dogerm-demo end to end at the CI size: sweep, evaluation, sweep.csv and plots; a rerun reuses everything."""

import os
import subprocess
import sys

import pandas as pd
from click.testing import CliRunner

from dogerm_eval.demo.cli import main


def test_demo_runs_end_to_end_and_reuses_its_work(tmp_path):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    args = ["--size", "test", "--output-dir", str(out), "--cache-dir", str(cache), "--lambdas", "0,0.5,1"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    frame = pd.read_csv(out / "sweep.csv")
    assert list(frame["lambda"]) == [0.0, 0.5, 1.0]
    assert frame.columns[0] == "lambda"
    assert any("general" in c for c in frame.columns) and any("arithmetic" in c for c in frame.columns)
    assert frame.drop(columns="lambda").notna().all().all()
    assert ((frame["pairwise/arithmetic"] >= 0) & (frame["pairwise/arithmetic"] <= 1)).all()
    assert (out / "sweep-pairwise.png").stat().st_size > 1000 and (out / "sweep-bon-gsm8k.png").exists()
    assert sorted(p.name for p in (out / "sweep").iterdir()) == ["lambda-0.00", "lambda-0.50", "lambda-1.00",
                                                                  "sweep.json"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "wrote 0 checkpoints, 3 already there" in again.output
    assert pd.read_csv(out / "sweep.csv").equals(frame)


def test_shipped_tiny_config_merges_the_demo_models(tmp_path):
    """merge_configs/tiny-demo.yml points at ./dogerm-demo/world/: after the demo, mergekit-yaml merges it."""
    config = os.path.join(os.path.dirname(__file__), "..", "..", "merge_configs", "tiny-demo.yml")
    CliRunner().invoke(main, ["--size", "test", "--output-dir", str(tmp_path / "dogerm-demo"), "--cache-dir",
                              str(tmp_path / "cache"), "--lambdas", "0"])
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mergekit-yaml"), config, "out"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_several_seeds_print_each_verdict_and_the_spread(tmp_path):
    args = ["--size", "test", "--output-dir", str(tmp_path / "demo"), "--cache-dir", str(tmp_path / "cache"),
            "--lambdas", "0,1", "--seeds", "0,1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "seed-0" / "sweep.csv").is_file() and (tmp_path / "demo" / "seed-1" / "sweep.csv").is_file()
    assert "seed 0: best lambda" in result.output and "seed 1: best lambda" in result.output
    assert "arithmetic gain over 2 seeds" in result.output
    bad = CliRunner().invoke(main, ["--seeds", "zero", "--output-dir", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--seeds" in bad.output and not (tmp_path / "x").exists()


def test_verdict_takes_the_best_lambda_within_the_general_limit():
    from dogerm_eval.demo.cli import verdict

    frame = pd.DataFrame({
        "lambda": [0.0, 0.5, 1.0],
        "pairwise/general": [0.90, 0.885, 0.70],   # 1.0 loses 20 points: not allowed
        "pairwise/arithmetic": [0.50, 0.62, 0.80],
        "bon-gsm8k/expected@8": [0.40, 0.45, 0.50],
        "bon-gsm8k/expected@1": [0.30, 0.30, 0.30],
    })
    found = verdict(frame)
    assert found.best_lambda == 0.5 and round(found.gain, 6) == 0.12 and found.n == 8
    assert found.best_of_n == (0.40, 0.45)
