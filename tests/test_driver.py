"""The one mergekit driver: one shared difference per tensor for K lambdas, mergekit's options honoured or refused."""

import pytest
import torch
import yaml
from click.testing import CliRunner
from mergekit.config import MergeConfiguration
from mergekit.graph import TaskUniverse
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import plan_merge
from dogerm_mergekit.cli import sweep as sweep_command
from dogerm_mergekit.driver import plan_outputs
from dogerm_mergekit.sweep import run_sweep
from dogerm_mergekit.tasks import Interpolate, PairDifference, SweepTensor
from dogerm_mergekit.writer import WriteQueue
from dogerm_mergekit import testing as tiny
from tests.mergeutil import config_dict, merge, tensors

OPTIONS = MergeOptions(quiet=True)


@pytest.fixture
def pair(tmp_path):
    return tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))


def _planned_kinds(tmp_path, pair, queue):
    rm, lm = pair
    configs = [MergeConfiguration.model_validate(config_dict(rm, lm, lam)) for lam in (0.0, 0.5, 1.0)]
    plan = plan_merge(configs[0], OPTIONS)
    planned = plan_outputs(plan, [(c, tmp_path / str(i)) for i, c in enumerate(configs)], OPTIONS, queue)
    universe = TaskUniverse([task for output in planned for task in output])
    return plan, [handle.task() for handle in map(universe.get_handle, universe.tasks)]


def test_streamed_k_lambdas_are_one_sweep_node_per_merged_tensor(tmp_path, pair):
    with WriteQueue() as queue:
        plan, kinds = _planned_kinds(tmp_path, pair, queue)
    sweeps = [t for t in kinds if isinstance(t, SweepTensor)]
    assert len(sweeps) == len(plan.merged) and {t.name for t in sweeps} == set(plan.merged)
    assert all(t.lam_vectors == ((0.0,), (0.5,), (1.0,)) and len(set(t.writers)) == 3 for t in sweeps)
    assert not [t for t in kinds if isinstance(t, (PairDifference, Interpolate))]


def test_dogerm_compute_nodes_take_their_inputs_on_the_math_device(tmp_path, pair):
    with WriteQueue() as queue:
        _, streamed = _planned_kinds(tmp_path, pair, queue)
    _, unstreamed = _planned_kinds(tmp_path, pair, None)
    nodes = [t for t in streamed + unstreamed if isinstance(t, (SweepTensor, PairDifference, Interpolate))]
    assert nodes and all(t.uses_accelerator() for t in nodes)  # what `--cuda` needs, as mergekit's merge tasks do


def test_k_lambdas_share_one_difference_node_per_merged_tensor_without_streaming(tmp_path, pair):
    plan, kinds = _planned_kinds(tmp_path, pair, None)
    differences = [t for t in kinds if isinstance(t, PairDifference)]
    interpolations = [t for t in kinds if isinstance(t, Interpolate)]
    assert len(differences) == len(plan.merged)
    assert len(interpolations) == 3 * len(plan.merged)
    assert {t.lam for t in interpolations} == {0.0, 0.5, 1.0}


def test_pickled_output_and_low_cpu_memory_work_in_the_sweep(tmp_path, pair):
    rm, lm = pair
    options = MergeOptions(quiet=True, safe_serialization=False, low_cpu_memory=True)
    run_sweep(yaml.safe_dump(config_dict(rm, lm)), tmp_path / "sweep", (0.0, 0.4), options)
    single = merge(tmp_path / "single", rm, lm, lam=0.4)
    pickled = torch.load(tmp_path / "sweep" / "lambda-0.40" / "pytorch_model.bin", weights_only=True)
    reference = tensors(single)
    assert pickled.keys() == reference.keys() and all(torch.equal(pickled[k], reference[k]) for k in reference)
    assert not list((tmp_path / "sweep" / "lambda-0.40").glob("*.safetensors"))


@pytest.mark.parametrize("flag, named", [(["--multi-gpu"], "--multi-gpu"), (["--gpu-rich"], "--multi-gpu"),
                                         (["--write-threads", "2"], "--write-threads")])
def test_options_a_dogerm_merge_cannot_honour_are_refused_by_name(tmp_path, pair, flag, named):
    rm, lm = pair
    config = tmp_path / "dogerm.yml"
    config.write_text(yaml.safe_dump(config_dict(rm, lm)))
    result = CliRunner().invoke(sweep_command, [str(config), str(tmp_path / "out"), "--lambdas", "0,1", *flag])
    assert result.exit_code != 0 and named in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_mergekit_option_is_reported_by_mergekits_parser(tmp_path, pair):
    rm, lm = pair
    config = tmp_path / "dogerm.yml"
    config.write_text(yaml.safe_dump(config_dict(rm, lm)))
    result = CliRunner().invoke(sweep_command, [str(config), str(tmp_path / "out"), "--no-such-option"])
    assert result.exit_code != 0 and "--no-such-option" in result.output
    assert not (tmp_path / "out").exists()


def test_tokenizer_files_of_an_aligned_merge_are_the_reward_models_own(tmp_path, pair):
    rm, lm = pair
    out = merge(tmp_path / "out", rm, lm, tokenizer={"source": "base"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (rm / name).read_bytes()
