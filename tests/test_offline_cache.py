"""Offline from the Hugging Face cache: models and sweeps by Hub id with HF_HUB_OFFLINE=1, after downloads that
huggingface_hub itself made from the local Hub server (``snapshot_download``, ``hf download``, an earlier merge)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import constants, snapshot_download
from mergekit.io.tasks import LoaderCache

from dogerm_mergekit.contract import finished_checkpoints, load_manifest
from dogerm_mergekit.errors import CheckpointError, UnsafePathError
from dogerm_mergekit.hubcache import cached_commit
from dogerm_mergekit.sweep import run_sweep
from dogerm_mergekit.testing import build_pair
from tests.hub_server import HUB_USER
from tests.mergeutil import BIN, OPTIONS, config_dict, merge, one_line_error, run_cli, tensors

RM, LM = f"{HUB_USER}/rm", f"{HUB_USER}/lm"


@pytest.fixture(autouse=True)
def fresh_loaders(monkeypatch):
    """mergekit's loader cache is per process and keyed by id: each test's Hub server and cache are new."""
    monkeypatch.setattr(LoaderCache, "loaders", {})


@pytest.fixture
def pair(tmp_path):
    return build_pair(tmp_path / "pair")


@pytest.fixture
def hub_pair(hub_client, pair):
    """The pair uploaded as two Hub repos; returns their commits."""
    commits = {}
    for repo, folder in ((RM, pair[0]), (LM, pair[1])):
        hub_client.create_repo(repo)
        commits[repo] = hub_client.upload_folder(repo_id=repo, folder_path=folder).oid
    return commits


def _offline(monkeypatch) -> None:
    """HF_HUB_OFFLINE=1 as the library reads it (its constants are read at import) and for subprocesses."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _download(how: str, tmp_path: Path) -> None:
    """Fill the cache (HF_HOME of hub_env) with both models the way ``how`` does."""
    if how == "snapshot_download":
        for repo in (RM, LM):
            snapshot_download(repo)
    elif how == "hf download":
        for repo in (RM, LM):
            result = run_cli(BIN / "hf", "download", repo)
            assert result.returncode == 0, result.stderr[-2000:]
    else:  # an earlier merge online: mergekit downloads only *.json, tokenizer.model and the weights
        merge(tmp_path / "online", RM, LM)


def _source(rm: str, lm: str, lam: float = 0.3) -> str:
    return yaml.safe_dump(config_dict(rm, lm, lam))


@pytest.mark.parametrize("how", ["snapshot_download", "hf download", "earlier merge"])
def test_merge_by_hub_id_offline_reads_the_cache(hub_pair, pair, tmp_path, monkeypatch, how):
    _download(how, tmp_path)
    expected = tensors(merge(tmp_path / "local", *pair))
    _offline(monkeypatch)
    merged = tensors(merge(tmp_path / "offline", RM, LM))
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[name], expected[name]) for name in expected)
    for source in ([tmp_path / "online"] if how == "earlier merge" else []) + [tmp_path / "offline"]:
        # mergekit's own download skipped the chat template, and the merged model lost it
        assert (source / "chat_template.jinja").read_bytes() == (pair[0] / "chat_template.jinja").read_bytes()
    card = (tmp_path / "offline" / "README.md").read_text()
    assert f"`{RM}` at `{hub_pair[RM]}`" in card and f"`{LM}` at `{hub_pair[LM]}`" in card


