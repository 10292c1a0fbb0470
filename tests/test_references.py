"""Model values as users write them in configs: what is neither an existing folder nor a Hub id is refused in one
line before anything runs, and what the pre-check accepts mergekit reads the same way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import constants
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from dogerm_mergekit.errors import CheckpointError, DogeRMConfigError
from dogerm_mergekit.testing import build_pair
from tests.mergeutil import BIN, config_dict, merge, one_line_error, run_cli, tensors


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_pair(tmp_path_factory.mktemp("pair"))


@pytest.mark.parametrize(("value", "error", "needle"), [
    ("org/na me", DogeRMConfigError, "'org/na me' is neither an existing local path nor a valid Hub id"),
    ("bad id!", DogeRMConfigError, "'bad id!' is neither an existing local path nor a valid Hub id"),
    ("org/name@", CheckpointError, "org/name is not in the Hugging Face cache"),  # mergekit: no revision
    ("~/no-such-rm", DogeRMConfigError, "~/no-such-rm: mergekit does not expand '~' in a model value; write the full "
                                        "path"),
    ("./no/such/rm", CheckpointError, "the domain model no/such/rm does not exist"),
    ("no/such/rm", CheckpointError, "no/such/rm does not exist"),
])
def test_a_domain_model_value_is_read_as_mergekit_reads_it(pair, tmp_path, monkeypatch, value, error, needle):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # a Hub id is looked up in the (empty) cache only
    with pytest.raises(error, match=f"^the domain model {needle}" if error is DogeRMConfigError else needle):
        merge(tmp_path / "out", pair[0], value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["rm@v2", "rm+adapter"])
def test_a_folder_named_with_at_or_plus_is_refused_with_its_reason(pair, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(pair[0], folder)
    with pytest.raises(DogeRMConfigError, match=r"mergekit reads '@' in a model value as a Hub revision and '\+' as a "
                                                r"LoRA adapter: rename the folder"):
        merge(tmp_path / "out", folder, pair[1])
    merge(tmp_path / "out", shutil.move(folder, tmp_path / "rm-v2"), pair[1])  # the fix given works


def test_relative_paths_the_pre_check_accepts_mergekit_merges(pair, tmp_path, monkeypatch):
    monkeypatch.chdir(pair[0].parent.parent)
    relative = [Path(pair[0].parent.name) / p.name for p in pair]  # one slash: a folder here, not a Hub id
    assert tensors(merge(tmp_path / "out", *relative)).keys() == tensors(merge(tmp_path / "abs", *pair)).keys()


def test_a_bad_value_is_one_line_from_mergekit_yaml(pair, tmp_path):
    config = tmp_path / "merge.yml"
    config.write_text(yaml.safe_dump(config_dict(pair[0], "org/na me")))
    one_line_error(run_cli(BIN / "mergekit-yaml", config, tmp_path / "out"), "neither an existing local path")
    assert not (tmp_path / "out").exists()


def test_saved_rotary_buffers_are_refused_with_a_fix_that_works(pair, tmp_path):
    old = tmp_path / "old-rm"
    shutil.copytree(pair[0], old)
    weights = load_file(old / "model.safetensors")
    for layer in range(2):  # what older transformers versions saved
        weights[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, 16, 2) / 16))
    save_file(weights, old / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(DogeRMConfigError, match=r"holds 'model\.layers\.0\.self_attn\.rotary_emb\.inv_freq' \(and 1 "
                                                r"more .*Re-save the reward model without them"):
        merge(tmp_path / "out", old, pair[1])
    AutoModelForSequenceClassification.from_pretrained(old).save_pretrained(tmp_path / "new-rm")  # the advice
    merged = tensors(merge(tmp_path / "out", tmp_path / "new-rm", pair[1]))
    expected = tensors(merge(tmp_path / "expected", pair[0], pair[1]))
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[name], expected[name]) for name in expected)
