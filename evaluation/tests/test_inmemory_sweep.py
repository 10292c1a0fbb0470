"""`dogerm-eval sweep --in-memory` gives the same scores as evaluating the checkpoints dogerm-sweep writes."""

import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mergekit.options import MergeOptions

from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_eval.cli import main
from dogerm_mergekit.sweep import run_sweep
from dogerm_mergekit import testing as tiny
from tests.mergeutil import config_dict


@pytest.fixture
def pair(tmp_path):
    return tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))


def _rows(out, slug):
    """The per-example rows of the member's one RewardBench result (a run on --subsets: rewardbench@<subsets>)."""
    [path] = (out / slug).glob("rewardbench@*.per_example.parquet")
    return pd.read_parquet(path).sort_values("id").reset_index(drop=True)


def test_in_memory_sweep_equals_written_checkpoints(tmp_path, pair):
    rm, lm = pair
    data = tmp_path / "rb.parquet"
    rewardbench_rows({"math-prm": 6, "hep-python": 4, "alpacaeval-easy": 4}, prefix="w5 w9 ").to_parquet(data)
    run_sweep(yaml.safe_dump(config_dict(rm, lm)), tmp_path / "sweep", (0.0, 0.5, 1.0), MergeOptions(quiet=True))
    common = ["--benchmark", "rewardbench", "--data", str(data), "--subsets", "math-prm,hep-python,alpacaeval-easy",
              "--dtype", "float32"]
    written = CliRunner().invoke(main, ["sweep", str(tmp_path / "sweep"), "--output-dir", str(tmp_path / "a"), *common])
    assert written.exit_code == 0, written.output
    memory = CliRunner().invoke(main, ["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm), "--lambdas",
                                       "0,0.5,1", "--output-dir", str(tmp_path / "b"), *common])
    assert memory.exit_code == 0, memory.output
    for name in ("lambda-0.00", "lambda-0.50", "lambda-1.00"):
        on_disk, in_memory = _rows(tmp_path / "a", name), _rows(tmp_path / "b", f"in-memory--rm+lm@{name}")
        assert (on_disk["score_chosen"] == in_memory["score_chosen"]).all(), name
        assert (on_disk["score_rejected"] == in_memory["score_rejected"]).all(), name
    a, b = pd.read_csv(tmp_path / "a" / "sweep.csv"), pd.read_csv(tmp_path / "b" / "sweep.csv")
    assert a.equals(b) and list(a["lambda"]) == [0.0, 0.5, 1.0]
    first = json.loads((tmp_path / "b" / "in-memory--rm+lm@lambda-0.00"
                        / "rewardbench@alpacaeval-easy+hep-python+math-prm.json").read_text())
    assert first["model"] == "in-memory/rm+lm" and first["revision"].startswith("merge:")


def test_in_memory_needs_both_models(tmp_path, pair):
    rm, _ = pair
    result = CliRunner().invoke(main, ["sweep", "--in-memory", "--rm", str(rm)])
    assert result.exit_code != 0 and "--domain" in result.output


def test_in_memory_grid_of_two_domains_equals_a_written_grid(tmp_path):
    """Several --domain with --grid: each vector's scores equal those of the checkpoint dogerm-sweep --grid writes."""
    rm, lm1 = tiny.build_pair(tmp_path / "one", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    _, lm2 = tiny.build_pair(tmp_path / "two", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)), seed=4)
    lm2 = lm2.rename(lm2.parent / "code")
    data = tmp_path / "rb.parquet"
    rewardbench_rows({"math-prm": 6, "hep-python": 4}, prefix="w5 w9 ").to_parquet(data)
    raw = config_dict(rm, lm1)
    raw["models"].append({"model": str(lm2), "parameters": {"lambda": 0.0}})
    vectors = [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5)]
    run_sweep(yaml.safe_dump(raw), tmp_path / "sweep", vectors, MergeOptions(quiet=True))
    common = ["--benchmark", "rewardbench", "--data", str(data), "--subsets", "math-prm,hep-python", "--dtype", "float32"]
    memory = CliRunner().invoke(main, ["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm1), "--domain",
                                       str(lm2), "--grid", "lambda[lm]=0,0.5", "--grid", "lambda[code]=0:0.5:0.5",
                                       "--output-dir", str(tmp_path / "b"), *common])
    assert memory.exit_code == 0, memory.output
    for first, second in vectors:
        name = f"lambda-{first:.2f}_{second:.2f}"
        written = CliRunner().invoke(main, ["rewardbench", str(tmp_path / "sweep" / name), "--output-dir",
                                            str(tmp_path / "a"), *common[2:]])
        assert written.exit_code == 0, written.output
        on_disk, in_memory = _rows(tmp_path / "a", name), _rows(tmp_path / "b", f"in-memory--rm+lm+code@{name}")
        assert (on_disk["score_chosen"] == in_memory["score_chosen"]).all(), name
    table = pd.read_csv(tmp_path / "b" / "sweep.csv")
    assert [c for c in table.columns if c.startswith("lambda")] == [f"lambda[{lm1}]", f"lambda[{lm2}]"]
    assert len(table) == 4
    both = CliRunner().invoke(main, ["sweep", "--in-memory", "--rm", str(rm), "--domain", str(lm1), "--domain",
                                     str(lm2), "--lambdas", "0,1", "--output-dir", str(tmp_path / "c"), *common])
    assert both.exit_code != 0 and "--grid" in both.output