def test_mergekit_yaml_offline_and_the_missing_download_named(hub_pair, tmp_path, monkeypatch):
    config = tmp_path / "merge.yml"
    config.write_text(_source(RM, LM))
    _offline(monkeypatch)
    refused = run_cli(BIN / "mergekit-yaml", config, tmp_path / "out")
    one_line_error(refused, f"{RM} is not in the Hugging Face cache", f"`hf download {RM}`")
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert run_cli(BIN / "hf", "download", RM).returncode == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refused = run_cli(BIN / "mergekit-yaml", config, tmp_path / "out")
    one_line_error(refused, f"{LM} is not in the Hugging Face cache", f"`hf download {LM}`")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert run_cli(BIN / "hf", "download", LM).returncode == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = run_cli(BIN / "mergekit-yaml", config, tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_a_cached_snapshot_missing_a_shard_is_named(hub_pair, tmp_path, monkeypatch):
    folder = Path(snapshot_download(RM))
    (folder / "model.safetensors").unlink()  # a download interrupted before the weights
    snapshot_download(LM)
    _offline(monkeypatch)
    with pytest.raises(CheckpointError, match=rf"cached snapshot of {RM} .* lacks model.safetensors.*hf download {RM}"):
        merge(tmp_path / "out", RM, LM)


def test_a_revision_asked_for_is_read_offline(hub_client, pair, tmp_path, monkeypatch):
    hub_client.create_repo(RM)
    hub_client.create_branch(RM, branch="v1")
    commit = hub_client.upload_folder(repo_id=RM, folder_path=pair[0], revision="v1").oid
    hub_client.create_repo(LM)
    hub_client.upload_folder(repo_id=LM, folder_path=pair[1])
    snapshot_download(RM, revision="v1")
    snapshot_download(LM)
    _offline(monkeypatch)
    out = merge(tmp_path / "out", f"{RM}@v1", LM)
    assert f"`{RM}@v1` at `{commit}`" in (out / "README.md").read_text()
    with pytest.raises(CheckpointError, match=rf"{RM}@v2 is not in the Hugging Face cache.*hf download {RM} --revision v2"):
        merge(tmp_path / "out2", f"{RM}@v2", LM)


def test_a_sweep_by_hub_id_records_each_commit(hub_pair, tmp_path, monkeypatch):
    run_sweep(_source(RM, LM), tmp_path / "sweep", [0.0, 0.5], OPTIONS)
    inputs = load_manifest(tmp_path / "sweep").inputs
    assert inputs["reward_model"]["commit"] == hub_pair[RM] and inputs["domain_model"]["commit"] == hub_pair[LM]
    assert inputs["reward_model"]["revision"] is None  # none was asked for
    _offline(monkeypatch)
    result = run_sweep(_source(RM, LM), tmp_path / "sweep", [0.0, 0.5, 1.0], OPTIONS)  # resumes offline
    assert result.written == ("lambda-1.00",) and set(result.skipped) == {"lambda-0.00", "lambda-0.50"}


def test_an_earlier_manifest_without_commits_resumes(hub_pair, tmp_path):
    run_sweep(_source(RM, LM), tmp_path / "sweep", [0.0], OPTIONS)
    manifest = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    for entry in manifest["inputs"].values():
        del entry["commit"]
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(manifest))
    assert run_sweep(_source(RM, LM), tmp_path / "sweep", [0.0], OPTIONS).skipped == ("lambda-0.00",)


# ------------------------------------------------------------------------------------ a sweep inside the cache
@pytest.fixture
def hub_sweep(pair, hub_client, tmp_path):
    """A finished sweep of local folders, uploaded as one Hub repo (the folder as it is)."""
    run_sweep(_source(str(pair[0]), str(pair[1])), tmp_path / "sweep", [0.0, 0.5], OPTIONS)
    repo = f"{HUB_USER}/sweep"
    hub_client.create_repo(repo)
    hub_client.upload_folder(repo_id=repo, folder_path=tmp_path / "sweep")
    return repo


@pytest.mark.parametrize("how", ["cache", "local_dir", "hf download"])
def test_a_sweep_downloaded_by_huggingface_hub_is_read_as_it_is(hub_sweep, tmp_path, how):
    if how == "cache":
        folder = Path(snapshot_download(hub_sweep))
        assert (folder / "sweep.json").is_symlink()  # the cache's layout: links into blobs/
    elif how == "local_dir":
        folder = Path(snapshot_download(hub_sweep, local_dir=tmp_path / "copy"))
    else:
        result = run_cli(BIN / "hf", "download", hub_sweep)
        assert result.returncode == 0, result.stderr[-2000:]
        folder = Path(result.stdout.strip().splitlines()[-1].rpartition("path:")[2].strip())
    found = finished_checkpoints(folder)
    assert [(lam, path.name) for lam, path, _ in found] == [(0.0, "lambda-0.00"), (0.5, "lambda-0.50")]
    assert cached_commit(folder) == (folder.name if how != "local_dir" else None)


def test_links_leaving_the_cache_repo_are_still_refused(hub_sweep, tmp_path):
    folder = Path(snapshot_download(hub_sweep))
    outside = tmp_path / "elsewhere.json"
    outside.write_text((folder / "sweep.json").read_text())
    (folder / "sweep.json").unlink()
    os.symlink(outside, folder / "sweep.json")
    with pytest.raises(UnsafePathError, match=r"out of the sweep: replace it with a copy of that file \(cp -L"):
        load_manifest(folder)
    (folder / "sweep.json").unlink()
    os.symlink(os.path.relpath(target := outside.with_name("manifest.json"), folder), folder / "sweep.json")
    target.write_text(outside.read_text())
    with pytest.raises(UnsafePathError, match="out of the sweep"):
        load_manifest(folder)


def test_a_checkpoint_file_linked_out_of_the_cache_repo_is_refused(hub_sweep, tmp_path):
    folder = Path(snapshot_download(hub_sweep))
    weights = folder / "lambda-0.50" / "model.safetensors"
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(weights.read_bytes())
    weights.unlink()
    os.symlink(copy, weights)
    with pytest.raises(UnsafePathError, match=r"links are not followed out of a sweep; replace it with a copy"):
        finished_checkpoints(folder)


def test_mergekit_accepts_a_model_inside_the_cache_by_path(hub_pair, tmp_path):
    rm, lm = Path(snapshot_download(RM)), Path(snapshot_download(LM))
    merged = tensors(merge(tmp_path / "out", rm, lm))
    assert merged and all(torch.isfinite(t).all() for t in merged.values())
