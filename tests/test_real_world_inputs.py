"""Inputs as the world sends them, through the real command lines in subprocesses: mixed dtypes, hostile manifests,
non-finite weights, files changed after a sweep, broken YAML, unknown keys, an unreachable Hub, and what a merge
leaves behind. Each either works, checked against an independent computation, or fails with one line."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file

from dogerm_mergekit import testing as tiny
from tests.hub_server import HUB_USER
from tests.mergeutil import BIN, config_dict, one_line_error, run_cli, tensors

LAYER = "model.layers.1.mlp.up_proj.weight"


def _config(path: Path, rm: Path, lm: Path, lam: float = 0.3, **extra) -> Path:
    path.write_text(yaml.safe_dump({**config_dict(rm, lm, lam), **extra}, sort_keys=False))
    return path


def _mixed_pair(root: Path, rm_dtype: torch.dtype, lm_dtype: torch.dtype) -> tuple[Path, Path]:
    """An RM saved in ``rm_dtype`` and its domain LM in ``lm_dtype`` (as RMs in bf16 and SFT models in fp32 are)."""
    rm, _ = tiny.build_pair(root / "a", dtype=rm_dtype)
    _, lm = tiny.build_pair(root / "b", dtype=lm_dtype)  # same seed: the same weights, saved in another dtype
    return rm, lm


def _corrupt(folder: Path, name: str, index: int, value: float) -> None:
    file = folder / "model.safetensors"
    data = load_file(file)
    changed = data[name].clone()
    changed.view(-1)[index] = value
    data[name] = changed
    save_file(data, file, metadata={"format": "pt"})


@pytest.mark.parametrize(("rm_dtype", "lm_dtype", "extra"), [
    (torch.bfloat16, torch.float32, {}),
    (torch.bfloat16, torch.float32, {"dtype": "float32"}),
    (torch.float32, torch.bfloat16, {"out_dtype": "float16"}),
    (torch.float16, torch.bfloat16, {}),
])
def test_mixed_dtypes_merge_as_the_fp32_formula_rounded_once(tmp_path, rm_dtype, lm_dtype, extra):
    rm, lm = _mixed_pair(tmp_path / "in", rm_dtype, lm_dtype)
    config = _config(tmp_path / "mixed.yml", rm, lm, 0.3, **extra)
    result = run_cli(BIN / "mergekit-yaml", config, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = run_cli(BIN / "dogerm-sweep", config, tmp_path / "sweep", "--lambdas", "0.3")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    merged, swept = tensors(tmp_path / "out"), tensors(tmp_path / "sweep" / "lambda-0.30")
    a, b = tensors(rm), tensors(lm)
    out_dtype = getattr(torch, extra.get("out_dtype", str(rm_dtype).removeprefix("torch.")))
    for name, value in merged.items():
        assert value.dtype == out_dtype and torch.equal(value, swept[name]), name
        if name == "score.weight":
            assert torch.equal(value, a[name].to(out_dtype))
            continue
        x, y = a[name].float(), b[name].float()
        assert torch.equal(value, (x + (y - x) * 0.3).to(out_dtype)), name  # the fp32 formula, one rounding
        exact = x.double() + 0.3 * (y.double() - x.double())
        bound = torch.finfo(out_dtype).eps * exact.abs() + torch.finfo(out_dtype).tiny  # about one unit in the last place
        assert ((value.double() - exact).abs() <= bound).all(), name  # against the fp64 value


def test_a_sweep_checkpoint_is_what_mergekit_yaml_writes_every_file(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    text = f"""# a comment and an indentation style of the user's own
merge_method: dogerm
base_model: {rm}
models:
    -   model: {lm}
        parameters:
            lambda: 0.9   # replaced per checkpoint
