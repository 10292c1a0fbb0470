"""Result files, cache reuse and resuming an interrupted run (with a fake scorer: no model needed)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.tests.manifests import write_manifest

from dogerm_eval.benchmarks import Task, prepare_task, run_model, run_task
from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_eval.errors import ModelError, OptionError
from dogerm_eval.models import ResolvedModel
from dogerm_eval.results import model_fingerprint, read_per_example

SETTINGS = {"format": {"system_prompt": None}, "dtype": "float32", "compat": "fast"}
COUNTS = {"math-prm": 5, "hep-go": 3, "alpacaeval-easy": 2}


def write_rewardbench(path: Path, counts: dict[str, int], prefix: str = "") -> Path:
    rewardbench_rows(counts, prefix).to_parquet(path)
    return path


def text_score(prompt: str, response: str) -> float:
    """Deterministic score: 'good' answers beat 'bad' ones except for prompts ending in 1?."""
    bonus = 1.0 if response.startswith("good") else 0.0
    return bonus * (-1.0 if prompt.endswith("1?") else 1.0) + 0.01 * len(prompt)


class FakeScorer:
    """Scores with `text_score`; counts what it scored; raises on call number `fail_on` (1-based)."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.scored: list[tuple[str, str]] = []
        self.calls = 0
        self.fail_on = fail_on

    def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        self.scored.extend(conversations)
        return np.array([text_score(p, r) for p, r in conversations])

    def settings_record(self) -> dict:
        return {"fake": True}


@pytest.fixture
def model(tmp_path: Path) -> ResolvedModel:
    folder = tmp_path / "my-rm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return ResolvedModel(path=folder, ref=str(folder))


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return prepare_task("rewardbench", str(write_rewardbench(tmp_path / "rb.parquet", COUNTS)), None)


def never() -> FakeScorer:
    raise AssertionError("the scorer must not be built when the result is cached")


def test_result_json_layout(tmp_path: Path, model: ResolvedModel, task: Task) -> None:
    out = tmp_path / "out"
    result = run_task(task, model, model_fingerprint(model), SETTINGS, FakeScorer, out, chunk_size=4)
    path = out / "my-rm" / "rewardbench.json"
    assert json.loads(path.read_text()) == result
    assert {"model", "revision", "dataset", "dataset_revision", "settings", "subsets", "sections", "score",
            "per_example"} <= set(result)
    assert result["model"] == str(model.path) and result["revision"] is None
    assert result["dataset_revision"].startswith("sha256:")
    assert result["settings"] == {**SETTINGS, "scorer": {"fake": True}}
    assert result["per_example"] == "rewardbench.per_example.parquet"
    per_example = read_per_example(path)
    assert list(per_example.columns) == ["id", "subset", "score_chosen", "score_rejected", "correct"]
    frame = task.table.frame
    expected_chosen = [text_score(p, c) for p, c in zip(frame["prompt"], frame["chosen"])]
    assert per_example["score_chosen"].tolist() == pytest.approx(expected_chosen)
    # accuracies recomputed independently from the per-example file
    assert result["subsets"] == pytest.approx(
        (per_example["score_chosen"] > per_example["score_rejected"]).groupby(per_example["subset"]).mean().to_dict())
    assert sorted(p.name for p in (out / "my-rm").iterdir()) == ["rewardbench.json", "rewardbench.per_example.parquet"]


def test_cache_reused_for_same_key_and_not_otherwise(tmp_path: Path, model: ResolvedModel, task: Task) -> None:
    out = tmp_path / "out"
    first = run_model([task], model, SETTINGS, lambda m: FakeScorer(), out)
    assert run_model([task], model, SETTINGS, lambda m: never(), out) == first
    built = []
    run_model([task], model, {**SETTINGS, "dtype": "bfloat16"}, lambda m: built.append(1) or FakeScorer(), out,
              overwrite=True)
    assert built == [1]
    # a changed model folder (content hash) is not reused either; its stale result is replaced without asking
    (model.path / "config.json").write_text('{"changed": 1}')
    built.clear()
    run_model([task], model, {**SETTINGS, "dtype": "bfloat16"}, lambda m: built.append(1) or FakeScorer(), out)
    assert built == [1]
    # nor a different dataset file
    other = prepare_task("rewardbench", str(write_rewardbench(tmp_path / "rb2.parquet", COUNTS, prefix="x")), None)
    built.clear()
    run_model([other], model, {**SETTINGS, "dtype": "bfloat16"}, lambda m: built.append(1) or FakeScorer(), out,
              overwrite=True)
    assert built == [1]


