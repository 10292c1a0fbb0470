"""The smoke set: every module imports, every console script answers ``--help``, and a tiny merge, sweep,
evaluation and ``dogerm-train-rm`` run through their console scripts.

``make test-lowest`` runs it on the lowest versions both pyprojects allow (``tests/smoke/constraints.py``);
``make test`` runs it with the rest on the newest. It needs both packages installed with the ``train`` extra and
nothing from the repository-wide fixtures (``pytest --noconftest tests/smoke`` runs it alone).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_mergekit import testing as tiny
from tests.mergeutil import BIN, config_dict, lerp_ulps, run_cli, tensors
from tests.smoke.constraints import PYPROJECTS
from tests.test_train_rm import ROWS

PACKAGES = ("dogerm_mergekit", "dogerm_eval")
LAM = 0.3


def modules() -> list[str]:
    """Every module of both packages, found on disk (a new module joins without an edit here)."""
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names += [package, *(m.name for m in pkgutil.walk_packages(root.__path__, f"{package}."))]
    return names


def scripts() -> list[str]:
    """Every console script the pyprojects declare."""
    return [name for path in PYPROJECTS for name in tomllib.loads(path.read_text())["project"]["scripts"]]


@pytest.mark.parametrize("name", modules())
def test_every_module_imports(name: str) -> None:
    assert importlib.import_module(name).__name__ == name


def test_the_lists_are_complete() -> None:
    assert {"dogerm_mergekit.train_rm", "dogerm_eval.demo.cli", "dogerm_eval.benchmarks.humaneval"} <= set(modules())
    assert {"dogerm-train-rm", "dogerm-sweep", "dogerm-eval", "dogerm-demo"} <= set(scripts())


@pytest.mark.parametrize("script", scripts())
def test_every_console_script_answers_help(script: str) -> None:
    result = run_cli(BIN / script, "--help", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("Usage:"), result.stdout[:500]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny.build_pair(tmp_path_factory.mktemp("pair"))


def _config(tmp_path: Path, pair: tuple[Path, Path]) -> Path:
    config = tmp_path / "dogerm.yml"
    config.write_text(yaml.safe_dump(config_dict(*pair, lam=LAM)))
    return config


def test_a_tiny_merge_is_the_interpolation(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    result = run_cli(BIN / "dogerm-mergekit-yaml", _config(tmp_path, pair), tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    merged, rm, lm = tensors(tmp_path / "out"), tensors(pair[0]), tensors(pair[1])
    name = "model.layers.1.mlp.down_proj.weight"
    assert lerp_ulps(merged[name], rm[name], lm[name], LAM) <= 1.5
    assert torch.equal(merged["score.weight"], rm["score.weight"])  # the RM's head is kept


def test_a_tiny_sweep_writes_each_lambda(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    result = run_cli(BIN / "dogerm-sweep", _config(tmp_path, pair), tmp_path / "sweep", "--lambdas", "0,1", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 2 checkpoints" in result.stdout + result.stderr
    rm, lm = tensors(pair[0]), tensors(pair[1])
    name = "model.layers.0.self_attn.q_proj.weight"
    for lam in (0, 1):
        merged = tensors(tmp_path / "sweep" / f"lambda-{lam:.2f}")[name]
        assert lerp_ulps(merged, rm[name], lm[name], lam) <= 1.5


def test_a_tiny_evaluation_scores_every_pair(tmp_path: Path) -> None:
    model = tiny.build_tiny_rm(tmp_path / "rm")
    data = tmp_path / "rb.parquet"
    rewardbench_rows({"math-prm": 4, "hep-go": 3, "alpacaeval-easy": 3}).to_parquet(data)
    result = run_cli(BIN / "dogerm-eval", "rewardbench", model, "--data", data, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "rm" / "rewardbench.json").read_text())
    rows = pd.read_parquet(tmp_path / "out" / "rm" / record["per_example"])
    assert len(rows) == 10
    wins = (rows["score_chosen"] > rows["score_rejected"]).groupby(rows["subset"]).mean().to_dict()
    assert record["subsets"] == pytest.approx(wins)


def test_a_tiny_reward_model_trains(tmp_path: Path) -> None:
    base = tiny.build_tiny_lm(tmp_path / "base")
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    result = run_cli(BIN / "dogerm-train-rm", base, "--data", data, "--output-dir", tmp_path / "rm", "--max-steps", "4",
                     "--eval-fraction", "0", "--learning_rate", "1e-3", "--bf16", "false", "--lora",
                     "--lora-target-modules", "all-linear", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert model.config.num_labels == 1 and model.config.dogerm_train_rm["pairs"] == len(ROWS)
    weights, before = load_file(tmp_path / "rm" / "model.safetensors"), load_file(base / "model.safetensors")
    assert not any("lora" in key for key in weights)  # the adapter is merged into a plain model
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[name], before[name])  # the backbone learned
