"""mergekit's own kernels on reward models: soups (linear, fp64 reference) and task vectors against the base
(equal to mergekit run on causal-LM copies of the same tensors), with the reward model's head kept."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.merge import run_dogerm_merge
from dogerm_mergekit import testing as tiny
from tests.mergeutil import rewards, tensors, ulps

OPTIONS = MergeOptions(quiet=True)
BIN = Path(sys.executable).parent


def _merge(out, config, options=OPTIONS):
    run_dogerm_merge(MergeConfiguration.model_validate(config), out, options, yaml.safe_dump(config))
    return out


def _rename_head(rm, head):
    state = load_file(rm / "model.safetensors")
    state[head] = state.pop("score.weight")
    save_file(state, rm / "model.safetensors", metadata={"format": "pt"})


# ---------------------------------------------------------------------------------------------------- soups
@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    root = tmp_path_factory.mktemp("rms")
    return [tiny.build_pair(root / str(seed), seed=seed)[0] for seed in range(3)]


def _soup(models, weights, **extra):
    return {"merge_method": "dogerm_linear",
            "models": [{"model": str(m), "parameters": {"weight": w}} for m, w in zip(models, weights)], **extra}


def _soup_reference(models, weights, normalize=True):
    states = [tensors(m) for m in models]
    total = sum(weights) if normalize else 1.0
    return {k: sum(w * s[k].double() for s, w in zip(states, weights)) / total for k in states[0]}, states


@pytest.mark.parametrize("normalize", [True, False])
def test_soup_of_three_reward_models_matches_fp64(tmp_path, rms, normalize):
    weights = (1.0, 2.0, 1.0) if normalize else (0.25, 0.5, 0.25)
    out = _merge(tmp_path / "soup", _soup(rms, weights, parameters={"normalize": normalize}))
    merged = tensors(out)
    reference, states = _soup_reference(rms, weights, normalize)
    assert merged.keys() == states[0].keys()  # the heads averaged too, nothing else added
    for name, value in merged.items():
        scale = torch.stack([s[name].abs() for s in states]).amax(0)
        assert ulps(value, reference[name], scale) <= 4, name
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    assert rewards(out).isfinite().all()


def test_soup_with_equal_weights_of_identical_models_is_the_model(tmp_path, rms):
    twin = shutil.copytree(rms[0], tmp_path / "twin")
    merged = tensors(_merge(tmp_path / "same", _soup([rms[0], twin], [1.0, 1.0])))
    assert all(torch.allclose(merged[k], v, rtol=0, atol=1e-7) for k, v in tensors(rms[0]).items())


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_soup_of_another_family_with_another_head_name(tmp_path, family):
    models = [tiny.build_pair(tmp_path / str(s), family=family, seed=s)[0] for s in range(2)]
    for rm in models:
        _rename_head(rm, "value_head.weight")
    merged = tensors(_merge(tmp_path / "out", _soup(models, [0.3, 0.7])))
    reference, states = _soup_reference(models, [0.3, 0.7])
    assert "value_head.weight" in merged and "score.weight" not in merged
    for name, value in merged.items():
        assert ulps(value, reference[name], torch.stack([s[name].abs() for s in states]).amax(0)) <= 4, name


def test_soup_refusals(tmp_path, rms):
    lm = rms[0].parent / "lm"
    with pytest.raises(DogeRMConfigError, match="score.weight.*not in"):
        _merge(tmp_path / "out", _soup([rms[0], lm], [1, 1]))  # a causal LM has no head to average
    with pytest.raises(DogeRMConfigError, match="drop `base_model:`"):
        _merge(tmp_path / "out", _soup(rms, [1, 1, 1], base_model=str(rms[0])))
    with pytest.raises(DogeRMConfigError, match="at least 2"):
        _merge(tmp_path / "out", _soup(rms[:1], [1]))
    other = tiny.build_pair(tmp_path / "q", seed=5)[0]
    _rename_head(other, "value_head.weight")
    with pytest.raises(DogeRMConfigError, match="'score.weight' is in the reward model but not in"):
        _merge(tmp_path / "out", _soup([rms[0], other], [1, 1]))  # another head name
    qwen = tiny.build_pair(tmp_path / "q2", family="qwen2")[0]
    with pytest.raises(DogeRMConfigError, match="config field"):
        _merge(tmp_path / "out", _soup([rms[0], qwen], [1, 1]))  # another family's shapes
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- task vectors
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pretrained base (causal LM), a reward model, a domain LM, and tied causal-LM copies of all three.

    The copies hold the same backbone tensors and no lm_head (tie_word_embeddings), so mergekit's stock run draws
    DARE's random masks for exactly the tensors dogerm's run does, in the same order.
    """
    root = tmp_path_factory.mktemp("world")
    rm, lm = tiny.build_pair(root / "a")
    _, base = tiny.build_pair(root / "b", seed=2)
    rm2 = tiny.build_pair(root / "c", seed=3)[0]

    def tied_copy(source, name):
        out = root / name
        shutil.copytree(base, out)
        state = {k: v for k, v in tensors(source).items() if k not in ("score.weight", "lm_head.weight")}
        for file in out.glob("*.safetensors"):
            file.unlink()
        save_file(state, out / "model.safetensors", metadata={"format": "pt"})
        config = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
        return out

    return {"rm": rm, "lm": lm, "base": base, "rm2": rm2,
            "copies": {n: tied_copy(m, f"copy-{n}") for n, m in (("base", base), ("rm", rm), ("lm", lm), ("rm2", rm2))}}


