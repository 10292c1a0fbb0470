"""resolve_model: local folders, Hub ids with @revision (from the HF cache), and the errors raised before scoring."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, constants
from transformers import LlamaConfig, LlamaForCausalLM

from dogerm_eval.errors import ModelError
from dogerm_eval.models import ResolvedModel, parse_hub_ref, resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_local_folder_resolves_with_folder_name_as_slug(tiny_rm_dir: Path) -> None:
    resolved = resolve_model(str(tiny_rm_dir))
    assert resolved.path == tiny_rm_dir.resolve()
    assert resolved.ref == str(tiny_rm_dir)
    assert (resolved.repo_id, resolved.revision, resolved.commit) == (None, None, None)
    assert resolved.slug == tiny_rm_dir.name


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("org/name@lambda-0.30", ("org/name", "lambda-0.30")),
        ("org/name", ("org/name", None)),
        ("gpt2", ("gpt2", None)),
        ("org/name@0123abc", ("org/name", "0123abc")),
    ],
)
def test_parse_hub_ref(ref: str, expected: tuple[str, str | None]) -> None:
    assert parse_hub_ref(ref) == expected


@pytest.mark.parametrize("ref", ["org/name@", "bad id!", "org/na me@main"])
def test_parse_hub_ref_rejects_malformed(ref: str) -> None:
    with pytest.raises(ModelError):
        parse_hub_ref(ref)


def test_slug_of_hub_models() -> None:
    path = Path("/cache/snap")
    resolved = ResolvedModel(path, "org/name@lambda-0.30", "org/name", "lambda-0.30", COMMIT)
    assert resolved.slug == "org--name@lambda-0.30"
    assert ResolvedModel(path, "org/name", "org/name", None, COMMIT).slug == "org--name"
    assert ResolvedModel(path, "o/n@refs/pr/1", "o/n", "refs/pr/1", COMMIT).slug == "o--n@refs--pr--1"


@pytest.mark.parametrize("ref", ["./no/such/folder", "/no/such/folder", "a/b/c"])
def test_missing_local_path_is_a_clear_error(ref: str) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(ref)


def test_file_instead_of_folder(tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(str(file))


def test_more_than_one_label_is_rejected(make_tiny_rm: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="2 labels"):
        resolve_model(str(make_tiny_rm(num_labels=2)))


def test_model_without_classification_head_is_rejected(tmp_path: Path) -> None:
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="LlamaForCausalLM"):
        resolve_model(str(tmp_path))


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF hub cache with offline mode on (the env vars are read at import, so patch the constants)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_id_not_in_cache_offline_is_a_clear_error(offline_cache: Path) -> None:
    with pytest.raises(ModelError, match=r"org/name@lambda-0\.30 is not in the Hugging Face cache .* HF_HUB_OFFLINE is "
                                         r"set: run `hf download org/name --revision lambda-0\.30`"):
        resolve_model("org/name@lambda-0.30")


def test_hub_id_with_revision_resolves_from_cache_offline(offline_cache: Path, tiny_rm_dir: Path) -> None:
    # The documented HF cache layout: models--org--name/{refs/<branch> -> commit, snapshots/<commit>/files}.
    repo = offline_cache / "models--org--name"
    shutil.copytree(tiny_rm_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "lambda-0.30").write_text(COMMIT)
    resolved = resolve_model("org/name@lambda-0.30")
    assert resolved.path == repo / "snapshots" / COMMIT
    assert (resolved.repo_id, resolved.revision, resolved.commit) == ("org/name", "lambda-0.30", COMMIT)
    assert resolved.slug == "org--name@lambda-0.30"
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        resolve_model("org/name@other-branch")


# The Hub tests use the repository's local Hub server (conftest.py at the repository root, tests/hub_server/).


def test_hub_branch_resolves_from_the_local_hub(hub_client: HfApi, tiny_rm_dir: Path) -> None:
    repo_id = f"{hub_client.whoami()['name']}/tiny-rm"
    hub_client.create_repo(repo_id)
    hub_client.create_branch(repo_id, branch="lambda-0.30")
    hub_client.upload_folder(repo_id=repo_id, folder_path=tiny_rm_dir, revision="lambda-0.30")
    hub_client.upload_file(path_or_fileobj=b"pickled duplicate of the weights", path_in_repo="pytorch_model.bin",
                           repo_id=repo_id, revision="lambda-0.30")
    branches = hub_client.list_repo_refs(repo_id).branches
    commit = next(ref.target_commit for ref in branches if ref.name == "lambda-0.30")

    resolved = resolve_model(f"{repo_id}@lambda-0.30")
    assert (resolved.repo_id, resolved.revision, resolved.commit) == (repo_id, "lambda-0.30", commit)
    assert resolved.slug == f"{repo_id.replace('/', '--')}@lambda-0.30"
    for file in tiny_rm_dir.iterdir():
        assert (resolved.path / file.name).read_bytes() == file.read_bytes()
    assert not (resolved.path / "pytorch_model.bin").exists()  # safetensors present: pickles skipped

    with pytest.raises(ModelError, match="revision 'lambda-0.99' does not exist"):
        resolve_model(f"{repo_id}@lambda-0.99")
    with pytest.raises(ModelError, match="not found"):
        resolve_model(f"{hub_client.whoami()['name']}/no-such-rm")
