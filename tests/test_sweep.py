"""dogerm-sweep: one pass over the inputs, outputs identical to mergekit-yaml, resumable after a kill."""

import collections
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from click.testing import CliRunner
from mergekit.io.lazy_tensor_loader import LazyTensorLoader
from mergekit.options import MergeOptions

from dogerm_mergekit.cli import sweep as sweep_command
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.contract import checkpoint_name, lambda_of, parse_lambdas
from dogerm_mergekit.files import fast_digest_file
from dogerm_mergekit.sweep import run_sweep
from dogerm_mergekit import testing as tiny
from tests.mergeutil import config_dict, merge, rewards, tensors

OPTIONS = MergeOptions(quiet=True)


@pytest.fixture
def pair(tmp_path):
    return tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))


def _source(rm, lm, lam=0.5, **extra):
    return yaml.safe_dump(config_dict(rm, lm, lam, **extra))


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_lambda_specs():
    assert parse_lambdas("0:1:0.25") == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(parse_lambdas("0:1:0.05")) == 21 and parse_lambdas("0:1:0.05")[7] == 0.35
    assert parse_lambdas("0.3,0,1") == (0.3, 0.0, 1.0)
    assert [checkpoint_name(x) for x in (0, 0.3, 0.05, 0.125)] == [
        "lambda-0.00", "lambda-0.30", "lambda-0.05", "lambda-0.125"]
    assert [lambda_of(checkpoint_name(x)) for x in (0, 0.3, 0.125, 1e-05)] == [0, 0.3, 0.125, 1e-05]
    assert lambda_of("lambda-x") is None and lambda_of("main") is None
    for bad in ("0:1:0", "a,b", "0.1,0.1", ""):
        with pytest.raises(DogeRMConfigError, match="--lambdas"):
            parse_lambdas(bad)


@pytest.mark.parametrize("shard_size", [None, 100_000])
def test_each_checkpoint_is_bit_identical_to_mergekit_yaml(tmp_path, pair, shard_size):
    rm, lm = pair
    options = OPTIONS if shard_size is None else MergeOptions(quiet=True, out_shard_size=shard_size)
    result = run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0, 0.3, 1.0), options)
    assert result.written == ("lambda-0.00", "lambda-0.30", "lambda-1.00")
    for name in result.written:
        folder = tmp_path / "sweep" / name
        config = yaml.safe_load((folder / "mergekit_config.yml").read_text())
        reference = merge(tmp_path / f"ref-{name}", rm, lm, lam=config["models"][1]["parameters"]["lambda"],
                          options=options)
        assert _files(folder) == _files(reference), name
        if shard_size:
            assert (folder / "model.safetensors.index.json").exists()
    assert torch.equal(rewards(tmp_path / "sweep" / "lambda-0.00"), rewards(rm))
    manifest = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert manifest["lambdas"] == [0.0, 0.3, 1.0] and set(manifest["checkpoints"]) == set(result.written)
    for name, record in manifest["checkpoints"].items():
        folder = tmp_path / "sweep" / name
        assert record["files"] == {p.name: fast_digest_file(p) for p in sorted(folder.iterdir())}
        assert all(digest.startswith("xxh3-128:") for digest in record["files"].values())
    assert manifest["inputs"]["reward_model"]["files"]["model.safetensors"][0] == (rm / "model.safetensors").stat().st_size


def test_each_input_tensor_is_read_once_for_the_whole_sweep(tmp_path, pair, monkeypatch):
    reads = collections.Counter()
    original = LazyTensorLoader.get_tensor

    def counting(self, key, *args, **kwargs):
        reads[(self.index.base_path, key)] += 1
        return original(self, key, *args, **kwargs)

    monkeypatch.setattr(LazyTensorLoader, "get_tensor", counting)
    rm, lm = pair
    run_sweep(_source(rm, lm), tmp_path / "sweep", parse_lambdas("0:1:0.25"), OPTIONS)
    assert reads and set(reads.values()) == {1}
    assert len(reads) == len(tensors(rm)) + len(tensors(lm)) - 1  # every tensor but lm_head, once


def test_rerun_skips_complete_checkpoints_and_adds_new_lambdas(tmp_path, pair):
    rm, lm = pair
    run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0, 0.5), OPTIONS)
    before = (tmp_path / "sweep" / "lambda-0.50" / "model.safetensors").stat().st_mtime_ns
    again = run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0, 0.5, 0.7), OPTIONS)
    assert again.written == ("lambda-0.70",) and again.skipped == ("lambda-0.00", "lambda-0.50")
    assert (tmp_path / "sweep" / "lambda-0.50" / "model.safetensors").stat().st_mtime_ns == before


