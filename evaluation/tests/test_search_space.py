"""Search spaces: parameters parsed and refused in one line, proposals kept to dogerm's sums, and each point's merge
equal to what mergekit-yaml writes for the same configuration (depth schedules in mergekit's gradient syntax,
dogerm_<kernel> parameters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dogerm_eval.errors import BenchmarkError
from dogerm_eval.options import default_options
from dogerm_eval.space import dogerm_source, parse_space
from dogerm_eval.split_eval import SplitEvaluator
from dogerm_mergekit import testing as tiny
from evaluation.tests.synthetic import two_domain_space
from tests.mergeutil import tensors

MERGEKIT_YAML = str(Path(sys.executable).parent / "mergekit-yaml")


def test_the_default_space_is_each_domain_models_lambda() -> None:
    one = parse_space(dogerm_source("org/rm", ["org/a"]), "x", ())
    assert [(p.key, p.target, p.low, p.high) for p in one.parameters] == [("lambda", "lambda[org/a]", 0.0, 1.0)]
    assert one.lambdas_only and one.zero() == {"lambda": 0.0}
    assert one.config({"lambda": 0.3})["models"][0]["parameters"]["lambda"] == 0.3
    two = two_domain_space()
    assert [p.key for p in two.parameters] == ["lambda[org/a]", "lambda[org/b]"]
    assert two.sweep_point({"lambda[org/a]": 0.2, "lambda[org/b]": 0.1}) == {"lambda[org/a]": 0.2, "lambda[org/b]": 0.1}


def test_a_depth_schedule_is_a_gradient_of_knots() -> None:
    space = two_domain_space(("lambda[a]@3=0:0.6", "lambda[org/b]@3=0:1"))
    assert [p.key for p in space.parameters] == [f"lambda[org/{m}]@{k}" for m in "ab" for k in range(3)]
    point = space.point({**{f"lambda[org/a]@{k}": v for k, v in enumerate((0.1, 0.5, 0.9))},
                         **{f"lambda[org/b]@{k}": v for k, v in enumerate((0.2, 0.2, 0.6))}})
    config = space.config(point)
    # the last knots: 0.9 clipped to a's bound 0.6, then 0.6 + 0.6 > 1 scaled onto the sum 1
    assert config["models"][0]["parameters"]["lambda"] == [0.1, 0.5, 0.5]
    assert config["models"][1]["parameters"]["lambda"] == [0.2, 0.2, 0.5]
    assert not space.lambdas_only and space.knotted


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=2), st.floats(0, 0.5))
def test_proposals_stay_in_bounds_and_sum_to_at_most_one(values: list[float], fixed: float) -> None:
    source = yaml.safe_dump({"merge_method": "dogerm", "base_model": "org/rm", "models": [
        {"model": m, "parameters": {"lambda": fixed if m == "org/c" else 0.0}} for m in ("org/a", "org/b", "org/c")]})
    space = parse_space(source, "x", ("lambda[org/a]=0:1", "lambda[org/b]=0.1:0.9"))
    point = space.point(dict(zip(("lambda[org/a]", "lambda[org/b]"), values)))
    assert sum(point.values()) + fixed <= 1 + 1e-12
    assert all(0 <= v <= 1 for v in point.values()) and point["lambda[org/b]"] <= 0.9
    assert all(round(v, 4) == v for v in point.values())
    if sum(min(max(v, lo), hi) for v, lo, hi in zip(values, (0, 0.1), (1, 0.9))) + fixed <= 1 - 1e-3:
        assert point["lambda[org/a]"] == round(values[0], 4)  # nothing to scale: the proposal itself


@pytest.mark.parametrize("specs, message", [
    (("lambda=0:1",), "2 domain models; name one as lambda\\[MODEL\\]"),
    (("lambda[zzz]=0:1",), "--param lambda\\[zzz\\]=0:1: no model matches"),
    (("lambda[org/a]=0.5:0.2",), "lower bound must be below"),
    (("lambda[org/a]=0:1.5",), "dogerm lambdas lie in \\[0, 1\\]"),
    (("density[org/a]=0:1",), "searches lambda, not 'density'"),
    (("lambda[org/a]=zero:1",), "write NAME=LOW:HIGH"),
    (("lambda[org/a]@1=0:1",), "at least 2 knots"),
    (("lambda[org/a]@3=0:1", "lambda[org/b]=0:1"), "same number of knots"),
    (("lambda[org/a]=0:1", "lambda[a]=0:0.5"), "two ranges for lambda\\[org/a\\]"),
])
def test_bad_parameters_are_one_line(specs: tuple[str, ...], message: str) -> None:
    with pytest.raises(BenchmarkError, match=message) as caught:
        two_domain_space(specs)
    assert "\n" not in str(caught.value)


def test_kernel_spaces_need_parameters_and_read_the_kernels_own(tmp_path: Path) -> None:
    source = yaml.safe_dump({"merge_method": "dogerm_ties", "base_model": "org/base", "models": [
        {"model": "org/rm", "parameters": {"weight": 1.0, "density": 0.5}},
        {"model": "org/a", "parameters": {"weight": 0.5, "density": 0.5}}]})
    with pytest.raises(BenchmarkError, match="say what to search with --param"):
        parse_space(source, "ties.yml", ())
    with pytest.raises(BenchmarkError, match="density lies in \\(0, 1\\]"):
        parse_space(source, "ties.yml", ("density[a]=0:1",))
    space = parse_space(source, "ties.yml", ("weight[a]=0:1", "density[a]=0.1:1"))
    config = space.config(space.point({"weight[org/a]": 0.7, "density[org/a]": 0.3}))
    assert config["models"][1]["parameters"] == {"weight": 0.7, "density": 0.3}
    assert config["models"][0]["parameters"] == {"weight": 1.0, "density": 0.5} and space.zero() == {}


def _mergekit_yaml(tmp_path: Path, config: dict, name: str) -> dict[str, torch.Tensor]:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run([MERGEKIT_YAML, str(path), str(tmp_path / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return tensors(tmp_path / name)


def _pairs(path: Path) -> Path:
    rows = [{"id": i, "subset": "s", "prompt": "w1 w2", "chosen": f"w{i} w3", "rejected": f"w3 w{i}"} for i in range(8)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_a_depth_schedule_merges_as_mergekits_gradient_syntax(tmp_path: Path) -> None:
    rm, lm = tiny.build_pair(tmp_path / "in", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    space = parse_space(dogerm_source(str(rm), [str(lm)]), "x", ("lambda@3=0:1",))
    evaluator = SplitEvaluator(space, "pairwise", str(_pairs(tmp_path / "p.jsonl")), None, 0.5, 0,
                               default_options(dtype="float32", device="cpu"))
    point = space.point({"lambda@0": 0.1, "lambda@1": 0.8, "lambda@2": 0.35})
    merged = evaluator.merged(point)
    written = _mergekit_yaml(tmp_path, {"merge_method": "dogerm", "base_model": str(rm), "models": [
        {"model": str(lm), "parameters": {"lambda": [0.1, 0.8, 0.35]}}]}, "gradient")
    assert merged.keys() == written.keys() and all(torch.equal(merged[k], written[k]) for k in written)
    flat = evaluator.merged({"lambda@0": 0.5, "lambda@1": 0.5, "lambda@2": 0.5})
    plain = _mergekit_yaml(tmp_path, {"merge_method": "dogerm", "base_model": str(rm), "models": [
        {"model": str(lm), "parameters": {"lambda": 0.5}}]}, "plain")
    assert all(torch.equal(flat[k], plain[k]) for k in plain)  # equal knots: the plain lambda
    layer0, layer1 = "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"
    assert not torch.equal(merged[layer0], flat[layer0]) and not torch.equal(merged[layer1], flat[layer1])
    alone = evaluator.merged(None)
    assert all(torch.equal(alone[k], v) for k, v in tensors(rm).items())  # the reward model alone, bit for bit


def test_a_kernel_point_merges_as_mergekit_yaml_writes_it(tmp_path: Path) -> None:
    rm, lm = tiny.build_pair(tmp_path / "in")
    _, base = tiny.build_pair(tmp_path / "base", seed=2)  # a causal LM of the same shapes: the "pretrained base"
    source = yaml.safe_dump({"merge_method": "dogerm_ties", "base_model": str(base), "models": [
        {"model": str(rm), "parameters": {"weight": 1.0}},
        {"model": str(lm), "parameters": {"weight": 0.5, "density": 0.5}}], "parameters": {"normalize": False}})
    with pytest.raises(BenchmarkError, match="sets its own density, which overrides the top-level one"):
        parse_space(source, "ties.yml", ("density=0.1:1",))
    source = source.replace("density: 0.5", "epsilon: 0.0")  # the model's own density gone
    space = parse_space(source, "ties.yml", (f"weight[{lm}]=0:1", "density=0.1:1"))
    evaluator = SplitEvaluator(space, "pairwise", str(_pairs(tmp_path / "p.jsonl")), None, 0.5, 0,
                               default_options(dtype="float32", device="cpu"))
    point = space.point({f"weight[{lm}]": 0.35, "density": 0.8})
    merged = evaluator.merged(point)
    written = _mergekit_yaml(tmp_path, space.config(point), "ties")
    assert space.config(point)["parameters"] == {"normalize": False, "density": 0.8}
    assert merged.keys() == written.keys() and all(torch.equal(merged[k], written[k]) for k in written)
    alone = evaluator.merged(None)
    assert all(torch.equal(alone[k], v) for k, v in tensors(rm).items())
