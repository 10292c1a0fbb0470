"""The LocalHub test server, driven by the real huggingface_hub client and transformers.

Every transfer test runs twice: ``lfs`` (HF_HUB_DISABLE_XET=1: preupload, LFS batch + PUT, plain HTTP downloads)
and ``xet`` (hf_xet writes xorbs/shards to the server's local CAS folder; downloads go through hf_xet).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import hf_xet

import pytest
import torch
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.utils import get_session
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

from tests.hub_server import DEFAULT_GITATTRIBUTES, HUB_USER, LocalHub

# huggingface_hub's own LFS PUT passes a file object as `data=` to httpx2, which warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

REPO_ID = f"{HUB_USER}/tiny-dogerm"
BRANCH = "lambda-0.30"


@pytest.fixture(params=[False, True], ids=["lfs", "xet"])
def hub_xet(request: pytest.FixtureRequest) -> bool:
    """Run the tests of this module with the client's LFS path and with its Xet path."""
    return request.param


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama reward model folder: config, ~580 KB safetensors, tokenizer files, card with YAML metadata."""
    folder = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, num_labels=1, pad_token_id=0,
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(998)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(folder)
    card_data = ModelCardData(
        base_model=["org/rm", "org/lm"], tags=["dogerm", "merge"], library_name="transformers",
        pipeline_tag="text-classification",
    )
    ModelCard.from_template(card_data, model_description="Tiny merged reward model.").save(folder / "README.md")
    return folder


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _push(api: HfApi, folder: Path, revision: str) -> str:
    api.create_repo(REPO_ID, exist_ok=True)
    if revision != "main":
        api.create_branch(REPO_ID, branch=revision, exist_ok=True)
    return api.upload_folder(repo_id=REPO_ID, folder_path=folder, revision=revision).oid


def test_create_repo_conflict_and_exist_ok(hub_server: LocalHub) -> None:
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    url = api.create_repo(REPO_ID)
    assert url.repo_id == REPO_ID
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO_ID)
    assert err.value.response.status_code == 409
    assert api.create_repo(REPO_ID, exist_ok=True).repo_id == REPO_ID
    assert hub_server.files(REPO_ID) == {".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
    api.delete_repo(REPO_ID)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(REPO_ID)


def test_push_main_and_branch_round_trip(hub_client: HfApi, hub_env: LocalHub, hub_xet: bool, model_dir: Path) -> None:
    local = _folder_files(model_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= set(local)
    assert 300_000 < len(local["model.safetensors"]) < 1_000_000

    main_oid = _push(hub_client, model_dir, "main")
    branch_oid = _push(hub_client, model_dir, BRANCH)

    expected = {**local, ".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
    assert hub_env.files(REPO_ID, "main") == expected
    assert hub_env.files(REPO_ID, BRANCH) == expected
    assert hub_env.commits(REPO_ID, "main")[0].oid == main_oid
    assert hub_env.commits(REPO_ID, BRANCH)[0].oid == branch_oid
    tree = hub_env.tree(REPO_ID, BRANCH)
    assert tree["model.safetensors"].lfs and not tree["config.json"].lfs and not tree["tokenizer.json"].lfs
    if hub_xet:  # the Xet hash the server read from hf_xet's shards matches hf_xet's own hashing of the file
        (info,) = hf_xet.hash_files([str(model_dir / "model.safetensors")])
        assert tree["model.safetensors"].xet_hash == info.hash
    else:
        assert all(entry.xet_hash is None for entry in tree.values())
    paths = {path for _, path in hub_env.requests}
    assert any(p.endswith("/xet-write-token/main") for p in paths) == hub_xet
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths) != hub_xet

    snapshot = Path(snapshot_download(REPO_ID, revision=BRANCH))
    assert _folder_files(snapshot) == expected
    for filename in ("model.safetensors", "config.json", "README.md"):
        path = hf_hub_download(REPO_ID, filename, revision=BRANCH, force_download=True)
        assert Path(path).read_bytes() == local[filename]
    if hub_xet:  # the weights came through hf_xet from the local CAS, never through GET /resolve
        assert ("GET", f"/api/models/{REPO_ID}/xet-read-token/{branch_oid}") in hub_env.requests
        assert not any(m == "GET" and p.endswith("/model.safetensors") for m, p in hub_env.requests)


def test_from_pretrained_revision_loads_same_weights(hub_client: HfApi, hub_env: LocalHub, model_dir: Path) -> None:
    _push(hub_client, model_dir, BRANCH)
    model = AutoModelForSequenceClassification.from_pretrained(REPO_ID, revision=BRANCH)
    saved = load_file(model_dir / "model.safetensors")
    state = model.state_dict()
    assert set(saved) <= set(state)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert model.config.num_labels == 1
    tokenizer = AutoTokenizer.from_pretrained(REPO_ID, revision=BRANCH)
    assert tokenizer("w3 w5 zz")["input_ids"] == [5, 7, 1]
    with pytest.raises(OSError):
        AutoModelForSequenceClassification.from_pretrained(REPO_ID, revision="no-such-branch")


def test_unchanged_reupload_creates_no_commit(hub_client: HfApi, hub_env: LocalHub, model_dir: Path) -> None:
    first = _push(hub_client, model_dir, BRANCH)
    second = _push(hub_client, model_dir, BRANCH)
    assert second == first
    titles = [c.title for c in hub_env.commits(REPO_ID, BRANCH)]
    assert titles == ["Upload folder using huggingface_hub", "initial commit"]


def test_failed_commit_then_rerun_completes(hub_client: HfApi, hub_env: LocalHub, model_dir: Path) -> None:
    hub_client.create_repo(REPO_ID)
    hub_client.create_branch(REPO_ID, branch=BRANCH)
    hub_env.fail_next_commit(status_code=422)
    with pytest.raises(HfHubHTTPError) as err:
        hub_client.upload_folder(repo_id=REPO_ID, folder_path=model_dir, revision=BRANCH)
    assert err.value.response.status_code == 422
    assert len(hub_env.commits(REPO_ID, BRANCH)) == 1  # nothing committed
    oid = hub_client.upload_folder(repo_id=REPO_ID, folder_path=model_dir, revision=BRANCH).oid
    assert hub_env.commits(REPO_ID, BRANCH)[0].oid == oid
    assert hub_env.files(REPO_ID, BRANCH)["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    assert hub_env.commit_attempts == 2


def test_commit_server_error_raises_with_lfs_and_is_retried_with_xet(
    hub_client: HfApi, hub_env: LocalHub, hub_xet: bool, model_dir: Path
) -> None:
    hub_client.create_repo(REPO_ID)
    hub_env.fail_next_commit()  # HTTP 500 once
    if hub_xet:  # the pipelined upload retries commits on 5xx (1 s backoff)
        oid = hub_client.upload_folder(repo_id=REPO_ID, folder_path=model_dir).oid
        assert hub_env.commits(REPO_ID)[0].oid == oid
        assert hub_env.commit_attempts == 2
    else:
        with pytest.raises(HfHubHTTPError) as err:
            hub_client.upload_folder(repo_id=REPO_ID, folder_path=model_dir)
        assert err.value.response.status_code == 500
        assert len(hub_env.commits(REPO_ID)) == 1


def test_refs_tags_and_commit_history(hub_server: LocalHub, model_dir: Path) -> None:
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo(REPO_ID)
    initial = hub_server.commits(REPO_ID)[0].oid
    api.create_branch(REPO_ID, branch=BRANCH)
    api.create_branch(REPO_ID, branch="lambda-0.50", revision=initial)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(REPO_ID, branch=BRANCH)
    assert err.value.response.status_code == 409
    api.create_branch(REPO_ID, branch=BRANCH, exist_ok=True)
    oid = api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id=REPO_ID, revision=BRANCH).oid
    api.create_tag(REPO_ID, tag="v1", revision=BRANCH)

    refs = api.list_repo_refs(REPO_ID)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": initial, BRANCH: oid, "lambda-0.50": initial}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": oid}
    assert hub_server.refs(REPO_ID) == {"main": initial, BRANCH: oid, "lambda-0.50": initial, "tags/v1": oid}
    commits = api.list_repo_commits(REPO_ID, revision="v1")
    assert [c.commit_id for c in commits] == [oid, initial]
    assert [c.title for c in commits] == ["Upload config.json with huggingface_hub", "initial commit"]
    assert api.repo_info(REPO_ID, revision=oid).sha == oid


def test_wrong_or_missing_token_is_refused(hub_server: LocalHub, model_dir: Path, tmp_path: Path) -> None:
    good = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    assert good.whoami()["name"] == HUB_USER
    good.create_repo(REPO_ID)
    wrong = HfApi(endpoint=hub_server.endpoint, token="hf_not_the_token")
    for call in (
        lambda: wrong.create_repo(f"{HUB_USER}/other"),
        lambda: wrong.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO_ID),
        lambda: wrong.create_branch(REPO_ID, branch=BRANCH),
        lambda: wrong.whoami(),
    ):
        with pytest.raises(HfHubHTTPError) as err:
            call()
        assert err.value.response.status_code == 401
    anonymous = get_session().post(f"{hub_server.endpoint}/api/repos/create", json={"name": "anon", "type": "model"})
    assert anonymous.status_code == 401
    assert [c.title for c in hub_server.commits(REPO_ID)] == ["initial commit"]
    assert hub_server.refs(REPO_ID) == {"main": hub_server.commits(REPO_ID)[0].oid}


def test_missing_revision_entry_and_stale_parent(hub_server: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo(REPO_ID)
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO_ID, revision="no-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            REPO_ID, "absent.json", endpoint=hub_server.endpoint, token=hub_server.token, cache_dir=tmp_path
        )
    initial = hub_server.commits(REPO_ID)[0].oid
    api.upload_file(path_or_fileobj=b"a", path_in_repo="d/a.txt", repo_id=REPO_ID)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO_ID, [CommitOperationAdd("b.txt", b"b")], commit_message="stale", parent_commit=initial)
    assert err.value.response.status_code == 412
    api.create_commit(REPO_ID, [CommitOperationDelete("d/")], commit_message="rm d")
    assert set(hub_server.files(REPO_ID)) == {".gitattributes"}


def test_resolve_range_headers_tree_and_card(hub_client: HfApi, hub_env: LocalHub, model_dir: Path) -> None:
    oid = _push(hub_client, model_dir, "main")
    weights = (model_dir / "model.safetensors").read_bytes()
    url = f"{hub_env.endpoint}/{REPO_ID}/resolve/main/model.safetensors"
    head = get_session().head(url)
    assert head.headers["X-Repo-Commit"] == oid
    assert head.headers["ETag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert int(head.headers["Content-Length"]) == len(weights)
    part = get_session().get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == weights[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(weights)}"
    assert get_session().get(url, headers={"Range": "bytes=-5"}).content == weights[-5:]
    assert get_session().get(url, headers={"Range": f"bytes={len(weights)}-"}).status_code == 416

    files = {f.path: f for f in hub_client.list_repo_tree(REPO_ID, recursive=True)}
    assert files["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert files["config.json"].lfs is None
    assert files["config.json"].blob_id == hub_env.tree(REPO_ID)["config.json"].git_oid
    (info,) = hub_client.get_paths_info(REPO_ID, ["config.json"], expand=True)
    assert info.last_commit.oid == oid
    card = hub_client.model_info(REPO_ID).card_data
    assert card.tags == ["dogerm", "merge"] and card.base_model == ["org/rm", "org/lm"]
    with pytest.raises(ValueError, match="Invalid metadata"):
        hub_client.upload_file(path_or_fileobj=b"---\n[a: b\n---\n", path_in_repo="README.md", repo_id=REPO_ID)


def test_eval_results_written_into_branch_card(hub_client: HfApi, hub_env: LocalHub, model_dir: Path) -> None:
    _push(hub_client, model_dir, "main")
    _push(hub_client, model_dir, BRANCH)
    card = ModelCard.load(REPO_ID, repo_type="model")
    card.data.model_name = "tiny-dogerm"
    card.data.eval_results = [
        EvalResult(task_type="text-classification", dataset_type="allenai/reward-bench", dataset_name="RewardBench",
                   metric_type="accuracy", metric_value=0.75)
    ]
    card.push_to_hub(REPO_ID, revision=BRANCH, commit_message="Add RewardBench accuracy")

    (result,) = hub_client.model_info(REPO_ID, revision=BRANCH).card_data.eval_results
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("allenai/reward-bench", "accuracy", 0.75)
    assert hub_env.commits(REPO_ID, BRANCH)[0].title == "Add RewardBench accuracy"
    assert b"model-index" in hub_env.files(REPO_ID, BRANCH)["README.md"]
    assert hub_env.files(REPO_ID, "main")["README.md"] == (model_dir / "README.md").read_bytes()
