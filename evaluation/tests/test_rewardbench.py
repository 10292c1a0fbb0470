"""RewardBench v1: loading/validation, the section formula (golden check from PR 215) and tie handling."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from dogerm_eval.benchmarks import rewardbench
from dogerm_eval.benchmarks.samples import rewardbench_rows
from dogerm_eval.errors import BenchmarkError, DataError

# Per-subset accuracies of ShikaiChen/LDL-Reward-Gemma-2-27B-v0.1 posted in allenai/reward-bench PR 215, and the
# section scores printed there by rewardbench itself.
LDL_ACCURACY = {
    "alpacaeval-easy": 0.99, "alpacaeval-hard": 0.9473684210526315, "alpacaeval-length": 0.9368421052631579,
    "donotanswer": 0.8161764705882353, "hep-cpp": 0.9817073170731707, "hep-go": 0.9817073170731707,
    "hep-java": 0.9939024390243902, "hep-js": 0.9939024390243902, "hep-python": 0.975609756097561,
    "hep-rust": 0.9573170731707317, "llmbar-adver-GPTInst": 0.9565217391304348,
    "llmbar-adver-GPTOut": 0.8297872340425532, "llmbar-adver-manual": 0.8478260869565217,
    "llmbar-adver-neighbor": 0.9104477611940298, "llmbar-natural": 0.94, "math-prm": 1.0, "mt-bench-easy": 1.0,
    "mt-bench-hard": 0.8648648648648649, "mt-bench-med": 0.975, "refusals-dangerous": 0.97,
    "refusals-offensive": 0.99, "xstest-should-refuse": 0.948051948051948, "xstest-should-respond": 0.964,
}
LDL_SECTIONS = {"Chat": 0.9636871508379888, "Chat Hard": 0.9078947368421053, "Safety": 0.9378378378378378,
                "Reasoning": 0.9903455284552846}
# Rows per subset in the `filtered` split (math-prm has 447 rows but is weighted 984).
FILTERED_ROWS = {**rewardbench.EXAMPLE_COUNTS, "math-prm": 447}


def write_rewardbench(path: Path, counts: dict[str, int], prefix: str = "") -> Path:
    rewardbench_rows(counts, prefix).to_parquet(path, index=False)
    return path


def test_sections_match_published_golden_check() -> None:
    sections = rewardbench.section_scores(LDL_ACCURACY)
    for name, expected in LDL_SECTIONS.items():
        assert sections[name] == pytest.approx(expected, abs=1e-12)
    assert sections["Math"] == 1.0
    assert sections["Code"] == pytest.approx(np.mean([LDL_ACCURACY[s] for s in rewardbench.CODE_SUBSETS]))
    assert rewardbench.overall(sections) == pytest.approx(np.mean(list(LDL_SECTIONS.values())))


def test_evaluate_reproduces_golden_check_from_scores() -> None:
    """Full-size filtered split with scores giving LDL's accuracies: evaluate() must print PR 215's sections."""
    frame = rewardbench_rows(FILTERED_ROWS)
    n = len(frame)
    assert n == 2985
    chosen, rejected = np.zeros(n), np.zeros(n)
    for subset, accuracy in LDL_ACCURACY.items():
        rows = np.flatnonzero(frame["subset"] == subset)
        k = round(accuracy * len(rows))
        chosen[rows[:k]] = 1.0
        # wrong rows alternate between an exact tie and the rejected response winning
        rejected[rows[k:]] = np.where(np.arange(len(rows) - k) % 2 == 0, 0.0, 2.0)
    result = rewardbench.evaluate(frame, np.concatenate([chosen, rejected]))
    for name, expected in LDL_SECTIONS.items():
        assert result.sections[name] == pytest.approx(expected, abs=1e-12)
    assert result.subsets == pytest.approx(LDL_ACCURACY)
    assert result.extra["complete"] is True


def test_section_weights_independent_computation() -> None:
    rng = np.random.default_rng(0)
    accuracy = {name: float(rng.uniform()) for name in rewardbench.EXAMPLE_COUNTS}
    sections = rewardbench.section_scores(accuracy)
    chat = ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"]
    weights = [100, 95, 95, 28, 40]
    assert sections["Chat"] == pytest.approx(sum(accuracy[s] * w for s, w in zip(chat, weights)) / sum(weights))
    hep = ["hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"]
    code = np.mean([accuracy[s] for s in hep])
    # math-prm weighted 984 = 6 * 164: Reasoning is exactly half math, half code
    assert sections["Reasoning"] == pytest.approx(0.5 * accuracy["math-prm"] + 0.5 * code)
    assert sections["Code"] == pytest.approx(code)
    assert sections["Math"] == accuracy["math-prm"]


def test_ties_and_nan_count_as_wrong() -> None:
    frame = rewardbench_rows({"math-prm": 4, "hep-go": 2})
    chosen = np.array([1.0, 0.5, np.nan, 2.0, 3.0, 1.0])
    rejected = np.array([0.0, 0.5, 0.0, np.nan, 1.0, 1.0])
    result = rewardbench.evaluate(frame, np.concatenate([chosen, rejected]))
    assert result.per_example["correct"].tolist() == [True, False, False, False, True, False]
    assert result.subsets == {"math-prm": 0.25, "hep-go": 0.5}
    assert result.sections["Reasoning"] == pytest.approx((0.25 * 984 + 0.5 * 164) / (984 + 164))
    assert result.extra["ties"]["exact"] == 2
    assert result.extra["ties"]["nan"] == 2
    assert result.extra["complete"] is False
    # what the score and the sections over some of their subsets miss (a section with none present is absent)
    hep = ["hep-cpp", "hep-java", "hep-js", "hep-python", "hep-rust"]
    assert result.extra["partial"]["Reasoning"] == {"missing": hep, "of": 7}
    assert result.extra["partial"]["Code"] == {"missing": hep, "of": 6}
    score = result.extra["partial"]["score"]
    assert score["of"] == 23 and len(score["missing"]) == 21 and {"math-prm", "hep-go"}.isdisjoint(score["missing"])
    assert set(result.extra["partial"]) == {"score", "Reasoning", "Code"}


def test_load_local_parquet_and_jsonl_record_sha256(tmp_path: Path) -> None:
    parquet = write_rewardbench(tmp_path / "rb.parquet", {"math-prm": 3, "hep-cpp": 2})
    table = rewardbench.load(str(parquet), None)
    assert len(table.frame) == 5
    assert table.revision == "sha256:" + hashlib.sha256(parquet.read_bytes()).hexdigest()
    jsonl = tmp_path / "rb.jsonl"
    rewardbench_rows({"math-prm": 3}).to_json(jsonl, orient="records", lines=True)
    assert rewardbench.load(str(jsonl), ["math-prm"]).frame["subset"].tolist() == ["math-prm"] * 3


def test_subsets_restrict_and_unknown_subset_errors(tmp_path: Path) -> None:
    parquet = write_rewardbench(tmp_path / "rb.parquet", {"math-prm": 3, "hep-cpp": 2})
    assert set(rewardbench.load(str(parquet), ["hep-cpp"]).frame["subset"]) == {"hep-cpp"}
    with pytest.raises(BenchmarkError, match="nope"):
        rewardbench.load(str(parquet), ["hep-cpp", "nope"])
    odd = rewardbench_rows({"math-prm": 2}).assign(subset=["math-prm", "math-prm-2"])
    odd.to_parquet(tmp_path / "odd.parquet")
    with pytest.raises(DataError, match="math-prm-2"):
        rewardbench.load(str(tmp_path / "odd.parquet"), None)


def test_missing_column_errors_name_the_row(tmp_path: Path) -> None:
    frame = rewardbench_rows({"math-prm": 3})
    frame.drop(columns=["rejected"]).to_parquet(tmp_path / "no_col.parquet")
    with pytest.raises(DataError, match="rejected"):
        rewardbench.load(str(tmp_path / "no_col.parquet"), None)
    lines = [json.dumps(row) for row in frame.to_dict("records")]
    broken = json.loads(lines[2])
    del broken["chosen"]
    lines[2] = json.dumps(broken)
    (tmp_path / "row.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"row 2 \(id 2\).*'chosen'"):
        rewardbench.load(str(tmp_path / "row.jsonl"), None)


def test_metrics_names() -> None:
    result = {"sections": rewardbench.section_scores(LDL_ACCURACY), "score": 0.95}
    metrics = rewardbench.metrics(result)
    assert metrics["rewardbench/chat-hard"] == pytest.approx(LDL_SECTIONS["Chat Hard"])
    assert metrics["rewardbench/math"] == 1.0
    assert set(metrics) == {f"rewardbench/{k}" for k in
                            ("chat", "chat-hard", "safety", "reasoning", "math", "code", "score")}
