"""The shipped merge configurations are valid dogerm configurations (checked without the network)."""

from pathlib import Path

import pytest
import yaml
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_mergekit.kernels import check_kernel_parameters, split_kernel_models
from dogerm_mergekit.methods import is_kernel_method
from dogerm_mergekit.validation import check_config, split_models

CONFIGS = sorted((Path(__file__).parents[1] / "merge_configs").glob("*.yml"))


def test_the_paper_pairs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"llama2-rm+metamath-7b", "llama2-rm+mammoth-7b", "llama2-rm+magicoder-7b",
            "mistral-rm+mammoth2-7b-plus"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_a_valid_dogerm_config(path):
    config = MergeConfiguration.model_validate(yaml.safe_load(path.read_text()))
    if is_kernel_method(config.merge_method):
        check_kernel_parameters(config)
        base, models = split_kernel_models(config)
        assert base not in models
        return
    assert config.merge_method == "dogerm"
    check_config(config, MergeOptions())
    rm, domains = split_models(config)
    assert rm not in domains


def test_the_issue_examples_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"llama2-rm+metamath+magicoder-7b", "llama2-rm-soup-7b", "llama2-rm+metamath-ties-7b"} <= names