"""
    (tmp_path / "mine.yml").write_text(text)
    (tmp_path / "mine-0.5.yml").write_text(text.replace("0.9", "0.5"))
    assert run_cli(BIN / "dogerm-sweep", tmp_path / "mine.yml", tmp_path / "sweep", "--lambdas", "0,0.5").returncode == 0
    assert run_cli(BIN / "mergekit-yaml", tmp_path / "mine-0.5.yml", tmp_path / "single").returncode == 0
    single = {p.name: p.read_bytes() for p in (tmp_path / "single").iterdir()}
    swept = {p.name: p.read_bytes() for p in (tmp_path / "sweep" / "lambda-0.50").iterdir()}
    assert single.keys() == swept.keys() and {"README.md", "mergekit_config.yml", "model.safetensors"} <= single.keys()
    assert [name for name in single if single[name] != swept[name]] == []
    assert not list(tmp_path.glob(".*.lock")) and not list((tmp_path / "sweep").glob(".*"))  # no lock files left


def test_non_finite_weights_are_refused_naming_model_and_tensor(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    _corrupt(lm, LAYER, 777, float("nan"))
    config = _config(tmp_path / "c.yml", rm, lm)
    for command in ("mergekit-yaml", "dogerm-sweep"):
        result = run_cli(BIN / command, config, tmp_path / command)
        one_line_error(result, str(lm), LAYER, "nan", "allow_nonfinite")
        assert not (tmp_path / command).exists(), command  # nothing written, the sweep's manifest neither
    _corrupt(lm, LAYER, 777, float("inf"))
    _corrupt(rm, "model.layers.0.self_attn.q_proj.weight", 3, float("-inf"))
    one_line_error(run_cli(BIN / "mergekit-yaml", config, tmp_path / "out"), "the reward model", "-inf")
    allowed = _config(tmp_path / "allowed.yml", rm, lm, parameters={"allow_nonfinite": True})
    assert run_cli(BIN / "mergekit-yaml", allowed, tmp_path / "out").returncode == 0
    assert torch.isinf(tensors(tmp_path / "out")[LAYER].view(-1)[777])


def test_yaml_errors_and_unknown_keys_in_one_line(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    broken = tmp_path / "broken.yml"
    broken.write_text(f"merge_method: dogerm\nbase_model: {rm}\nmodels:\n  - model: [{lm}\n")
    for command in ("mergekit-yaml", "dogerm-sweep"):
        one_line_error(run_cli(BIN / command, broken, tmp_path / "out"), "broken.yml", "line 5", "not valid YAML")
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(f"merge_method: dogerm\nbase_model: {rm}\nmodels: 3\n")
    one_line_error(run_cli(BIN / "mergekit-yaml", wrong, tmp_path / "out"), "`models`", "list")
    typo = _config(tmp_path / "typo.yml", rm, lm, lamda=0.3)
    raw = yaml.safe_load(typo.read_text())
    raw["models"][1]["parameters"]["allow_extrapolaton"] = True  # a parameter name one letter off, on a model
    typo.write_text(yaml.safe_dump(raw))
    result = run_cli(BIN / "mergekit-yaml", typo, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`lamda` is not a key" in result.stderr and "did you mean `parameters.lambda`" in result.stderr
    assert "`models[1].parameters.allow_extrapolaton`" in result.stderr
    assert "did you mean `models[1].parameters.allow_extrapolation`" in result.stderr
    assert not (tmp_path / "out-other").exists() and not list(tmp_path.glob(".*.lock"))


def test_mergekit_multi_errors_in_one_line(tmp_path):
    """mergekit-multi on a file with dogerm documents: syntax, a document's schema error named by its name, and an
    exception of the merge itself, each one line; the documents before a bad one are not merged either."""
    rm, lm = tiny.build_pair(tmp_path / "in")
    good = {"name": "first", **config_dict(rm, lm, 0.5)}
    multi = tmp_path / "multi.yml"
    multi.write_text(yaml.safe_dump(good) + f"---\nname: second\nmerge_method: dogerm\nbase_model: {rm}\nmodels: [x\n")
    merges = ["--intermediate-dir", str(tmp_path / "merges")]
    one_line_error(run_cli(BIN / "mergekit-multi", multi, *merges), "multi.yml: line 14", "not valid YAML")
    multi.write_text(yaml.safe_dump_all([good, {"name": "second", "merge_method": "dogerm", "base_model": str(rm),
                                                "models": 3}]))
    one_line_error(run_cli(BIN / "mergekit-multi", multi, *merges), "multi.yml (second)", "`models`", "list")
    multi.write_text(yaml.safe_dump_all([{**good, "models": [{"model": str(lm), "parameters": {"lambda": 1.5}}]}]))
    one_line_error(run_cli(BIN / "mergekit-multi", multi, *merges), "lambda=1.5 is outside [0, 1]")
    assert not (tmp_path / "merges" / "first").exists()


@pytest.fixture
def sweep(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    config = _config(tmp_path / "c.yml", rm, lm)
    result = run_cli(BIN / "dogerm-sweep", config, tmp_path / "sweep", "--lambdas", "0,0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    return config, tmp_path / "sweep"


def _hub_env(hub, home: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home)}


def _rewrite_manifest(sweep: Path, change) -> None:
    manifest = json.loads((sweep / "sweep.json").read_text())
    change(manifest)
    (sweep / "sweep.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("hostile", ["../../escape", "/etc", "lambda-0.50/../..", "symlink"])
def test_a_hostile_manifest_reads_and_uploads_nothing_outside_the_sweep(sweep, tmp_path, hub_server, hostile):
    _, folder = sweep
    secret = tmp_path / "escape"
    secret.mkdir()
    (secret / "config.json").write_text("{}")
    (secret / "id_rsa").write_text("secret")
    if hostile == "symlink":
        os.symlink(secret, folder / "lambda-0.70")
        _rewrite_manifest(folder, lambda m: m["checkpoints"].update(
            {"lambda-0.70": {**m["checkpoints"]["lambda-0.50"], "lam": 0.7}}))
        needle = "is a link"
    else:
        _rewrite_manifest(folder, lambda m: m["checkpoints"].update(
            {hostile: {**m["checkpoints"]["lambda-0.50"], "lam": 0.7}}))
        needle = "not a plain name"
    push = run_cli(BIN / "dogerm-push", folder, f"{HUB_USER}/escape", env=_hub_env(hub_server, tmp_path / "home"))
    one_line_error(push, needle)
    assert not HfApi(endpoint=hub_server.endpoint, token=hub_server.token).repo_exists(f"{HUB_USER}/escape")
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"id": 1, "prompt": "w1", "chosen": "w2", "rejected": "w3", "subset": "general"}) + "\n")
    scored = run_cli(BIN / "dogerm-eval", "sweep", folder, "--benchmark", "pairwise", "--data", data,
                     "--output-dir", tmp_path / "eval")
    one_line_error(scored, needle)
    assert not (tmp_path / "eval").exists() or not list((tmp_path / "eval").rglob("*.json"))


def test_only_the_recorded_files_are_uploaded(sweep, tmp_path, hub_server):
    _, folder = sweep
    (folder / "lambda-0.50" / "notes-with-a-token.txt").write_text("hf_secret")
    result = run_cli(BIN / "dogerm-push", folder, f"{HUB_USER}/tiny", env=_hub_env(hub_server, tmp_path / "home"))
    assert result.returncode == 0, result.stderr[-3000:]
    files = HfApi(endpoint=hub_server.endpoint, token=hub_server.token).list_repo_files(f"{HUB_USER}/tiny",
                                                                                         revision="lambda-0.50")
    assert "model.safetensors" in files and "notes-with-a-token.txt" not in files


def test_an_unreachable_hub_is_one_line(sweep, tmp_path):
    _, folder = sweep
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_fake", "HF_HUB_ETAG_TIMEOUT": "2",
           "HF_HOME": str(tmp_path / "home")}
    result = run_cli(BIN / "dogerm-push", folder, f"{HUB_USER}/tiny", env=env)
    line = one_line_error(result, "http://127.0.0.1:9", "could not be reached", "rerun")
    assert "hf_fake" not in result.stderr + result.stdout and len(result.stderr.strip().splitlines()) <= 3, line


def test_a_checkpoint_changed_after_its_sweep_is_caught(sweep, tmp_path):
    config, folder = sweep
    weights = folder / "lambda-0.50" / "model.safetensors"
    good = weights.read_bytes()
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"id": 1, "prompt": "w1", "chosen": "w2", "rejected": "w3", "subset": "general"}) + "\n")
    weights.write_bytes(good[: len(good) // 2])  # truncated after the sweep finished
    scored = run_cli(BIN / "dogerm-eval", "sweep", folder, "--benchmark", "pairwise", "--data", data,
                     "--output-dir", tmp_path / "eval")
    one_line_error(scored, str(weights), "changed since dogerm-sweep wrote it", "rerun dogerm-sweep")
    assert not list(tmp_path.glob("eval/**/pairwise.json"))  # refused before any member was scored
    rerun = run_cli(BIN / "dogerm-sweep", config, folder, "--lambdas", "0,0.5")
    assert rerun.returncode == 0 and "merging lambda-0.50 again" in rerun.stderr, rerun.stderr[-3000:]
    assert "wrote 1 checkpoints, 1 already complete" in rerun.stdout
    assert weights.read_bytes() == good
    flipped = bytearray(good)
    flipped[-5] ^= 1  # same size, other bytes: the digest tells
    weights.write_bytes(bytes(flipped))
    one_line_error(run_cli(BIN / "dogerm-push", folder, f"{HUB_USER}/tiny", env={"HF_ENDPOINT": "http://127.0.0.1:9"}),
                   str(weights), "digest differs")


def test_mixed_dtypes_through_a_mergekit_kernel(tmp_path):
    """dogerm_task_arithmetic over a bf16 RM, an fp32 domain LM and an fp16 base: the RM's dtype out, each tensor
    the task-vector formula (fp64 here) to within one unit of bf16, the RM's head unchanged."""
    from mergekit.config import MergeConfiguration
    from mergekit.options import MergeOptions

    from dogerm_mergekit.merge import run_dogerm_merge

    rm, _ = tiny.build_pair(tmp_path / "a", dtype=torch.bfloat16)
    _, lm = tiny.build_pair(tmp_path / "b", dtype=torch.float32, seed=1)
    _, base = tiny.build_pair(tmp_path / "c", dtype=torch.float16, seed=2)
    config = {"merge_method": "dogerm_task_arithmetic", "base_model": str(base),
              "models": [{"model": str(rm), "parameters": {"weight": 1.0}},
                         {"model": str(lm), "parameters": {"weight": 0.5}}]}
    run_dogerm_merge(MergeConfiguration.model_validate(config), tmp_path / "out", MergeOptions(quiet=True))
    merged, a, b, c = tensors(tmp_path / "out"), tensors(rm), tensors(lm), tensors(base)
    for name, value in merged.items():
        assert value.dtype == torch.bfloat16, name
        if name == "score.weight":
            assert torch.equal(value, a[name])
            continue
        exact = c[name].double() + (a[name].double() - c[name].double()) + 0.5 * (b[name].double() - c[name].double())
        bound = torch.finfo(torch.bfloat16).eps * exact.abs() + 1e-6
        assert ((value.double() - exact).abs() <= bound).all(), name