def test_no_result_is_replaced_unasked(tmp_path: Path, model: ResolvedModel, task: Task) -> None:
    """A run on some subsets writes beside the full result; one on other data or settings is refused before the
    scorer is built, naming what differs and --overwrite, and replaces the result only with it."""
    out = tmp_path / "out"
    full = run_model([task], model, SETTINGS, lambda m: FakeScorer(), out)["rewardbench"]
    path = out / "my-rm" / "rewardbench.json"
    some = prepare_task("rewardbench", str(tmp_path / "rb.parquet"), ["math-prm", "hep-go"])
    part = run_model([some], model, SETTINGS, lambda m: FakeScorer(), out)["rewardbench"]
    assert sorted(part["subsets"]) == ["hep-go", "math-prm"] and json.loads(path.read_text()) == full
    beside = out / "my-rm" / "rewardbench@hep-go+math-prm.json"
    assert json.loads(beside.read_text()) == part and part["per_example"] == f"{beside.stem}.per_example.parquet"
    assert len(read_per_example(beside)) == 8 and len(read_per_example(path)) == 10
    assert run_model([task], model, SETTINGS, lambda m: never(), out)["rewardbench"] == full  # both still cached
    assert run_model([some], model, SETTINGS, lambda m: never(), out)["rewardbench"] == part
    other = prepare_task("rewardbench", str(write_rewardbench(tmp_path / "rb2.parquet", COUNTS, prefix="x")), None)
    brief = {**SETTINGS, "format": {"system_prompt": "Be brief."}}
    for tasks, settings, differs in (([task], {**SETTINGS, "dtype": "bfloat16"}, "settings dtype"),
                                     ([task], brief, "settings format"),
                                     ([other], SETTINGS, f"data {task.table.dataset}")):
        with pytest.raises(OptionError, match=f"{path} holds a result on other {differs}.*pass --overwrite"):
            run_model(tasks, model, settings, lambda m: never(), out)
        assert json.loads(path.read_text()) == full
    again = run_model([other], model, SETTINGS, lambda m: FakeScorer(), out, overwrite=True)["rewardbench"]
    assert json.loads(path.read_text()) == again and again["dataset_revision"] != full["dataset_revision"]


