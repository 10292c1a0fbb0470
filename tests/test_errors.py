"""Bad input and faults, through the real command lines: one line naming the problem and the fix, before anything
is written; nothing complete is lost; a rerun finishes the job."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from dogerm_mergekit import testing as tiny
from tests.mergeutil import config_dict
from tests.mergeutil import one_line_error as _one_line_error
from tests.mergeutil import run_cli as _run

BIN = Path(sys.executable).parent


@pytest.fixture
def pair(tmp_path):
    return tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))


def _config(tmp_path, rm, lm, name="dogerm.yml", **extra):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**config_dict(rm, lm), **extra}))
    return path


def test_swapped_roles_are_named(tmp_path, pair):
    rm, lm = pair
    config = tmp_path / "swapped.yml"
    config.write_text(yaml.safe_dump({"merge_method": "dogerm", "base_model": str(lm),
                                      "models": [{"model": str(rm), "parameters": {"lambda": 0.3}}]}))
    result = _run(BIN / "mergekit-yaml", config, tmp_path / "out")
    _one_line_error(result, "swap", str(lm), "score.weight")
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused_and_kept(tmp_path, pair):
    rm, lm = pair
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    for command in (["mergekit-yaml"], ["dogerm-sweep"]):
        result = _run(BIN / command[0], _config(tmp_path, rm, lm), target)
        _one_line_error(result, str(target), "is a file")
        assert target.read_text() == "keep me"


def test_non_empty_unrelated_output_folder_is_refused(tmp_path, pair):
    rm, lm = pair
    target = tmp_path / "notes"
    target.mkdir()
    (target / "thesis.tex").write_text("draft")
    for command in ("mergekit-yaml", "dogerm-sweep"):
        _one_line_error(_run(BIN / command, _config(tmp_path, rm, lm), target), "non-empty folder")
        assert [p.name for p in target.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors_is_named(tmp_path, pair, damage):
    rm, lm = pair
    weights = lm / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 64)
    result = _run(BIN / "dogerm-sweep", _config(tmp_path, rm, lm), tmp_path / "out", "--lambdas", "0,1")
    line = _one_line_error(result, str(weights), "re-download or re-save")
    assert ("truncated" in line) == (damage == "truncate")
    assert not (tmp_path / "out").exists()


def test_missing_local_path_is_named(tmp_path, pair):
    rm, _ = pair
    missing = tmp_path / "no" / "such" / "model"
    result = _run(BIN / "mergekit-yaml", _config(tmp_path, rm, missing), tmp_path / "out")
    _one_line_error(result, str(missing), "does not exist")


def test_debug_shows_the_traceback(tmp_path, pair):
    rm, _ = pair
    result = _run(BIN / "mergekit-yaml", _config(tmp_path, rm, tmp_path / "missing"), tmp_path / "out",
                  env={"DOGERM_DEBUG": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr and "CheckpointError" in result.stderr


def test_a_second_run_on_the_same_output_is_refused(tmp_path, pair):
    rm, lm = pair
    out = tmp_path / "sweep"
    with FileLock(tmp_path / ".sweep.lock"):  # as a running dogerm-sweep holds it
        result = _run(BIN / "dogerm-sweep", _config(tmp_path, rm, lm), out, "--lambdas", "0,1")
    _one_line_error(result, "being written by another run")
    assert not out.exists()
    done = _run(BIN / "dogerm-sweep", _config(tmp_path, rm, lm), out, "--lambdas", "0,1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"{out}: wrote 2 checkpoints, 0 already complete"]  # one line of result
    assert "arning" not in done.stderr and "deprecated" not in done.stderr, done.stderr[-3000:]


def test_a_full_disk_loses_nothing_complete_and_a_rerun_finishes(tmp_path, pair):
    rm, lm = pair
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        out = disk / "sweep"
        config = _config(tmp_path, rm, lm)
        assert _run(BIN / "dogerm-sweep", config, out, "--lambdas", "0", "--quiet").returncode == 0
        first = (out / "lambda-0.00" / "model.safetensors").read_bytes()
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * (free - len(first) // 2))  # room for half a checkpoint
        result = _run(BIN / "dogerm-sweep", config, out, "--lambdas", "0,0.5,1")
        _one_line_error(result, "free space", "rerun the same command")
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["lambda-0.00", "sweep.json"]
        assert (out / "lambda-0.00" / "model.safetensors").read_bytes() == first
        filler.unlink()
        done = _run(BIN / "dogerm-sweep", config, out, "--lambdas", "0,0.5,1")
        assert done.returncode == 0 and "wrote 2 checkpoints, 1 already complete" in done.stdout
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_push_refuses_a_bad_repo_id_or_an_unfinished_sweep_before_any_request(tmp_path, pair):
    rm, lm = pair
    assert _run(BIN / "dogerm-sweep", _config(tmp_path, rm, lm), tmp_path / "sweep", "--lambdas", "0").returncode == 0
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    _one_line_error(_run(BIN / "dogerm-push", tmp_path / "sweep", "not a/repo id", env=offline),
                    "not a Hub repo id", "ORG/NAME")
    (tmp_path / "empty").mkdir()
    _one_line_error(_run(BIN / "dogerm-push", tmp_path / "empty", "org/name", env=offline), "run dogerm-sweep first")
    (tmp_path / "table.json").write_text("[1, 2]")
    _one_line_error(_run(BIN / "dogerm-push", tmp_path / "sweep", "org/name", "--results", tmp_path / "table.json",
                         env=offline), "metrics.json")


KILL_DURING_WRITE = """
import os, signal, sys
import dogerm_mergekit.writer as writer
original = writer.StreamingSafetensorsWriter.claim
calls = [0]
def dying(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == 10:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
writer.StreamingSafetensorsWriter.claim = dying
from mergekit.scripts.run_yaml import main
main(sys.argv[1:])
"""


def test_a_merge_killed_mid_write_leaves_the_earlier_output_and_a_rerun_replaces_it(tmp_path, pair):
    rm, lm = pair
    out = tmp_path / "out"
    assert _run(BIN / "mergekit-yaml", _config(tmp_path, rm, lm), out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    config = _config(tmp_path, rm, lm, name="other.yml", dtype="float32")
    killed = _run(sys.executable, "-c", KILL_DURING_WRITE, config, out)
    assert killed.returncode == -9
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # what was complete stays intact
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]  # the killed run's partial folder
    assert _run(BIN / "mergekit-yaml", config, out).returncode == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]  # cleaned by the rerun
    assert "dtype: float32" in (out / "mergekit_config.yml").read_text()
