"""Auto-J Eval pairwise test set (GAIR-NLP/auto-j, data/test/testdata_pairwise.jsonl, 1,392 rows).

Keys: scenario, label (0: response 1 better, 1: response 2 better, 2: tie), prompt, "response 1", "response 2".
Two views are reported:
- DogeRM's (the score, `subsets`, `sections`): ties dropped, a pair is correct only if the better response scores
  strictly higher; per-scenario accuracy, and micro accuracy over Math = {math_reasoning,
  solving_exam_question_with_math}, Code = {code_simplification, code_generation, explaining_code,
  code_to_code_translation, code_correction_rewriting}, Other (the rest) and all pairs (the score).
- Auto-J's (`agreement`): all rows including ties; the predicted label is "tie" when |score1 - score2| <= t. The
  threshold t is the one that maximises agreement ON THE TEST SET itself (flagged `tuned_on_test`), so it is an
  upper bound, not a held-out number; agreement at t = 0 (only exact ties) is reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from dogerm_eval.data import LoadedTable, load_local, load_url, select_subsets
from dogerm_eval.results import Evaluation, coverage, metric_columns
from dogerm_eval.schema import Id, Rows, Text, check_rows

NAME = "autoj"
CARD_DATASET = "GAIR-NLP/auto-j"  # the id written into model cards (the data lives on GitHub)
SPLIT = "test"
URL = "https://raw.githubusercontent.com/GAIR-NLP/auto-j/main/data/test/testdata_pairwise.jsonl"
SCHEMA = ("Auto-J pairwise: scenario, label (0: response 1 better, 1: response 2, 2: tie), prompt, "
          '"response 1", "response 2"; id optional')
GROUPS: dict[str, frozenset[str]] = {
    "Math": frozenset({"math_reasoning", "solving_exam_question_with_math"}),
    "Code": frozenset(
        {"code_simplification", "code_generation", "explaining_code", "code_to_code_translation",
         "code_correction_rewriting"}
    ),
}
OTHER = "Other"
TIE = 2


class Row(Rows):
    """A line of `testdata_pairwise.jsonl` (JSON lines); `id` is the line number when the file has none."""

    same_type = ("id",)
    scenario: Text
    label: Annotated[int, Field(ge=0, le=TIE)]
    prompt: Text
    response_1: Text = Field(alias="response 1")
    response_2: Text = Field(alias="response 2")
    id: Id


def group_of(scenario: str) -> str:
    """Math, Code or Other."""
    return next((name for name, members in GROUPS.items() if scenario in members), OTHER)


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """Load (the GitHub file on branch main, its sha256 recorded, or the local file `data`), keep `subsets`.

    `subsets` are scenario names, or the group names math, code, other (case-insensitive) standing for their
    scenarios. Rows get an `id` (their line number) when the file has none.
    """
    table = load_local(data) if data else load_url(URL)
    frame = table.frame
    if "id" not in frame.columns:
        frame = frame.assign(id=np.arange(len(frame)))
    check_rows(frame, Row, table.dataset, id_column="id", description=SCHEMA)
    frame = frame.assign(label=frame["label"].astype(int))
    scenarios = set(frame["scenario"])
    wanted = None
    if subsets:
        by_group = {name.lower(): {s for s in scenarios if group_of(s) == name} for name in (*GROUPS, OTHER)}
        wanted = sorted({s for name in subsets for s in by_group.get(name.lower(), {name})})
    frame = select_subsets(frame, "scenario", wanted, scenarios, table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """Two scoring passes: all (prompt, response 1) pairs, then all (prompt, response 2) pairs."""
    prompts = frame["prompt"].tolist()
    return [list(zip(prompts, frame["response 1"].tolist())), list(zip(prompts, frame["response 2"].tolist()))]


def tune_tie_threshold(gaps: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The smallest t maximising agreement when |gap| <= t predicts a tie; returns (t, agreement).

    Candidates are 0 and every observed |gap|; NaN gaps never predict a tie.
    """
    gaps = np.abs(gaps)
    thresholds = np.unique(np.concatenate([[0.0], gaps[np.isfinite(gaps)]]))
    predicts_tie = gaps[None, :] <= thresholds[:, None]
    agreement = np.where(predicts_tie, labels == TIE, predicted == labels).mean(axis=1)
    best = int(agreement.argmax())
    return float(thresholds[best]), float(agreement[best])


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """DogeRM's tie-free accuracies and Auto-J's agreement with a test-tuned tie threshold.

    `scores` are the passes' scores concatenated (response 1, then response 2).
    """
    n = len(frame)
    first, second = scores[:n], scores[n:]
    labels = frame["label"].to_numpy()
    predicted = np.where(first > second, 0, np.where(second > first, 1, -1))
    per_example = pd.DataFrame(
        {
            "id": frame["id"].to_numpy(), "subset": frame["scenario"].to_numpy(),
            "group": [group_of(s) for s in frame["scenario"]], "label": labels,
            "score_1": first, "score_2": second,
            "score_chosen": np.where(labels == 1, second, first),
            "score_rejected": np.where(labels == 1, first, second),
            "correct": pd.array(np.where(labels == TIE, pd.NA, predicted == labels), dtype="boolean"),
        }
    )
    pairs = per_example[labels != TIE].astype({"correct": bool})
    subsets = {str(k): float(v) for k, v in pairs.groupby("subset")["correct"].mean().items()}
    sections = {str(k): float(v) for k, v in pairs.groupby("group")["correct"].mean().items()}
    threshold, agreement = tune_tie_threshold(first - second, predicted, labels)
    at_zero = np.where(np.abs(first - second) <= 0, labels == TIE, predicted == labels).mean() if n else np.nan
    extra = {
        "pairs": {"all": len(pairs), **{str(k): int(v) for k, v in pairs["group"].value_counts().items()}},
        "ties_dropped": int((labels == TIE).sum()),
        "agreement": {"value": agreement, "tie_threshold": threshold, "tuned_on_test": True,
                      "value_at_threshold_0": float(at_zero), "rows": n},
        **coverage(sections, [*GROUPS, OTHER]),  # by group: which scenarios hold tie-free pairs is the data's
    }
    return Evaluation(subsets=subsets, sections=sections, score=float(pairs["correct"].mean()),
                      per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `autoj/math`, `autoj/code`, `autoj/other`, `autoj/score` and `autoj/agreement-tuned`."""
    return {**metric_columns(NAME, result["sections"], result["score"]),
            f"{NAME}/agreement-tuned": result["agreement"]["value"]}
