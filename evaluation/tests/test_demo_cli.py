"""dogerm-demo end to end at the CI size: sweep, evaluation, sweep.csv and plots; a rerun reuses everything."""

import os
import subprocess
import sys

import pandas as pd
from click.testing import CliRunner

from dogerm_eval.demo.cli import main


GRID_COLUMNS = ["lambda[arithmetic]", "lambda[strings]", "pairwise/general", "pairwise/arithmetic", "pairwise/strings"]


def test_demo_runs_end_to_end_and_reuses_its_work(tmp_path):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    args = ["--size", "test", "--output-dir", str(out), "--cache-dir", str(cache), "--lambdas", "0,0.5,1",
            "--grid-step", "0.5"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "scored" not in first.output and "lambda=0.5:" not in first.output  # no per-checkpoint scoring logs
    frame = pd.read_csv(out / "sweep.csv")
    assert list(frame["lambda"]) == [0.0, 0.5, 1.0]
    assert frame.columns[0] == "lambda"
    assert any("general" in c for c in frame.columns) and any("arithmetic" in c for c in frame.columns)
    assert frame.drop(columns="lambda").notna().all().all()
    assert ((frame["pairwise/arithmetic"] >= 0) & (frame["pairwise/arithmetic"] <= 1)).all()
    assert (out / "sweep-pairwise.png").stat().st_size > 1000 and (out / "sweep-bon-gsm8k.png").exists()
    assert sorted(p.name for p in (out / "sweep").iterdir()) == ["lambda-0.00", "lambda-0.50", "lambda-1.00",
                                                                  "sweep.json"]
    # The grid: both domain LMs merged at once, every lambda pair of 0:1:0.5 whose sum is at most 1.
    grid = pd.read_csv(out / "grid.csv")
    assert list(grid.columns) == GRID_COLUMNS
    assert sorted(zip(grid["lambda[arithmetic]"], grid["lambda[strings]"])) == [
        (0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.0)]
    assert ((grid[GRID_COLUMNS[2:]] >= 0) & (grid[GRID_COLUMNS[2:]] <= 1)).all().all()
    for metric in ("general", "arithmetic", "strings"):
        assert (out / f"grid-pairwise-{metric}.png").stat().st_size > 1000
    # Independent path: the grid's in-memory merges with lambda[strings] = 0 against dogerm-sweep's checkpoints
    # (merged on disk by mergekit), pair for pair up to one near-tie.
    for lam in (0.0, 0.5, 1.0):
        grid_row = grid[(grid["lambda[arithmetic]"] == lam) & (grid["lambda[strings]"] == 0.0)].iloc[0]
        sweep_row = frame[frame["lambda"] == lam].iloc[0]
        for metric, pairs in (("general", 222), ("arithmetic", 8), ("strings", 8)):
            assert abs(grid_row[f"pairwise/{metric}"] - sweep_row[f"pairwise/{metric}"]) <= 1 / pairs + 1e-9
    # The printed best pair is the rule's, recomputed here from grid.csv.
    zero = grid[(grid["lambda[arithmetic]"] == 0) & (grid["lambda[strings]"] == 0)].iloc[0]
    best = None
    for _, row in grid.iterrows():
        if row["pairwise/general"] < zero["pairwise/general"] - 0.02 - 1e-9:
            continue
        gains = [row[f"pairwise/{d}"] - zero[f"pairwise/{d}"] for d in ("arithmetic", "strings")]
        key = (round(min(gains), 9), round(sum(gains), 9), -(row["lambda[arithmetic]"] + row["lambda[strings]"]))
        if best is None or key > best[0]:
            best = (key, row)
    expected = (f"grid best pair lambda[arithmetic] = {best[1]['lambda[arithmetic]']:g}, "
                f"lambda[strings] = {best[1]['lambda[strings]']:g} ")
    assert expected in first.output, first.output[-1500:]

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "wrote 0 checkpoints, 3 already there" in again.output
    assert pd.read_csv(out / "sweep.csv").equals(frame)
    assert pd.read_csv(out / "grid.csv").equals(grid)


def test_shipped_tiny_config_merges_the_demo_models(tmp_path):
    """merge_configs/tiny-demo.yml points at ./dogerm-demo/world/: after the demo, mergekit-yaml merges it."""
    config = os.path.join(os.path.dirname(__file__), "..", "..", "merge_configs", "tiny-demo.yml")
    CliRunner().invoke(main, ["--size", "test", "--output-dir", str(tmp_path / "dogerm-demo"), "--cache-dir",
                              str(tmp_path / "cache"), "--lambdas", "0"])
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mergekit-yaml"), config, "out"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "model.safetensors").exists()
    # Both domain LMs at once: the two-domain config, merged once and swept over a per-domain grid with dogerm-sweep.
    config = config.replace("tiny-demo.yml", "tiny-demo-2domains.yml")
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mergekit-yaml"), config, "out2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = [os.path.join(os.path.dirname(sys.executable), "dogerm-sweep"), config, "grid",
             "--grid", "lambda[domain]=0,1", "--grid", "lambda[domain-strings]=0,1"]
    result = subprocess.run(sweep, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "grid").iterdir() if p.is_dir()) == [
        "lambda-0.00_0.00", "lambda-0.00_1.00", "lambda-1.00_0.00"]  # (1, 1) sums above 1: left out


