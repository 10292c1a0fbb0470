"""dogerm-eval offline (HF_HUB_OFFLINE=1) from a Hugging Face cache that huggingface_hub itself filled from the
repository's local Hub server: whole downloads, partial ones (what an earlier merge fetched), sweeps by Hub id."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, snapshot_download

from dogerm_eval.errors import ModelError
from dogerm_eval.models import resolve_model
from dogerm_eval.sweep import discover_sweep
from tests.hub_server import HUB_USER

REPO = f"{HUB_USER}/tiny-rm"


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: patched as the library reads it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hub_rm(hub_client: HfApi, tiny_rm_dir: Path) -> str:
    hub_client.create_repo(REPO)
    hub_client.upload_file(path_or_fileobj=b"# a card", path_in_repo="README.md", repo_id=REPO)
    return hub_client.upload_folder(repo_id=REPO, folder_path=tiny_rm_dir).oid


def test_a_model_an_earlier_merge_cached_is_read_offline(hub_rm: str, tiny_rm_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # what a merge by Hub id downloads: config, weights and tokenizer files, not the card
    snapshot_download(REPO, allow_patterns=["*.json", "*.jinja", "*.safetensors"])
    _offline(monkeypatch)
    resolved = resolve_model(REPO)
    assert (resolved.repo_id, resolved.revision, resolved.commit) == (REPO, None, hub_rm)
    assert not (resolved.path / "README.md").exists()
    assert (resolved.path / "model.safetensors").read_bytes() == (tiny_rm_dir / "model.safetensors").read_bytes()


def test_a_missing_tokenizer_file_is_named_with_its_download(hub_rm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot_download(REPO, allow_patterns=["*.json", "*.safetensors"])  # without chat_template.jinja
    _offline(monkeypatch)
    with pytest.raises(ModelError, match=rf"cached snapshot of {REPO} .* lacks chat_template.jinja .*"
                                         rf"run `hf download {REPO}`"):
        resolve_model(REPO)


def test_a_model_never_downloaded_is_named_with_its_download(hub_rm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    with pytest.raises(ModelError, match=rf"{REPO} is not in the Hugging Face cache .*`hf download {REPO}`"):
        resolve_model(REPO)


def test_a_sweep_by_hub_id_offline_lists_its_cached_branches(hub_client: HfApi, tiny_rm_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo = f"{HUB_USER}/sweep"
    hub_client.create_repo(repo)
    commits = {}
    for branch in ("lambda-0.00", "lambda-0.50", "lambda-1.00"):
        hub_client.create_branch(repo, branch=branch)
        commits[branch] = hub_client.upload_folder(repo_id=repo, folder_path=tiny_rm_dir, revision=branch,
                                                   commit_message=branch).oid
    for branch in ("lambda-0.00", "lambda-0.50"):  # the third never downloaded
        snapshot_download(repo, revision=branch)
    _offline(monkeypatch)
    members = discover_sweep(repo)
    assert members == [({"lambda": 0.0}, f"{repo}@lambda-0.00"), ({"lambda": 0.5}, f"{repo}@lambda-0.50")]
    assert resolve_model(members[1][1]).commit == commits["lambda-0.50"]
    with pytest.raises(ModelError, match=rf"nor in the Hugging Face cache.*`hf download {HUB_USER}/other --revision"):
        discover_sweep(f"{HUB_USER}/other")