def test_folder_fingerprint_memo(tmp_path: Path, model: ResolvedModel) -> None:
    memo = tmp_path / "memo.json"
    first = model_fingerprint(model, memo)
    assert first == model_fingerprint(model) and memo.is_file()
    # a memo entry is trusted only while size and mtime match: a stale digest with the same stat is used ...
    entries = json.loads(memo.read_text())
    key = str((model.path / "config.json").resolve())
    entries[key][2] = "0" * 64
    memo.write_text(json.dumps(entries))
    assert model_fingerprint(model, memo) != first
    # ... and a file with a new mtime is hashed again
    stat = (model.path / "config.json").stat()
    os.utime(model.path / "config.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert model_fingerprint(model, memo) == first


def test_sweep_checkpoint_is_keyed_by_its_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished checkpoint of a sweep: the digests in sweep.json are the key; its weights are not read."""
    folder = tmp_path / "sweep" / "lambda-0.30"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights" * 1000)
    model = ResolvedModel(path=folder, ref=str(folder))
    unrecorded = model_fingerprint(model)
    write_manifest(folder.parent, [0.3])
    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    recorded = model_fingerprint(model, tmp_path / "memo.json")
    monkeypatch.undo()
    assert recorded.startswith("sweep:") and recorded != unrecorded
    assert not any(path.startswith(str(folder)) for path in opened)
    assert not (tmp_path / "memo.json").exists()
    # the key comes from the manifest, and holds only while the files are the bytes it records
    (folder / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(ModelError, match=r"model.safetensors changed since dogerm-sweep wrote it \(7000 bytes then, 7 now"):
        model_fingerprint(model)
    (folder / "model.safetensors").write_bytes(b"weights" * 999 + b"corrupt")  # same size, other bytes
    with pytest.raises(ModelError, match="digest differs"):
        model_fingerprint(model)
    (folder / "model.safetensors").write_bytes(b"corrupt")
    write_manifest(folder.parent, [0.3])
    assert model_fingerprint(model) not in (recorded, unrecorded)
    # a folder the manifest does not record (not finished) is hashed as any local folder
    other = ResolvedModel(path=folder.parent / "lambda-0.60", ref="lambda-0.60")
    shutil.copytree(folder, other.path)
    assert model_fingerprint(other).startswith("sha256:")
    (folder.parent / "sweep.json").write_text("{not json")
    with pytest.raises(ModelError, match="sweep.json"):
        model_fingerprint(model)


def test_hub_commit_is_the_fingerprint(tmp_path: Path) -> None:
    hub = ResolvedModel(path=tmp_path, ref="org/rm@lambda-0.30", repo_id="org/rm", revision="lambda-0.30",
                        commit="a" * 40)
    assert model_fingerprint(hub) == "a" * 40


def test_interrupted_run_resumes_from_checkpoints(tmp_path: Path, model: ResolvedModel, task: Task) -> None:
    out = tmp_path / "out"
    fp = model_fingerprint(model)
    failing = FakeScorer(fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        run_task(task, model, fp, SETTINGS, lambda: failing, out, chunk_size=4)
    assert not (out / "my-rm" / "rewardbench.json").exists()
    chunks = sorted(p.name for p in (out / "my-rm" / ".cache").rglob("chunk-*.npy"))
    assert chunks == ["chunk-00000.npy", "chunk-00001.npy"]   # 10 chosen -> chunks of 4, 4, 2; then rejected
    resumed = FakeScorer()
    result = run_task(task, model, fp, SETTINGS, lambda: resumed, out, chunk_size=4)
    assert len(resumed.scored) == 2 * len(task.table.frame) - 8   # the two saved chunks are not rescored
    assert resumed.scored[0] == (task.table.frame["prompt"][8], task.table.frame["chosen"][8])
    assert not (out / "my-rm" / ".cache").exists()
    fresh = run_task(task, model, fp, SETTINGS, FakeScorer, tmp_path / "fresh", chunk_size=4)
    assert {k: result[k] for k in ("subsets", "sections", "score")} == {
        k: fresh[k] for k in ("subsets", "sections", "score")}
    pd.testing.assert_frame_equal(read_per_example(out / "my-rm" / "rewardbench.json"),
                                  read_per_example(tmp_path / "fresh" / "my-rm" / "rewardbench.json"))


def test_fast_chunks_cover_distinct_texts_over_all_passes(tmp_path: Path, model: ResolvedModel, task: Task) -> None:
    scorer = FakeScorer()
    run_task(task, model, "fp", SETTINGS, lambda: scorer, tmp_path / "out", chunk_size=4)
    assert scorer.calls == 5   # 20 distinct (prompt, response) pairs over both passes -> 5 chunks of 4
    assert len(scorer.scored) == len(set(scorer.scored)) == 20


def test_a_text_repeated_across_passes_and_subsets_is_scored_once(tmp_path: Path, model: ResolvedModel) -> None:
    rows = rewardbench_rows({"math-prm": 3, "hep-go": 3})
    rows.loc[0, "rejected"] = rows.loc[0, "chosen"]                    # identical chosen and rejected
    rows.loc[4, ["prompt", "chosen"]] = rows.loc[1, ["prompt", "chosen"]].to_numpy()  # same pair in another subset
    rows.loc[4, "rejected"] = "another bad answer"
    rows.to_parquet(tmp_path / "rb.parquet")
    task = prepare_task("rewardbench", str(tmp_path / "rb.parquet"), None)
    scorer = FakeScorer()
    result = run_task(task, model, "fp", SETTINGS, lambda: scorer, tmp_path / "out", chunk_size=2)
    assert len(scorer.scored) == len(set(scorer.scored)) == 10
    per_example = read_per_example(tmp_path / "out" / "my-rm" / "rewardbench.json")
    assert per_example["score_chosen"][0] == per_example["score_rejected"][0]
    assert not per_example["correct"][0] and result["ties"]["exact"] == 1   # an exact tie is wrong
    assert per_example["score_chosen"][4] == per_example["score_chosen"][1]


class CompatFakeScorer(FakeScorer):
    compat = "rewardbench"


@pytest.mark.parametrize("chunk_size", [4, 64, 100])
def test_compat_chunks_keep_batches_of_64(tmp_path: Path, model: ResolvedModel, chunk_size: int) -> None:
    """--checkpoint-every rounds up to a multiple of 64 in compat mode, per pass, without de-duplication."""
    rows = rewardbench_rows({"math-prm": 70, "hep-go": 60})
    rows.loc[0, "rejected"] = rows.loc[0, "chosen"]
    rows.to_parquet(tmp_path / "rb.parquet")
    task = prepare_task("rewardbench", str(tmp_path / "rb.parquet"), None)
    calls: list[int] = []
    scorer = CompatFakeScorer()
    original = scorer.score
    scorer.score = lambda conversations: (calls.append(len(conversations)), original(conversations))[1]
    run_task(task, model, "fp", SETTINGS, lambda: scorer, tmp_path / "out", chunk_size=chunk_size)
    size = 64 if chunk_size <= 64 else 128
    expected = [min(size, 130 - start) for start in range(0, 130, size)] * 2
    assert calls == expected
    assert len(scorer.scored) == 260   # every text where it appears, as rewardbench scores them
