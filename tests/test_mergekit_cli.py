"""mergekit's own command lines run dogerm merges, whatever the hash seed; the wrapper works without .pth files."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import yaml

import dogerm_mergekit
from dogerm_mergekit import testing as tiny
from tests.mergeutil import config_dict, rewards, tensors

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    rm, lm = tiny.build_pair(root, lm_tokens=tiny.vocabulary(1000, extra=("[PAD]",)))
    config = root / "dogerm.yml"
    config.write_text(yaml.safe_dump(config_dict(rm, lm, 0.3)))
    return rm, lm, config


def _run(args, seed="0", **env):
    environment = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(args, capture_output=True, text=True, env=environment, timeout=300)


@pytest.mark.parametrize("seed", ["0", "1", "2"])
def test_plain_mergekit_yaml_gives_the_same_correct_model_under_any_hash_seed(tmp_path, pair, seed):
    rm, lm, config = pair
    out = tmp_path / "out"
    result = _run([str(BIN / "mergekit-yaml"), str(config), str(out)], seed=seed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [f"{out}: wrote the merge of {config}"]  # one line of result
    assert "deprecated" not in result.stderr and "Error" not in result.stderr, result.stderr[-3000:]
    merged = tensors(out)
    assert set(merged) == set(tensors(rm))
    assert torch.equal(merged["score.weight"], tensors(rm)["score.weight"])
    assert rewards(out).shape == (3, 1)


def test_mergekit_multi_runs_dogerm_documents(tmp_path, pair):
    rm, lm, _ = pair
    docs = [
        {"name": f"lambda-{lam}", **config_dict(rm, lm, lam)} for lam in (0.0, 0.5)
    ]
    config = tmp_path / "multi.yml"
    config.write_text(yaml.safe_dump_all(docs))
    result = _run([str(BIN / "mergekit-multi"), str(config), "--intermediate-dir", str(tmp_path / "merges")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == f"{tmp_path / 'merges'}: wrote the merges of {config}"
    assert "deprecated" not in result.stderr, result.stderr[-3000:]
    assert torch.equal(rewards(tmp_path / "merges" / "lambda-0.0"), rewards(rm))
    half = tensors(tmp_path / "merges" / "lambda-0.5")["model.norm.weight"]
    expected = (tensors(rm)["model.norm.weight"] + tensors(lm)["model.norm.weight"]) / 2
    assert torch.allclose(half, expected, atol=1e-6)


def test_wrapper_script_works_where_pth_files_are_skipped(tmp_path, pair):
    """`python -S` skips site-packages .pth files: plain mergekit fails, dogerm-mergekit-yaml still works."""
    _, _, config = pair
    src = str(Path(dogerm_mergekit.__file__).parents[1])
    path = os.pathsep.join([src, sysconfig.get_paths()["purelib"]])
    plain = "import sys; from mergekit.scripts.run_yaml import main; sys.exit(main())"
    wrapped = "import sys; from dogerm_mergekit.cli import mergekit_yaml; sys.exit(mergekit_yaml())"
    failed = _run([sys.executable, "-S", "-c", plain, str(config), str(tmp_path / "plain")], PYTHONPATH=path)
    assert failed.returncode != 0 and "allow-crimes" in failed.stderr  # stock mergekit cannot do it
    worked = _run([sys.executable, "-S", "-c", wrapped, str(config), str(tmp_path / "wrapped")], PYTHONPATH=path)
    assert worked.returncode == 0, worked.stderr[-3000:]
    assert (tmp_path / "wrapped" / "model.safetensors").exists()


def test_hook_costs_little_at_interpreter_start():
    """The .pth line runs in every interpreter: it must not import mergekit, torch or importlib.abc."""
    probe = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('mergekit', 'torch', 'dogerm_mergekit')))"
    result = _run([sys.executable, "-c", probe])
    assert result.stdout.strip() == "['dogerm_mergekit', 'dogerm_mergekit._hook']"


MISSPELT = {"mergekit-yaml": ("dogrem", "dogerm"), "dogerm-mergekit-yaml": ("DogeRM", "dogerm"),
            "dogerm-sweep": ("dogerm-ties", "dogerm_ties"), "mergekit-multi": ("dogrem_ties", "dogerm_ties")}


@pytest.mark.parametrize("command", sorted(MISSPELT))
def test_a_misspelt_method_gets_one_line_naming_the_right_one(tmp_path, pair, command):
    """Through each command line (other misspellings: tests/test_method_names.py), before anything is written."""
    rm, lm, _ = pair
    wrong, right = MISSPELT[command]
    config = tmp_path / "typo.yml"
    document = {**config_dict(rm, lm, 0.3), "merge_method": wrong}
    if command == "mergekit-multi":
        config.write_text(yaml.safe_dump_all([{"name": "first", **document}]))
        args = ["--intermediate-dir", str(tmp_path / "merges")]
    else:
        config.write_text(yaml.safe_dump(document))
        args = [str(tmp_path / "out")]
    result = _run([str(BIN / command), str(config), *args])
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"Error: {config}{' (first)' if command == 'mergekit-multi' else ''}: merge_method `{wrong}` is not a "
        f"merge method; did you mean `{right}`?"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "merges").exists()


def test_other_methods_are_left_to_mergekit(tmp_path, pair):
    """A mergekit method (and a mergekit kernel dogerm does not offer) gets no suggestion: mergekit's own run."""
    rm, lm, _ = pair
    config = tmp_path / "linear.yml"
    config.write_text(yaml.safe_dump({**config_dict(rm, lm, 0.3), "merge_method": "linear"}))
    result = _run([str(BIN / "mergekit-yaml"), str(config), str(tmp_path / "out")])
    assert result.returncode != 0 and "allow-crimes" in result.stderr and "did you mean" not in result.stderr
