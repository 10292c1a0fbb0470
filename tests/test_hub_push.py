"""Publishing a sweep to a (local) Hub with the real huggingface_hub client, and loading it back."""

from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from mergekit.options import MergeOptions
from transformers import AutoModelForSequenceClassification

from dogerm_mergekit.contract import MetricsTable
from dogerm_mergekit.hub import HubError, push_sweep
from dogerm_mergekit.sweep import run_sweep
from dogerm_mergekit import testing as tiny
from tests.hub_server import HUB_USER
from tests.mergeutil import config_dict, tensors

REPO = f"{HUB_USER}/dogerm-tiny"


@pytest.fixture(params=[False, True], ids=["lfs", "xet"])
def hub_xet(request):
    return request.param


@pytest.fixture
def sweep_dir(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    run_sweep(yaml.safe_dump(config_dict(rm, lm)), tmp_path / "sweep", (0.0, 0.3), MergeOptions(quiet=True))
    return tmp_path / "sweep"


def _local_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_push_one_branch_per_lambda_round_trips_byte_identically(hub_env, sweep_dir, tmp_path):
    assert push_sweep(sweep_dir, REPO) == ["lambda-0.00", "lambda-0.30"]
    api = HfApi()
    assert {b.name for b in api.list_repo_refs(REPO).branches} == {"main", "lambda-0.00", "lambda-0.30"}
    for name in ("lambda-0.00", "lambda-0.30"):
        pulled = snapshot_download(REPO, revision=name, cache_dir=tmp_path / "cache")
        remote = {p.name: p.read_bytes() for p in Path(pulled).iterdir() if p.is_file()}
        remote.pop(".gitattributes", None)
        assert remote == _local_files(sweep_dir / name)
    model = AutoModelForSequenceClassification.from_pretrained(REPO, revision="lambda-0.30")
    local = tensors(sweep_dir / "lambda-0.30")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in local.items())
    card = ModelCard.load(REPO)
    assert 'revision="lambda-0.30"' in card.text and card.data.base_model_relation == "merge"
    assert "sweep.json" in hub_env.files(REPO, "main")


def test_repush_of_unchanged_sweep_makes_no_commit(hub_env, sweep_dir):
    push_sweep(sweep_dir, REPO)
    before = {ref: len(hub_env.commits(REPO, ref)) for ref in ("main", "lambda-0.00", "lambda-0.30")}
    push_sweep(sweep_dir, REPO)
    assert {ref: len(hub_env.commits(REPO, ref)) for ref in before} == before


def test_failed_commit_then_rerun_completes(hub_env, sweep_dir):
    hub_env.fail_next_commit(422)  # 4xx: not retried by the client in either mode
    with pytest.raises(HubError, match="uploading lambda-0.00 .* HTTP 422") as caught:
        push_sweep(sweep_dir, REPO)
    assert isinstance(caught.value.__cause__, HfHubHTTPError) and "\n" not in str(caught.value)
    push_sweep(sweep_dir, REPO)
    for name in ("lambda-0.00", "lambda-0.30"):
        stored = hub_env.files(REPO, name)
        assert stored["model.safetensors"] == (sweep_dir / name / "model.safetensors").read_bytes()


def test_repo_per_lambda_and_private(hub_env, sweep_dir):
    assert push_sweep(sweep_dir, REPO, repo_per_lambda=True, private=True) == [
        f"{REPO}-lambda-0.00", f"{REPO}-lambda-0.30"]
    api = HfApi()
    assert api.model_info(f"{REPO}-lambda-0.30").private
    files = hub_env.files(f"{REPO}-lambda-0.30", "main")
    assert files["model.safetensors"] == (sweep_dir / "lambda-0.30" / "model.safetensors").read_bytes()
    assert f'"{REPO}-lambda-0.30"' in ModelCard.load(f"{REPO}-sweep").text


def test_results_table_goes_into_the_sweep_card(hub_env, sweep_dir, tmp_path):
    table = MetricsTable(rows=[{"lambda": 0.0, "rewardbench/math": 0.585, "rewardbench/code": 0.726},
                               {"lambda": 0.3, "rewardbench/math": 0.755, "rewardbench/code": None}])
    table.save(tmp_path / "metrics.json")
    push_sweep(sweep_dir, REPO, metrics=MetricsTable.load(tmp_path / "metrics.json"))
    text = ModelCard.load(REPO).text
    assert "| lambda | rewardbench/math | rewardbench/code |" in text and "| 0.30 | 0.7550 |  |" in text


def test_token_is_never_printed(hub_env, sweep_dir, capsys):
    push_sweep(sweep_dir, REPO)
    captured = capsys.readouterr()
    assert hub_env.token not in captured.out + captured.err
