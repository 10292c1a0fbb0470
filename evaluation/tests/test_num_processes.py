"""`--num-processes 2` on a CPU machine: two gloo processes, the same results as one process."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from dogerm_eval.benchmarks.samples import rewardbench_rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the CPU (gloo) launch; GPUs launch one per GPU")
def test_two_cpu_processes_equal_one(tiny_rm_dir, tmp_path):
    data = tmp_path / "pairs.parquet"
    rewardbench_rows({"general": 12, "arithmetic": 9}).to_parquet(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        done = subprocess.run([sys.executable, "-m", "dogerm_eval", "pairwise", str(tiny_rm_dir), "--data", str(data),
                               "--output-dir", str(out), "--dtype", "float32", "--device", "cpu",
                               "--num-processes", str(n)], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[n] = out / tiny_rm_dir.name
    one, two = (json.loads((outputs[n] / "pairwise.json").read_text()) for n in (1, 2))
    assert two["settings"]["scorer"]["num_processes"] == 2 and one["settings"]["scorer"]["num_processes"] == 1
    a, b = (pd.read_parquet(outputs[n] / "pairwise.per_example.parquet") for n in (1, 2))
    assert (a["score_chosen"] - b["score_chosen"]).abs().max() < 1e-6
    assert (a["score_rejected"] - b["score_rejected"]).abs().max() < 1e-6
    # Each process scores its own batches, so a score may differ in its last bits (hence the tolerance above); an
    # accuracy may then differ by the pairs whose margin is within that noise, never by more.
    margin = (a["score_chosen"] - a["score_rejected"]).abs()
    assert one["subsets"].keys() == two["subsets"].keys()
    for subset, accuracy in one["subsets"].items():
        in_subset = a["subset"] == subset if "subset" in a.columns else slice(None)
        near_ties = int((margin[in_subset] < 1e-5).sum())
        assert abs(accuracy - two["subsets"][subset]) <= near_ties / len(margin[in_subset]) + 1e-12, subset