PARAMS = {
    "task_arithmetic": ({"weight": 1.0}, {"weight": 0.5}, {}),
    "ties": ({"weight": 1.0, "density": 0.5}, {"weight": 0.7, "density": 0.3}, {"normalize": True}),
    "dare_linear": ({"weight": 1.0, "density": 0.6}, {"weight": 0.5, "density": 0.4}, {}),
    "dare_ties": ({"weight": 1.0, "density": 0.6}, {"weight": 0.5, "density": 0.4}, {"normalize": False}),
    "della": ({"weight": 1.0, "density": 0.6, "epsilon": 0.1}, {"weight": 0.5, "density": 0.5, "epsilon": 0.2},
              {"lambda": 0.9}),
}


def _task_vector_config(method, base, rm, lm):
    rm_params, lm_params, shared = PARAMS[method.removeprefix("dogerm_")]
    return {"merge_method": method, "base_model": str(base), "parameters": dict(shared),
            "models": [{"model": str(rm), "parameters": dict(rm_params)}, {"model": str(lm), "parameters": dict(lm_params)}]}


@pytest.mark.parametrize("method", list(PARAMS))
def test_backbone_equals_mergekit_on_causal_lm_copies(tmp_path, world, method):
    options = MergeOptions(quiet=True, random_seed=7)
    ours = tensors(_merge(tmp_path / "ours", _task_vector_config(f"dogerm_{method}", world["base"], world["rm"],
                                                                  world["lm"]), options))
    copies = world["copies"]
    stock_config = _task_vector_config(method, copies["base"], copies["rm"], copies["lm"])
    run_merge(MergeConfiguration.model_validate(stock_config), str(tmp_path / "stock"), options)
    stock = tensors(tmp_path / "stock")
    assert set(ours) == set(stock) | {"score.weight"}  # no lm_head from the base or the domain model
    assert all(torch.equal(ours[k], stock[k]) for k in stock), [k for k in stock if not torch.equal(ours[k], stock[k])]
    assert torch.equal(ours["score.weight"], tensors(world["rm"])["score.weight"])
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours")
    assert type(model).__name__ == "LlamaForSequenceClassification"


def test_two_reward_models_against_the_base_keep_the_first_head(tmp_path, world):
    """A task-vector soup: both backbones merged by mergekit's dare_ties, the first reward model's head kept."""
    options = MergeOptions(quiet=True, random_seed=3)
    ours = tensors(_merge(tmp_path / "ours", _task_vector_config("dogerm_dare_ties", world["base"], world["rm"],
                                                                  world["rm2"]), options))
    copies = world["copies"]
    stock_config = _task_vector_config("dare_ties", copies["base"], copies["rm"], copies["rm2"])
    run_merge(MergeConfiguration.model_validate(stock_config), str(tmp_path / "stock"), options)
    stock = tensors(tmp_path / "stock")
    assert all(torch.equal(ours[k], stock[k]) for k in stock)
    assert torch.equal(ours["score.weight"], tensors(world["rm"])["score.weight"])


