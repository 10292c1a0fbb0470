"""The `pairwise` benchmark: custom subsets in RewardBench's schema, checked against a direct computation."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import pairwise
from dogerm_eval.cli import main
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.scorer import RewardScorer


def _rows():
    return pd.DataFrame({
        "id": list(range(6)), "subset": ["general"] * 4 + ["arithmetic"] * 2,
        "prompt": [f"q{i}" for i in range(6)], "chosen": ["good"] * 6, "rejected": ["bad"] * 5 + ["good"],
        "chosen_model": "a", "rejected_model": "b",
    })


def test_accuracy_per_custom_subset_ties_wrong():
    frame = _rows()
    chosen = np.array([1.0, 2.0, 0.0, 5.0, 1.0, 3.0])
    rejected = np.array([0.0, 3.0, 0.0, 4.0, np.nan, 3.0])  # a loss, an exact tie, a NaN, a tie
    result = pairwise.evaluate(frame, np.concatenate([chosen, rejected]))
    assert result.subsets == {"general": 0.5, "arithmetic": 0.0}
    assert result.score == pytest.approx(2 / 6)
    assert result.extra["ties"]["exact"] == 2 and result.extra["ties"]["nan"] == 1
    assert pairwise.metrics({"subsets": result.subsets, "score": result.score}) == {
        "pairwise/general": 0.5, "pairwise/arithmetic": 0.0, "pairwise/score": pytest.approx(2 / 6)}


def test_needs_a_local_file_and_known_subsets(tmp_path):
    with pytest.raises(BenchmarkError, match="--data"):
        pairwise.load(None, None)
    _rows().to_json(tmp_path / "pairs.jsonl", orient="records", lines=True)
    assert len(pairwise.load(str(tmp_path / "pairs.jsonl"), ["arithmetic"]).frame) == 2
    with pytest.raises(BenchmarkError, match="unknown"):
        pairwise.load(str(tmp_path / "pairs.jsonl"), ["chat"])


def test_command_end_to_end(tiny_rm_dir, tmp_path):
    _rows().to_parquet(tmp_path / "pairs.parquet")
    result = CliRunner().invoke(main, ["pairwise", str(tiny_rm_dir), "--data", str(tmp_path / "pairs.parquet"),
                                       "--output-dir", str(tmp_path / "out"), "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / tiny_rm_dir.name / "pairwise.json").read_text())
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32")
    frame = _rows()
    chosen = scorer.score(list(zip(frame["prompt"], frame["chosen"])))
    rejected = scorer.score(list(zip(frame["prompt"], frame["rejected"])))
    expected = pd.Series(chosen > rejected).groupby(frame["subset"]).mean()
    assert saved["subsets"] == pytest.approx(expected.to_dict())
    assert set(saved["metrics"]) == {"pairwise/general", "pairwise/arithmetic", "pairwise/score"}


def test_a_second_run_scoring_the_same_model_and_benchmark_is_refused(tiny_rm_dir, tmp_path):
    from filelock import FileLock

    _rows().to_parquet(tmp_path / "pairs.parquet")
    args = ["pairwise", str(tiny_rm_dir), "--data", str(tmp_path / "pairs.parquet"), "--output-dir", str(tmp_path / "out"),
            "--dtype", "float32"]
    result_dir = tmp_path / "out" / tiny_rm_dir.name
    (tmp_path / "out" / ".locks").mkdir(parents=True)
    with FileLock(tmp_path / "out" / ".locks" / f".{tiny_rm_dir.name}--pairwise.lock"):  # as a running run holds it
        busy = CliRunner().invoke(main, args)
    assert busy.exit_code == 1 and "being written by another run" in busy.output
    assert not (result_dir / "pairwise.json").exists()
    assert CliRunner().invoke(main, args).exit_code == 0 and (result_dir / "pairwise.json").is_file()
