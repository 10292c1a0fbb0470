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