def test_dare_depends_on_the_random_seed(tmp_path, world):
    config = _task_vector_config("dogerm_dare_ties", world["base"], world["rm"], world["lm"])
    one = tensors(_merge(tmp_path / "a", config, MergeOptions(quiet=True, random_seed=1)))
    again = tensors(_merge(tmp_path / "b", config, MergeOptions(quiet=True, random_seed=1)))
    other = tensors(_merge(tmp_path / "c", config, MergeOptions(quiet=True, random_seed=2)))
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(one[name], again[name]) and not torch.equal(one[name], other[name])


def test_task_vector_refusals_before_anything_is_written(tmp_path, world):
    rm, lm, base = world["rm"], world["lm"], world["base"]
    config = _task_vector_config("dogerm_ties", base, rm, lm)
    cases = [
        ({**config, "base_model": None}, "needs|task vectors against the pretrained base"),
        ({**config, "models": [{"model": str(rm), "parameters": {"weight": 1, "density": 1.5}}]}, r"density.*\(0, 1\]"),
        ({**config, "models": [{"model": str(rm), "parameters": {"weight": 1, "density": 0}}]}, r"density.*\(0, 1\]"),
        ({**config, "parameters": {"density": -0.1}}, r"density.*\(0, 1\]"),
        ({**config, "models": [{"model": str(lm), "parameters": {"weight": 1}}]}, "no model under `models:` has a head"),
        ({**config, "merge_method": "dogerm_slerp"}, "unknown merge_method"),
    ]
    for bad, match in cases:
        with pytest.raises(DogeRMConfigError, match=match):
            _merge(tmp_path / "out", bad)
    wide = tmp_path / "wide"  # a base of another shape
    AutoModelForCausalLM.from_config(tiny.config("llama", 1000, num_hidden_layers=3)).save_pretrained(wide)
    tiny.tokenizer(tiny.vocabulary(1000)).save_pretrained(wide)
    with pytest.raises(DogeRMConfigError, match="num_hidden_layers"):
        _merge(tmp_path / "out", {**config, "base_model": str(wide)})
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.glob(".out*") if p.is_dir()]


def test_plain_mergekit_yaml_runs_a_task_vector_merge(tmp_path, world):
    config = tmp_path / "ties.yml"
    config.write_text(yaml.safe_dump(_task_vector_config("dogerm_ties", world["base"], world["rm"], world["lm"])))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(BIN / "mergekit-yaml"), str(config), str(tmp_path / "out")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    inproc = tensors(_merge(tmp_path / "inproc", yaml.safe_load(config.read_text())))
    assert all(torch.equal(v, inproc[k]) for k, v in tensors(tmp_path / "out").items())
    assert "mergekit ties against" in (tmp_path / "out" / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------- sweeps
@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_weight_density_grid_sweep_equals_single_merges(tmp_path, world, method):
    """dogerm-sweep over a weight x density grid: each checkpoint is the single merge of its point (DARE under the
    same --random-seed: one pass per point, each seeded as a single merge is); the manifest records every value."""
    from click.testing import CliRunner

    from dogerm_mergekit.cli import sweep as sweep_command
    from dogerm_mergekit.contract import finished_checkpoints, load_manifest
    from dogerm_mergekit.errors import DogeRMError

    config = _task_vector_config(f"dogerm_{method}", world["base"], world["rm"], world["lm"])
    for model in config["models"]:
        model["parameters"].pop("density")
    path = tmp_path / "grid.yml"
    path.write_text(yaml.safe_dump(config))
    args = [str(path), str(tmp_path / "sweep"), "--quiet", "--random-seed", "5", "--grid", "density=0.3,0.6",
            "--grid", f"weight[{world['lm']}]=0.5,1"]
    result = CliRunner().invoke(sweep_command, args)
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "sweep")
    names = sorted(manifest.checkpoints)
    assert names == ["density-0.30_weight.2-0.50", "density-0.30_weight.2-1.00", "density-0.60_weight.2-0.50",
                     "density-0.60_weight.2-1.00"]
    record = manifest.checkpoints["density-0.60_weight.2-0.50"]
    assert record.parameters == {"density": 0.6, f"weight[{world['lm']}]": 0.5} and record.lam is None
    single_config = {**config, "parameters": {**config["parameters"], "density": 0.6}}
    single_config["models"] = [dict(m, parameters=dict(m["parameters"])) for m in config["models"]]
    single_config["models"][1]["parameters"]["weight"] = 0.5
    single = tensors(_merge(tmp_path / "single", single_config, MergeOptions(quiet=True, random_seed=5)))
    written = tensors(tmp_path / "sweep" / "density-0.60_weight.2-0.50")
    assert all(torch.equal(written[k], single[k]) for k in single)
    again = CliRunner().invoke(sweep_command, args)
    assert again.exit_code == 0 and "0 checkpoints, 4 already complete" in again.output
    with pytest.raises(DogeRMError, match="grid of mergekit-kernel parameters, not a one-domain lambda sweep"):
        finished_checkpoints(tmp_path / "sweep")


