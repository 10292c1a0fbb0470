"""RewardBench v1 (allenai/reward-bench, split `filtered`): pairwise accuracy, sections, DogeRM's Math and Code.

Section weighting re-implemented from rewardbench (allenai/reward-bench, `EXAMPLE_COUNTS` and
`calculate_scores_per_section`, Apache-2.0): a section is the mean of its subsets' accuracies weighted by the
subsets' canonical row counts, with math-prm weighted 984 (its pre-filtering size), so Reasoning =
0.5 * math-prm + 0.5 * mean(hep-*). Overall = mean of the four sections. DogeRM's "Math" is the math-prm accuracy and
its "Code" the mean of the six hep-* accuracies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable, load_hub, load_local, select_subsets
from dogerm_eval.results import Evaluation, coverage, metric_columns
from dogerm_eval.schema import Id, Rows, Text, check_rows

NAME = "rewardbench"
HUB_ID = "allenai/reward-bench"
CARD_DATASET = HUB_ID
SPLIT = "filtered"
#: `--compat rewardbench` truncation: rewardbench's scripts/run_rm.py (v1) cuts on the left.
REWARDBENCH_TRUNCATION = "left"
SCHEMA = ("RewardBench v1: id, subset (one of its 23 subsets), prompt, chosen, rejected (strings); "
          "chosen_model, rejected_model optional")


class Row(Rows):
    """A row of the `filtered` split (allenai/reward-bench: parquet; `chosen_model`/`rejected_model` not read)."""

    same_type = ("id",)
    id: Id
    subset: Text
    prompt: Text
    chosen: Text
    rejected: Text

SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": (
        "mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst", "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "refusals-dangerous": 100, "refusals-offensive": 100,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136, "math-prm": 984,
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
MATH_SUBSET = "math-prm"
CODE_SUBSETS = ("hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust")
NEAR_TIE = 1e-3


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """Load (Hub `filtered` split, or the local file `data`), validate the schema, keep `subsets`."""
    table = load_local(data) if data else load_hub(HUB_ID, SPLIT)
    check_rows(table.frame, Row, table.dataset, id_column="id", description=SCHEMA)
    frame = select_subsets(table.frame, "subset", subsets, EXAMPLE_COUNTS, table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """Two scoring passes in dataset order, as rewardbench does: all chosen pairs, then all rejected pairs."""
    prompts = frame["prompt"].tolist()
    return [list(zip(prompts, frame["chosen"].tolist())), list(zip(prompts, frame["rejected"].tolist()))]


def section_scores(subset_accuracy: Mapping[str, float]) -> dict[str, float]:
    """The four sections (over the subsets present), plus DogeRM's Math and Code when their subsets are present."""
    sections: dict[str, float] = {}
    for section, names in SECTIONS.items():
        present = [name for name in names if name in subset_accuracy]
        if present:
            weights = np.array([EXAMPLE_COUNTS[name] for name in present], dtype=np.float64)
            values = np.array([subset_accuracy[name] for name in present], dtype=np.float64)
            sections[section] = float((values * weights).sum() / weights.sum())
    if MATH_SUBSET in subset_accuracy:
        sections["Math"] = float(subset_accuracy[MATH_SUBSET])
    code = [subset_accuracy[name] for name in CODE_SUBSETS if name in subset_accuracy]
    if code:
        sections["Code"] = float(np.mean(code))
    return sections


def overall(sections: Mapping[str, float]) -> float:
    """Mean of the four RewardBench sections present (Math and Code are parts of Reasoning, not added)."""
    return float(np.mean([sections[name] for name in SECTIONS if name in sections]))


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Accuracy per subset (correct only if score(chosen) > score(rejected): ties and NaN are wrong), the sections.

    `scores` are the passes' scores concatenated (chosen, then rejected).
    """
    pairs = pair_accuracy(frame, scores)
    summary = summary_of(pairs.subsets, pairs.score)
    pairs.extra.update(coverage(pairs.subsets, list(EXAMPLE_COUNTS), {**SECTIONS, "Code": CODE_SUBSETS}))
    return Evaluation(subsets=pairs.subsets, sections=summary["sections"], score=summary["score"],
                      per_example=pairs.per_example, extra=pairs.extra)


def summary_of(subset_accuracy: Mapping[str, float], pooled: float) -> dict[str, Any]:
    """What ``metrics`` reads, from the subsets' accuracies (``pooled``, the accuracy over all pairs, is unused:
    RewardBench's score is its sections' mean); also how search's bootstrap summarises each resample."""
    sections = section_scores(subset_accuracy)
    return {"subsets": dict(subset_accuracy), "sections": sections, "score": overall(sections)}


def pair_accuracy(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Per-example rows, accuracy per subset and tie counts of chosen/rejected pairs (no sections, no score)."""
    n = len(frame)
    chosen, rejected = scores[:n], scores[n:]
    correct = chosen > rejected
    per_example = pd.DataFrame(
        {"id": frame["id"].to_numpy(), "subset": frame["subset"].to_numpy(), "score_chosen": chosen,
         "score_rejected": rejected, "correct": correct}
    )
    subsets = {str(name): float(value) for name, value in per_example.groupby("subset")["correct"].mean().items()}
    margin = np.abs(chosen - rejected)
    extra: dict[str, Any] = {
        "counts": {str(k): int(v) for k, v in per_example["subset"].value_counts().sort_index().items()},
        "ties": {"exact": int((chosen == rejected).sum()), f"below_{NEAR_TIE:g}": int((margin < NEAR_TIE).sum()),
                 "nan": int(np.isnan(chosen).sum() + np.isnan(rejected).sum())},
    }
    return Evaluation(subsets=subsets, sections={}, score=float(correct.mean()), per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Flat metrics: `rewardbench/<section>` (chat, chat-hard, safety, reasoning, math, code) and the score."""
    return metric_columns(NAME, result["sections"], result["score"])