def test_changed_input_or_config_is_refused_unless_overwrite(tmp_path, pair):
    rm, lm = pair
    run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0,), OPTIONS)
    with pytest.raises(DogeRMConfigError, match="--overwrite"):
        run_sweep(_source(rm, lm, dtype="float32"), tmp_path / "sweep", (0.0,), OPTIONS)
    os.utime(lm / "model.safetensors", ns=(1, 1))
    with pytest.raises(DogeRMConfigError, match="other inputs"):
        run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0,), OPTIONS)
    assert (tmp_path / "sweep" / "lambda-0.00").is_dir()  # nothing lost by the refusals
    redone = run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0,), OPTIONS, overwrite=True)
    assert redone.written == ("lambda-0.00",)


def test_invalid_sweep_writes_nothing(tmp_path, pair):
    rm, lm = pair
    with pytest.raises(DogeRMConfigError, match="allow_extrapolation"):
        run_sweep(_source(rm, lm), tmp_path / "sweep", (0.0, 1.5), OPTIONS)
    assert not (tmp_path / "sweep").exists()


KILLER = """
import os, signal, sys
from pathlib import Path
from mergekit.options import MergeOptions
import dogerm_mergekit.writer as writer
from dogerm_mergekit.sweep import run_sweep
calls = 0
original = writer.StreamingSafetensorsWriter.claim
def dying(self, *args, **kwargs):
    global calls
    calls += 1
    if calls == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
writer.StreamingSafetensorsWriter.claim = dying
run_sweep(Path(sys.argv[1]).read_text(), Path(sys.argv[2]), (0.0, 0.4, 1.0), MergeOptions(quiet=True))
"""


@pytest.mark.parametrize("kill_at", [5, 40])
def test_a_sweep_killed_mid_write_finishes_correctly_when_rerun(tmp_path, pair, kill_at):
    rm, lm = pair
    config = tmp_path / "dogerm.yml"
    config.write_text(_source(rm, lm))
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), str(config), str(tmp_path / "sweep"),
                             str(kill_at)], capture_output=True, timeout=300)
    assert killed.returncode == -9
    assert not [p for p in (tmp_path / "sweep").iterdir() if p.name.startswith("lambda")]  # nothing looks complete
    assert [p for p in (tmp_path / "sweep").iterdir() if p.name.startswith(".lambda")]  # the partial work
    resumed = run_sweep(config.read_text(), tmp_path / "sweep", (0.0, 0.4, 1.0), OPTIONS)
    assert resumed.written == ("lambda-0.00", "lambda-0.40", "lambda-1.00")
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [
        "lambda-0.00", "lambda-0.40", "lambda-1.00", "sweep.json"]
    fresh = run_sweep(config.read_text(), tmp_path / "fresh", (0.0, 0.4, 1.0), OPTIONS)
    for name in fresh.written:
        assert _files(tmp_path / "sweep" / name) == _files(tmp_path / "fresh" / name)


def test_cli(tmp_path, pair):
    rm, lm = pair
    config = tmp_path / "dogerm.yml"
    config.write_text(_source(rm, lm))
    result = CliRunner().invoke(sweep_command, [str(config), str(tmp_path / "out"), "--lambdas", "0,1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 checkpoints" in result.output
    bad = CliRunner().invoke(sweep_command, [str(config), str(tmp_path / "out"), "--lambdas", "0:1:-1"])
    assert bad.exit_code != 0 and "--lambdas" in bad.output


def test_a_rerun_records_the_times_of_a_copied_sweep(tmp_path):
    """A copy (new modification times, same bytes) is verified by digest once, then by size and time again."""
    import shutil

    from dogerm_mergekit import contract

    rm, lm = tiny.build_pair(tmp_path / "in")
    source = yaml.safe_dump(config_dict(rm, lm))
    run_sweep(source, tmp_path / "sweep", (0.0, 0.5), MergeOptions(quiet=True))
    shutil.copytree(tmp_path / "sweep", tmp_path / "copy")  # copytree keeps times: touch them as cp -r does
    for file in (tmp_path / "copy").rglob("*.safetensors"):
        os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 10**9))
    hashed = []
    real = contract.fast_digest_file
    contract.fast_digest_file = lambda path: hashed.append(path) or real(path)
    try:
        contract.finished_points(tmp_path / "copy")
        assert len(hashed) == 2  # both checkpoints' weights hashed: their times changed
        result = run_sweep(source, tmp_path / "copy", (0.0, 0.5), MergeOptions(quiet=True))
        assert result.written == () and len(result.skipped) == 2
        hashed.clear()
        contract.finished_points(tmp_path / "copy")
        assert hashed == []  # the rerun recorded the copy's times
    finally:
        contract.fast_digest_file = real
