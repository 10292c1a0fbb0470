"""In-memory merges equal the checkpoints dogerm-sweep writes, bit for bit."""

import pytest
import torch
import yaml
from mergekit.options import MergeOptions

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.inmemory import InMemoryMerger
from dogerm_mergekit.sweep import run_sweep
from dogerm_mergekit import testing as tiny
from tests.mergeutil import config_dict, tensors


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_dicts_equal_sweep_checkpoints(tmp_path, dtype):
    rm, lm = tiny.build_pair(tmp_path / "in", dtype=dtype, lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    run_sweep(yaml.safe_dump(config_dict(rm, lm)), tmp_path / "sweep", (0.0, 0.35, 1.0), MergeOptions(quiet=True))
    merger = InMemoryMerger(str(rm), str(lm))
    for lam, name in ((0.0, "lambda-0.00"), (0.35, "lambda-0.35"), (1.0, "lambda-1.00")):
        merged, written = merger.state_dict(lam), tensors(tmp_path / "sweep" / name)
        assert merged.keys() == written.keys()
        assert all(torch.equal(merged[k], written[k]) for k in written), name
    with pytest.raises(DogeRMConfigError):
        merger.state_dict(1.5)


def test_a_configuration_with_per_tensor_lambdas_is_planned_in_memory(tmp_path):
    """Filters and gradients give each tensor its own lambda: the state dict equals mergekit-yaml's checkpoint."""
    from mergekit.config import MergeConfiguration

    from tests.mergeutil import merge

    rm, lm = tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    lam = [{"filter": "embed_tokens", "value": 0.0}, {"filter": "mlp", "value": [0.2, 0.9]}, {"value": 0.5}]
    written = tensors(merge(tmp_path / "out", rm, lm, lam=lam))
    merger = InMemoryMerger(str(rm), str(lm))
    merged = merger.state_dict(MergeConfiguration.model_validate(config_dict(rm, lm, lam)))
    assert merged.keys() == written.keys() and all(torch.equal(merged[k], written[k]) for k in written)
    embedding = "model.embed_tokens.weight"
    assert torch.equal(merged[embedding], tensors(rm)[embedding])  # lambda 0 there: the RM's rows unchanged
    up0, up1 = "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"
    assert not torch.equal(merged[up0], merger.state_dict(0.5)[up0])  # the gradient's own values per layer
    assert not torch.equal(merged[up1], merger.state_dict(0.5)[up1])
    other, _ = tiny.build_pair(tmp_path / "other", seed=3)
    with pytest.raises(DogeRMConfigError, match="other models"):
        merger.state_dict(MergeConfiguration.model_validate(config_dict(other, lm, 0.3)))


def test_a_point_names_the_lambdas(tmp_path):
    """The merge point shape of sweeps and reports ({"lambda": x}, {"lambda[MODEL]": x}) gives the same weights."""
    rm, lm = tiny.build_pair(tmp_path / "in")
    merger = InMemoryMerger(str(rm), str(lm))
    by_point, by_number = merger.state_dict({"lambda": 0.4}), merger.state_dict(0.4)
    assert all(torch.equal(by_point[k], by_number[k]) for k in by_number)
    by_model = merger.state_dict({f"lambda[{merger.plan.domain_model}]": 0.4})
    assert all(torch.equal(by_model[k], by_number[k]) for k in by_number)
    with pytest.raises(DogeRMConfigError, match="does not give lambda"):
        merger.state_dict({"lambda[other]": 0.4})
