"""Run dogerm merges in-process for the tests and read their outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from dogerm_mergekit.merge import run_dogerm_merge

OPTIONS = MergeOptions(quiet=True)
BIN = Path(sys.executable).parent


def run_cli(*args: Any, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """A console script (``BIN / name``) or any command, in a subprocess, text output captured."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=environment, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 1 (2 for usage errors), no traceback, and the last stderr line is an ``Error:`` line with every
    needle; returns that line."""
    assert result.returncode in (1, 2), result.stderr[-3000:]  # 2: a usage error found by click itself
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.stderr[-3000:]
    for needle in needles:
        assert needle in last, last
    return last


def config_dict(rm: Path, lm: Path, lam: Any = 0.3, **extra: Any) -> dict:
    return {
        "merge_method": "dogerm",
        "base_model": str(rm),
        "models": [{"model": str(rm)}, {"model": str(lm), "parameters": {"lambda": lam}}],
        **extra,
    }


def merge(out: Path, rm: Path, lm: Path, lam: Any = 0.3, options: MergeOptions = OPTIONS, **extra: Any) -> Path:
    source = yaml.safe_dump(config_dict(rm, lm, lam, **extra))
    run_dogerm_merge(MergeConfiguration.model_validate(yaml.safe_load(source)), out, options, source)
    return out


def tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def rewards(path: Path) -> torch.Tensor:
    """Rewards of a few fixed token sequences, padded on the right with the pad id."""
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2], [1, 7, 3, 2, 2], [1, 400, 998, 4, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def ulps(actual: torch.Tensor, expected: torch.Tensor, scale: torch.Tensor) -> float:
    """Largest error of ``actual`` against ``expected``, in fp32 units in the last place of ``scale``."""
    scale = scale.float().abs()
    spacing = torch.nextafter(scale, torch.tensor(float("inf"))) - scale
    return ((actual.double() - expected.double()).abs() / spacing.double()).max().item()


def lerp_ulps(actual: torch.Tensor, rm: torch.Tensor, lm: torch.Tensor, lam: float) -> float:
    """Error of a merged tensor against the exact (fp64) DogeRM interpolation, in ulps of the inputs' scale."""
    exact = (1 - lam) * rm.double() + lam * lm.double()
    return ulps(actual, exact, torch.maximum(rm.abs(), lm.abs()))
