"""Issue 18's evaluation rows through the real `dogerm-eval` command line (subprocesses): a numeric prompt, the
authors' own RM-Bench and RewardMATH files (JSON arrays), corrupted files, and a reward model that scores NaN."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from evaluation.tests.published import rewardbench_v1_rows, rewardmath_rows, rmbench_rows, write
from evaluation.tests.test_cli_errors import assert_refused, dogerm_eval


@pytest.fixture(scope="module")
def nan_rm(tiny_rm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny RM with a NaN score head: every score is NaN."""
    folder = tmp_path_factory.mktemp("nan") / "nan-rm"
    shutil.copytree(tiny_rm_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["score.weight"] = torch.full_like(weights["score.weight"], float("nan"))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_numeric_prompt_is_refused_before_the_model_loads(tiny_rm_dir: Path, tmp_path: Path) -> None:
    rows = rewardbench_v1_rows()
    rows[1]["prompt"] = 5
    data = write(rows, tmp_path / "pairs.jsonl", "lines")
    result = dogerm_eval("pairwise", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(tmp_path / "out"))
    assert_refused(result, f"{data}: row 1 (id 1), column 'prompt': expected a valid string, found int 5")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "message"), [
    ('[\n    {\n        "id": 0,\n        "prompt": "p",', "cannot read {data} as a JSON array (truncated or invalid"),
    ("", "{data} is empty"),
    ('[{"id": 0, "prompt": "p", "chosen": ["a", "b", "c"], "rejected": ["a", "b"], "domain": "chat"}]',
     "{data}: row 0 (id 0), column 'rejected': expected at least 3 items, 2 found"),
])
def test_corrupt_files_are_one_line(tiny_rm_dir: Path, tmp_path: Path, content: str, message: str) -> None:
    data = tmp_path / "total_dataset.json"
    data.write_text(content)
    result = dogerm_eval("rmbench", str(tiny_rm_dir), "--data", str(data), "--output-dir", str(tmp_path / "out"))
    assert_refused(result, message.format(data=data))
    assert not (tmp_path / "out").exists()


def test_rmbench_and_rewardmath_official_json_arrays(tiny_rm_dir: Path, tmp_path: Path) -> None:
    """`total_dataset.json` and `RewardMATH_direct.json` as published (JSON arrays) are scored as they are, and
    give what the same rows give as JSON lines."""
    out = tmp_path / "out"
    total = write(rmbench_rows(), tmp_path / "total_dataset.json", "array")
    direct = write(rewardmath_rows(), tmp_path / "RewardMATH_direct.json", "array")
    for command, data in (("rmbench", total), ("rewardmath", direct)):
        result = dogerm_eval(command, str(tiny_rm_dir), "--data", str(data), "--output-dir", str(out))
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{command} score: " in result.stdout
    rm = json.loads((out / tiny_rm_dir.name / "rmbench.json").read_text())
    assert rm["dataset"] == str(total.resolve()) and sum(rm["counts"].values()) == 10
    assert json.loads((out / tiny_rm_dir.name / "rewardmath.json").read_text())["num_problems"] == 3
    lines = write(rmbench_rows(), tmp_path / "rmbench.jsonl", "lines")
    again = dogerm_eval("rmbench", str(tiny_rm_dir), "--data", str(lines), "--output-dir", str(tmp_path / "out2"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "out2" / tiny_rm_dir.name / "rmbench.json").read_text())["sections"] == \
        rm["sections"]


def test_nan_scores_fail_with_the_count_or_are_marked(nan_rm: Path, tmp_path: Path) -> None:
    data = write(rewardbench_v1_rows(), tmp_path / "rb.parquet", "parquet")
    out = tmp_path / "out"
    refused = dogerm_eval("rewardbench", str(nan_rm), "--data", str(data), "--output-dir", str(out))
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert last.startswith(f"Error: {nan_rm}: 12 of 12 scores are not finite (NaN 12) on rewardbench; no result"), last
    assert "score:" not in refused.stdout and not (out / "nan-rm" / "rewardbench.json").exists()

    allowed = dogerm_eval("rewardbench", str(nan_rm), "--data", str(data), "--output-dir", str(out),
                          "--allow-nonfinite-scores")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    score_line = allowed.stdout.strip().splitlines()[-1]
    assert score_line == ("rewardbench score: 0.0000 (partial: see * above) [marked: 12 of 12 scores are not finite "
                          "(NaN 12), counted as never winning]"), allowed.stdout
    header, values = allowed.stdout.strip().splitlines()[:2]
    assert header.split()[-1] == "rewardbench/nonfinite-scores" and values.split()[-1] == "12"
    result = json.loads((out / "nan-rm" / "rewardbench.json").read_text())
    assert result["nonfinite_scores"]["total"] == 12 and result["nonfinite_scores"]["by_subset"] == {
        "alpacaeval-easy": 4, "hep-go": 4, "math-prm": 4}

    push = dogerm_eval("rewardbench", str(nan_rm), "--data", str(data), "--output-dir", str(tmp_path / "o2"),
                       "--allow-nonfinite-scores", "--push-results")
    assert_refused(push, "--allow-nonfinite-scores cannot be used with --push-results")
