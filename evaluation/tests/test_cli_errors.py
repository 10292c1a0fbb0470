"""Bad input through the real `dogerm-eval` command line (a subprocess): one line `Error: ...`, exit 1 (click usage
errors: 2), no traceback unless DOGERM_DEBUG=1, and nothing written. Each case is in evaluation/README.md's errors
table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dogerm_eval.benchmarks.samples import rewardbench_rows
from evaluation.tests.manifests import write_manifest

COUNTS = {"math-prm": 2, "hep-go": 2}


def dogerm_eval(*args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DOGERM_DEBUG", None)
    if debug:
        env["DOGERM_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "dogerm_eval.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def assert_refused(result: subprocess.CompletedProcess[str], message: str, code: int = 1) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines and lines[-1].startswith("Error: ") and message in lines[-1], result.stderr[-2000:]
    if code == 1:
        assert len(lines) == 1, result.stderr[-2000:]   # one line, nothing else


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "rb.parquet"
    rewardbench_rows(COUNTS).to_parquet(path)
    return path


def case_paths(tmp_path: Path, tiny_rm_dir: Path, data: Path) -> dict[str, str]:
    (tmp_path / "a-file").write_text("not a model")
    (tmp_path / "no-config").mkdir()
    (tmp_path / "no-config" / "model.safetensors").write_bytes(b"")
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet")
    (tmp_path / "garbage.jsonl").write_text("{not json\n")
    pd.read_parquet(data).drop(columns=["rejected", "subset"]).to_parquet(tmp_path / "nocol.parquet")
    (tmp_path / "data-dir.parquet").mkdir()
    return {"model": str(tiny_rm_dir), "data": str(data), "tmp": str(tmp_path)}


CASES = [
    # (arguments, message in the error line, exit status)
    (["rewardbench", "{tmp}/missing-model", "--data", "{data}"], "model path '{tmp}/missing-model' does not exist", 1),
    (["rewardbench", "{tmp}/a-file", "--data", "{data}"], "is a file; expected a model folder", 1),
    (["rewardbench", "{tmp}/no-config", "--data", "{data}"], "{tmp}/no-config has no config.json", 1),
    (["rewardbench", "{model}", "--data", "{tmp}/missing.parquet"], "data file not found: {tmp}/missing.parquet", 1),
    (["rewardbench", "{model}", "--data", "{tmp}/data-dir.parquet"], "is a folder; give a .parquet, .json or .jsonl", 1),
    (["rewardbench", "{model}", "--data", "{tmp}/garbage.parquet"], "cannot read {tmp}/garbage.parquet as a parquet", 1),
    (["rewardbench2", "{model}", "--data", "{tmp}/garbage.jsonl"], "cannot read {tmp}/garbage.jsonl as JSON lines", 1),
    (["rewardbench", "{model}", "--data", "{tmp}/nocol.parquet"],
     "missing column(s) ['subset', 'rejected']; expected schema: RewardBench v1: id, subset", 1),
    (["pairwise", "{model}"], "give --data PATH", 1),
    (["rewardbench", "{model}", "--data", "{data}", "--subsets", "math-prm,nope"], "unknown subset(s) ['nope']", 1),
    (["rewardbench", "{model}", "--data", "{data}", "--output-dir", "{tmp}/a-file"], "is a file", 2),
    (["rewardbench", "{model}", "--data", "{data}", "--output-dir", "{tmp}/a-file/out"],
     "--output-dir {tmp}/a-file/out cannot be created: {tmp}/a-file is a file", 1),
    (["rewardbench", "{model}", "--data", "{data}", "--checkpoint-every", "0"], "--checkpoint-every", 2),
    (["rewardbench", "{model}", "--data", "{data}", "--batch-tokens", "0"], "--batch-tokens", 2),
    (["sweep", "--in-memory", "--rm", "{model}", "--domain", "{model}", "--data", "{data}", "--push-results"],
     "--push-results cannot be used with --in-memory", 1),
    (["sweep", "{tmp}/sweep", "--rm", "{model}", "--data", "{data}"], "--rm and --domain are only used with --in-memory",
     1),
    (["sweep", "{tmp}/sweep", "--benchmark", "rewardbench,nope", "--data", "{data}"], "unknown benchmark 'nope'", 1),
    (["sweep", "{tmp}/sweep", "--benchmark", "rewardbench,autoj", "--data", "{data}"], "write --data NAME=PATH", 1),
    (["sweep", "--in-memory", "--rm", "{model}", "--domain", "{tmp}/missing-lm", "--data", "{data}"],
     "does not exist", 1),
]


@pytest.mark.parametrize(("args", "message", "code"), CASES, ids=[" ".join(c[0][:1] + c[0][2:4]) for c in CASES])
def test_refused_before_loading_with_one_line(tiny_rm_dir: Path, tmp_path: Path, data: Path, args: list[str],
                                              message: str, code: int) -> None:
    values = case_paths(tmp_path, tiny_rm_dir, data)
    shutil.copytree(tiny_rm_dir, tmp_path / "sweep" / "lambda-0.00")
    write_manifest(tmp_path / "sweep", [0.0])
    out = tmp_path / "out"
    filled = [a.format(**values) for a in args]
    if "--output-dir" not in filled:
        filled += ["--output-dir", str(out)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = dogerm_eval(*filled)
    assert_refused(result, message.format(**values), code)
    assert not out.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before   # nothing written anywhere


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(tiny_rm_dir: Path, tmp_path: Path, data: Path) -> None:
    result = dogerm_eval("rewardbench", str(tiny_rm_dir), "--data", str(data), "--device", "cuda",
                         "--output-dir", str(tmp_path / "out"))
    assert_refused(result, "--device cuda: no CUDA device is available here")
    assert not (tmp_path / "out").exists()


def test_debug_env_shows_the_traceback(tmp_path: Path, data: Path) -> None:
    args = ("rewardbench", str(tmp_path / "missing"), "--data", str(data), "--output-dir", str(tmp_path / "out"))
    assert "Traceback" not in dogerm_eval(*args).stderr
    debug = dogerm_eval(*args, debug=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_an_unexpected_exception_is_one_line_too(tiny_rm_dir: Path, tmp_path: Path, data: Path) -> None:
    """An exception no check anticipated (here: a corrupt tokenizer.json) is reported as one line, exit 1."""
    model = tmp_path / "rm"
    shutil.copytree(tiny_rm_dir, model)
    (model / "tokenizer.json").write_text("{corrupt")
    result = dogerm_eval("rewardbench", str(model), "--data", str(data), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
