"""Several domain models in one reward model: theta = RM + sum_i lambda_i (D_i - RM), against an fp64 reference."""

import json
import logging

import pytest
import torch
import yaml
from click.testing import CliRunner
from mergekit.options import MergeOptions
from transformers import AutoTokenizer

from dogerm_mergekit.cli import sweep as sweep_command
from dogerm_mergekit.contract import (
    finished_checkpoints, finished_points, grid_checkpoint_name, lambdas_of, parse_grid, unfinished_lambdas,
)
from dogerm_mergekit.errors import DogeRMConfigError, DogeRMError
from dogerm_mergekit.inmemory import InMemoryMerger
from dogerm_mergekit.sweep import grid_points, run_sweep
from dogerm_mergekit import testing as tiny
from tests.mergeutil import merge, rewards, tensors, ulps

OPTIONS = MergeOptions(quiet=True)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """An RM, a domain LM with an extra token, and a second domain LM whose ids are rotated (aligned by string)."""
    root = tmp_path_factory.mktemp("trio")
    rm, lm1 = tiny.build_pair(root / "a", lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    _, lm2 = tiny.build_pair(root / "b", seed=1, lm_tokens=tiny.vocabulary(1000, shift=7))
    return rm, lm1, lm2


def _config(rm, domains, lams, **extra):
    return {
        "merge_method": "dogerm",
        "base_model": str(rm),
        "models": [{"model": str(rm)}, *({"model": str(d), "parameters": {"lambda": lam}} for d, lam in zip(domains, lams))],
        "tokenizer": {"source": "base"},
        **extra,
    }


def _merge(out, config, options=OPTIONS):
    from mergekit.config import MergeConfiguration

    from dogerm_mergekit.merge import run_dogerm_merge

    source = yaml.safe_dump(config)
    run_dogerm_merge(MergeConfiguration.model_validate(config), out, options, source)
    return out


def _aligned(model, rm):
    """``model``'s tensors with embedding rows re-ordered to the RM's token ids (the RM's row where it lacks one)."""
    ours, theirs = tensors(rm), tensors(model)
    rm_vocab = AutoTokenizer.from_pretrained(rm).get_vocab()
    vocab = AutoTokenizer.from_pretrained(model).get_vocab()
    name = "model.embed_tokens.weight"
    rows = ours[name].clone()
    for token, index in rm_vocab.items():
        if token in vocab:
            rows[index] = theirs[name][vocab[token]]
    return {**theirs, name: rows}


def _reference(rm, domains, lams):
    base = {k: v.double() for k, v in tensors(rm).items()}
    aligned = [_aligned(d, rm) for d in domains]
    out = {}
    for name, value in base.items():
        if all(name in a for a in aligned):
            out[name] = value + sum(lam * (a[name].double() - value) for a, lam in zip(aligned, lams))
        else:
            out[name] = value
    return out, aligned


def test_two_domains_match_the_fp64_reference(tmp_path, trio):
    rm, lm1, lm2 = trio
    lams = (0.35, 0.4)
    merged = tensors(_merge(tmp_path / "out", _config(rm, (lm1, lm2), lams)))
    reference, aligned = _reference(rm, (lm1, lm2), lams)
    rm_tensors = tensors(rm)
    assert merged.keys() == rm_tensors.keys()  # the RM's head kept, no lm_head
    assert torch.equal(merged["score.weight"], rm_tensors["score.weight"])
    for name, value in merged.items():
        scale = torch.stack([rm_tensors[name].abs(), *(a[name].abs() for a in aligned if name in a)]).amax(0)
        assert ulps(value, reference[name], scale) <= 4, name
    assert rewards(tmp_path / "out").isfinite().all()


def test_a_zero_lambda_leaves_the_one_domain_merge_bit_for_bit(tmp_path, trio):
    rm, lm1, lm2 = trio
    both = tensors(_merge(tmp_path / "both", _config(rm, (lm1, lm2), (0.3, 0.0))))
    one = tensors(merge(tmp_path / "one", rm, lm1, lam=0.3, tokenizer={"source": "base"}))
    assert both.keys() == one.keys() and all(torch.equal(both[k], one[k]) for k in one)


def test_lambdas_summing_outside_0_1_are_refused_unless_extrapolating(tmp_path, trio):
    rm, lm1, lm2 = trio
    with pytest.raises(DogeRMConfigError, match="sum to 1.2"):
        _merge(tmp_path / "out", _config(rm, (lm1, lm2), (0.6, 0.6)))
    assert not tmp_path.joinpath("out").exists()
    # per-tensor settings are summed tensor by tensor, before anything is written
    filtered = [{"filter": "embed_tokens", "value": 0.9}, {"value": 0.1}]
    with pytest.raises(DogeRMConfigError, match="embed_tokens"):
        _merge(tmp_path / "out", _config(rm, (lm1, lm2), (filtered, 0.5)))
    assert not tmp_path.joinpath("out").exists() and not [p for p in tmp_path.glob(".out*") if p.is_dir()]
    merged = tensors(_merge(tmp_path / "x", _config(rm, (lm1, lm2), (0.6, 0.6), parameters={"allow_extrapolation": True})))
    reference, _ = _reference(rm, (lm1, lm2), (0.6, 0.6))
    assert torch.allclose(merged["model.norm.weight"].double(), reference["model.norm.weight"], atol=1e-5)


def test_refusals_name_the_model(tmp_path, trio):
    rm, lm1, lm2 = trio
    config = _config(rm, (lm1, lm2), (0.2, 0.2))
    del config["tokenizer"]
    with pytest.raises(DogeRMConfigError, match=f"reward model and {lm2}.*source: base"):
        _merge(tmp_path / "out", config)
    config = _config(rm, (lm1, lm2), (0.2, 0.2))
    del config["models"][2]["parameters"]
    with pytest.raises(DogeRMConfigError, match=f"needs `lambda`.*{lm2}"):
        _merge(tmp_path / "out", config)
    config = _config(rm, (lm1, lm1), (0.2, 0.2))
    with pytest.raises(DogeRMConfigError, match="twice"):
        _merge(tmp_path / "out", config)
    assert not tmp_path.joinpath("out").exists()


def test_grid_sweep_checkpoints_equal_single_merges_and_in_memory_merges(tmp_path, trio, caplog):
    rm, lm1, lm2 = trio
    source = yaml.safe_dump(_config(rm, (lm1, lm2), (0.1, 0.1)))
    with caplog.at_level(logging.WARNING):
        points = grid_points(source, [parse_grid(f"lambda[{lm1}]=0,0.5,1"), parse_grid(f"lambda[{lm2}]=0,0.5")])
    assert points == [(0.0, 0.0), (0.0, 0.5), (0.5, 0.0), (0.5, 0.5), (1.0, 0.0)]  # (1, 0.5) sums to 1.5
    assert "1 of 6" in caplog.text
    result = run_sweep(source, tmp_path / "sweep", points, OPTIONS)
    assert result.written == tuple(grid_checkpoint_name(p) for p in points) and "lambda-0.50_0.50" in result.written
    manifest = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert manifest["domain_models"] == [str(lm1), str(lm2)] and manifest["grid"] == [list(p) for p in points]
    record = manifest["checkpoints"]["lambda-0.50_0.50"]
    assert record["lambdas"] == {str(lm1): 0.5, str(lm2): 0.5} and record["lam"] == 1.0
    assert unfinished_lambdas(tmp_path / "sweep") == []
    with pytest.raises(DogeRMError, match="per-domain lambdas, not a one-domain lambda sweep"):
        finished_checkpoints(tmp_path / "sweep")  # sums of lambdas would collide on one axis
    found = finished_points(tmp_path / "sweep")  # what dogerm-eval sweep reports: every lambda
    assert found[-1] == ({f"lambda[{lm1}]": 1.0, f"lambda[{lm2}]": 0.0}, tmp_path / "sweep" / "lambda-1.00_0.00")
    merger = InMemoryMerger(str(rm), [str(lm1), str(lm2)], tokenizer={"source": "base"})
    single = tensors(_merge(tmp_path / "single", _config(rm, (lm1, lm2), (0.5, 0.5))))
    written = tensors(tmp_path / "sweep" / "lambda-0.50_0.50")
    memory = merger.state_dict((0.5, 0.5))
    assert all(torch.equal(written[k], single[k]) and torch.equal(memory[k], single[k]) for k in single)
    assert lambdas_of("lambda-0.50_0.50") == (0.5, 0.5)
    with pytest.raises(DogeRMConfigError, match="one lambda per domain model"):
        merger.state_dict(0.5)
    with pytest.raises(DogeRMConfigError, match="sum to"):
        merger.state_dict((0.8, 0.8))
    again = run_sweep(source, tmp_path / "sweep", points, OPTIONS)  # resumable as before
    assert again.written == () and len(again.skipped) == len(points)


def test_grid_errors(tmp_path, trio):
    rm, lm1, lm2 = trio
    source = yaml.safe_dump(_config(rm, (lm1, lm2), (0.1, [{"filter": "mlp", "value": 0.2}, {"value": 0.1}])))
    with pytest.raises(DogeRMConfigError, match="no model matches"):
        grid_points(source, [parse_grid("lambda[nope]=0,1")])
    with pytest.raises(DogeRMConfigError, match="name one per grid"):
        grid_points(source, [parse_grid("lambda=0,1")])
    with pytest.raises(DogeRMConfigError, match=r"more than one model matches \(they are: lm, lm\)"):
        grid_points(source, [parse_grid("lambda[lm]=0,1")])  # both folders are called lm
    with pytest.raises(DogeRMConfigError, match="no plain lambda"):
        grid_points(source, [parse_grid(f"lambda[{lm1}]=0,1")])  # the second model's lambda is per tensor
    with pytest.raises(DogeRMConfigError, match="sweeps lambda only"):
        grid_points(source, [parse_grid("density=0,1")])
    with pytest.raises(DogeRMConfigError, match="--grid"):
        parse_grid("lambda[x=0,1")
    config = tmp_path / "c.yml"
    config.write_text(source)
    result = CliRunner().invoke(sweep_command, [str(config), str(tmp_path / "o"), "--grid", "lambda=0,1",
                                                "--lambdas", "0,1"])
    assert result.exit_code != 0 and "not both" in result.output


def test_kernel_through_mergekit_merge_tensors_matches_fp64():
    from mergekit.merge_methods import merge_tensors

    from dogerm_mergekit.method import METHOD

    torch.manual_seed(0)
    rm, d1, d2 = (torch.randn(300, 70) for _ in range(3))
    out = merge_tensors([rm, d1, d2], METHOD, base_index=0, parameters={"lambda": [0.25, 0.5]})
    exact = rm.double() + 0.25 * (d1.double() - rm.double()) + 0.5 * (d2.double() - rm.double())
    assert ulps(out, exact, torch.stack([rm.abs(), d1.abs(), d2.abs()]).amax(0)) <= 3
    with pytest.raises(DogeRMConfigError, match="sum to"):
        merge_tensors([rm, d1, d2], METHOD, base_index=0, parameters={"lambda": [0.75, 0.5]})


def test_plain_mergekit_yaml_and_dogerm_sweep_grid_merge_two_domains(tmp_path, trio):
    import os
    import subprocess
    import sys
    from pathlib import Path

    rm, lm1, lm2 = trio
    config = tmp_path / "two.yml"
    config.write_text(yaml.safe_dump(_config(rm, (lm1, lm2), (0.25, 0.5))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(Path(sys.executable).parent / "mergekit-yaml"), str(config), str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    inproc = tensors(_merge(tmp_path / "inproc", _config(rm, (lm1, lm2), (0.25, 0.5))))
    plain = tensors(tmp_path / "out")
    assert all(torch.equal(plain[k], inproc[k]) for k in inproc)
    card = (tmp_path / "out" / "README.md").read_text()
    assert str(lm2) in card and "0.5" in card
    swept = CliRunner().invoke(sweep_command, [str(config), str(tmp_path / "sweep"), "--quiet",
                                               "--grid", f"lambda[{lm2}]=0.5"])  # lm1 keeps its 0.25
    assert swept.exit_code == 0, swept.output
    written = tensors(tmp_path / "sweep" / "lambda-0.25_0.50")
    assert all(torch.equal(written[k], inproc[k]) for k in inproc)
