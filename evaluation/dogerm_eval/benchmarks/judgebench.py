"""JudgeBench (Tan et al., ICLR 2025; ScalerLab/JudgeBench): pairs of GPT-4o responses where one is objectively
correct, from knowledge, reasoning, math and coding sources.

Schema (the repository's `data/dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl`, JSON lines, 350 pairs;
the Claude-3.5-Sonnet file has the same keys): `pair_id`, `original_id`, `source`, `question`, `response_model`,
`response_A`, `response_B`, `label` ("A>B" or "B>A").

Scoring re-implemented from the authors' code (ScalerLab/JudgeBench @ e2c52c2):
- a reward model scores user = `question`, assistant = each response (`utils/judges.py`, the reward-model judges);
  its decision is "A>B" when score(A) > score(B), else "B>A";
- `run_judge.py` judges every pair in both orders unless `--single_game`, and `utils/metrics.py`
  `compute_final_metrics` counts a pair correct when the two decisions (the second flipped back) agree with the label
  more often than against it. For a scalar reward model the second order repeats the first except on exact ties
  (and NaN), where the two decisions cancel: a pair is correct exactly when the labelled-better response scores
  strictly higher, whatever the order (the order of A and B cannot matter). The authors' published reward-model
  results (their `outputs/...judge_name=reward_model...` files) were run in both orders; `--single_game` would give
  exact ties to B;
- categories by `source` prefix (`run_judge.py`): `mmlu-pro*` knowledge, `livebench-reasoning*` reasoning,
  `livebench-math*` math, `livecodebench*` coding; each is the accuracy over its pairs, and Overall is the accuracy
  over all pairs (the empty prefix), not the mean of the categories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable, load_local, load_url, select_subsets
from dogerm_eval.errors import DataError
from dogerm_eval.results import Evaluation, coverage, metric_columns
from dogerm_eval.schema import Id, Rows, Text, check_rows

NAME = "judgebench"
CARD_DATASET = "ScalerLab/JudgeBench"
SPLIT = "gpt"
URL = ("https://raw.githubusercontent.com/ScalerLab/JudgeBench/e2c52c284e735e139b3daa61c206ee208f36c461/data/"
       "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl")
SCHEMA = "JudgeBench: pair_id, source, question, response_A, response_B, label ('A>B' or 'B>A')"
LABELS = ("A>B", "B>A")
CATEGORIES = {"mmlu-pro": "knowledge", "livebench-reasoning": "reasoning", "livebench-math": "math",
              "livecodebench": "coding"}  # source prefix -> category, as run_judge.py reports them


class Row(Rows):
    """A line of the authors' `data/dataset=judgebench,...jsonl` (JSON lines); original_id, response_model not read."""

    same_type = ("pair_id",)
    pair_id: Id
    source: Text
    question: Text
    response_A: Text
    response_B: Text
    label: Text


def category_of(source: str) -> str | None:
    """The category of a `source` value (prefix match, as the authors' code does); None for other sources."""
    return next((name for prefix, name in CATEGORIES.items() if str(source).startswith(prefix)), None)


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """The local file `data` (or the authors' GPT-4o file from GitHub), checked; `subsets` are categories."""
    table = load_local(data) if data else load_url(URL)
    check_rows(table.frame, Row, table.dataset, id_column="pair_id", description=SCHEMA)
    frame = table.frame
    bad = ~frame["label"].isin(LABELS)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{table.dataset}: row {row} (pair_id {frame['pair_id'].iloc[row]!r}) has label "
                        f"{frame['label'].iloc[row]!r}; expected 'A>B' or 'B>A'")
    categories = frame["source"].map(category_of)
    if categories.isna().any():
        row = int(categories.isna().to_numpy().argmax())
        raise DataError(f"{table.dataset}: row {row} has source {frame['source'].iloc[row]!r}, which names none of "
                        f"JudgeBench's categories (sources starting with {', '.join(CATEGORIES)})")
    frame = select_subsets(frame.assign(category=categories), "category", subsets, CATEGORIES.values(),
                           table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """Response A of every pair, then response B."""
    return [[(str(q), str(r)) for q, r in zip(frame["question"], frame[column])]
            for column in ("response_A", "response_B")]


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Per pair: the labelled-better response strictly higher; accuracy per source, per category and over all."""
    score_a, score_b = scores[: len(frame)], scores[len(frame):]
    a_better = frame["label"].to_numpy() == "A>B"
    correct = np.where(a_better, score_a > score_b, score_b > score_a)  # ties and NaN: wrong in both orders
    source = frame["source"].astype(str).to_numpy()
    category = frame["category"].astype(str).to_numpy()
    subsets = {name: float(correct[source == name].mean()) for name in sorted(set(source))}
    sections = {name.capitalize(): float(correct[category == name].mean()) for name in CATEGORIES.values()
                if (category == name).any()}
    per_example = pd.DataFrame({"id": frame["pair_id"].astype(str).to_numpy(), "subset": source,
                                "category": category, "label": frame["label"].to_numpy(), "score_a": score_a,
                                "score_b": score_b, "correct": correct})
    extra: dict[str, Any] = {
        "counts": {name: int((category == name).sum()) for name in CATEGORIES.values() if (category == name).any()},
        **coverage(set(category), list(CATEGORIES.values())),
        "ties": {"exact": int((score_a == score_b).sum()), "nan": int(np.isnan(scores).sum())},
    }
    return Evaluation(subsets=subsets, sections=sections, score=float(correct.mean()), per_example=per_example,
                      extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `judgebench/<category>` (knowledge, reasoning, math, coding) and `judgebench/score`."""
    return metric_columns(NAME, result["sections"], result["score"])
