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