def test_several_seeds_print_each_verdict_and_the_spread(tmp_path):
    args = ["--size", "test", "--output-dir", str(tmp_path / "demo"), "--cache-dir", str(tmp_path / "cache"),
            "--lambdas", "0,1", "--seeds", "0,1", "--grid-step", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "seed-0" / "sweep.csv").is_file() and (tmp_path / "demo" / "seed-1" / "sweep.csv").is_file()
    assert "seed 0: best lambda" in result.output and "seed 1: best lambda" in result.output
    assert "arithmetic gain over 2 seeds" in result.output
    assert "seed 0: grid best pair" in result.output and "seed 1: grid best pair" in result.output
    assert (tmp_path / "demo" / "seed-1" / "grid.csv").is_file()
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


def test_best_pair_rule():
    """Largest smallest gain among points within 2 general points of (0, 0); ties: larger summed gain, then the
    smaller summed lambda."""
    from dogerm_eval.demo.grid import best_pair

    grid = pd.DataFrame({
        "lambda[arithmetic]": [0.0, 0.0, 0.5, 0.5, 0.4, 1.0, 0.2],
        "lambda[strings]":    [0.0, 0.5, 0.0, 0.5, 0.4, 0.0, 0.2],
        "pairwise/general":   [0.90, 0.89, 0.90, 0.70, 0.885, 0.60, 0.95],
        "pairwise/arithmetic": [0.50, 0.50, 0.70, 0.90, 0.62, 0.95, 0.62],
        "pairwise/strings":   [0.40, 0.80, 0.40, 0.90, 0.52, 0.40, 0.52],
    })
    # (0.5, 0.5) gains most on both but loses 20 general points; (0.4, 0.4) and (0.2, 0.2) both gain +12 on each,
    # and the smaller lambdas win the tie; one-domain points have a smallest gain of 0.
    found = best_pair(grid)
    assert found.lambdas == {"arithmetic": 0.2, "strings": 0.2}
    assert round(found.gain("arithmetic"), 6) == 0.12 and round(found.gain("strings"), 6) == 0.12
    assert found.start == {"general": 0.90, "arithmetic": 0.50, "strings": 0.40}
    assert "lambda[arithmetic] = 0.2, lambda[strings] = 0.2" in found.line()
    assert "arithmetic 50.0 -> 62.0 (+12.0), strings 40.0 -> 52.0 (+12.0), general 90.0 -> 95.0" in found.line()