def test_kernel_grid_refusals(tmp_path, world):
    from dogerm_mergekit.contract import parse_grid
    from dogerm_mergekit.sweep import kernel_grid_points

    source = yaml.safe_dump(_task_vector_config("dogerm_ties", world["base"], world["rm"], world["lm"]))
    with pytest.raises(DogeRMConfigError, match="overrides the top-level one"):
        kernel_grid_points(source, [parse_grid("density=0.3,0.5")])  # both models set their own density
    with pytest.raises(DogeRMConfigError, match="a dogerm_<kernel> grid sweeps"):
        kernel_grid_points(source, [parse_grid("normalize=0,1")])
    with pytest.raises(DogeRMConfigError, match=r"density.*\(0, 1\]"):
        from dogerm_mergekit.sweep import run_sweep

        points = kernel_grid_points(source, [parse_grid(f"density[{world['lm']}]=0.5,1.5")])
        run_sweep(source, tmp_path / "out", points, OPTIONS)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["linear", "dare_ties"])
def test_in_memory_state_dict_equals_the_written_checkpoint(tmp_path, world, rms, method):
    from dogerm_mergekit.inmemory import merged_state_dict

    if method == "linear":
        config = _soup(rms[:2], [0.3, 0.7])
    else:
        config = _task_vector_config("dogerm_dare_ties", world["base"], world["rm"], world["lm"])
    options = MergeOptions(quiet=True, random_seed=11)
    written = tensors(_merge(tmp_path / "out", config, options))
    memory = merged_state_dict(MergeConfiguration.model_validate(config), options)
    assert memory.keys() == written.keys() and all(torch.equal(memory[k], written[k]) for k in written)


def test_cards_name_the_kernel_and_grid_points(tmp_path, world):
    from dogerm_mergekit.contract import CheckpointRecord, SweepManifest
    from dogerm_mergekit.hub import sweep_card

    out = _merge(tmp_path / "out", _task_vector_config("dogerm_ties", world["base"], world["rm"], world["lm"]))
    card = (out / "README.md").read_text()
    assert "mergekit's own `ties` kernel" in card and "theta = (1 - lambda)" not in card
    manifest = SweepManifest(reward_model="rm", domain_model="lm", inputs={}, config_sha256="0" * 64,
                             config="merge_method: dogerm_ties\n", lambdas=[], points=[{"density": 0.5}],
                             checkpoints={"density-0.50": CheckpointRecord(files={}, parameters={"density": 0.5})})
    text = sweep_card(manifest, "org/name", repo_per_lambda=False)
    assert '| density-0.50 | `AutoModelForSequenceClassification.from_pretrained("org/name", revision="density-0.50")`' in text
    assert "`ties` kernel" in text
