"""PPE human preference (lmarena/PPE, ICLR 2025, arXiv 2410.14872): Chatbot Arena pairs with the human verdict.

Schema (the Hub dataset `lmarena-ai/PPE-Human-Preference-V1`, split `test`, parquet, 16,038 rows): `question_id`,
`prompt`, `response_1`, `response_2` and `winner` (`model_a`: response_1 preferred, `model_b`: response_2, `tie` or
`tie (bothbad)`: no preference); the set's other columns (models, `language`, category flags) are kept. A local
`--data` file is the same rows as parquet or JSON lines.

Metrics (the PPE paper's human-preference accuracy; the official implementation, lmarena/PPE, could not be read
here, so the details below follow the paper and are not checked against its code):
- accuracy over the rows with a preference (ties excluded: a scalar reward model states no tie): correct when the
  preferred response scores strictly higher (exact score ties and NaN are wrong);
- per `language` (subsets) and, for every boolean column of the set (its category flags), the accuracy over the
  rows where it is true (sections);
- `brier`: the Brier score of the Bradley-Terry probability sigmoid(score_1 - score_2) that response_1 is preferred,
  over the same rows (lower is better; meaningful for reward models trained with a Bradley-Terry loss); a NaN
  score never wins there either (probability 0 or 1 against a real score, 0.5 between two NaNs).
Left out: the paper's model-ranking metrics (Spearman/Kendall of the Arena ranking, separability, confidence
agreement), which need many policy models' pairs aggregated into Elo ratings rather than a per-pair score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable, load_hub, load_local, select_subsets
from dogerm_eval.errors import DataError
from dogerm_eval.results import Evaluation, metric_columns
from dogerm_eval.schema import Id, Rows, Text, check_rows

NAME = "ppe-preference"
HUB_ID = "lmarena-ai/PPE-Human-Preference-V1"
CARD_DATASET = HUB_ID
SPLIT = "test"
SCHEMA = ("PPE human preference: question_id, prompt, response_1, response_2 (strings), winner (model_a, model_b, "
          "tie or tie (bothbad))")
WINNERS = {"model_a": 1, "model_b": 2}


class Row(Rows):
    """A row of the `test` split (parquet on the Hub); the category flags are read when present."""

    same_type = ("question_id",)
    question_id: Id
    prompt: Text
    response_1: Text
    response_2: Text
    winner: Text
    language: Text | None = None


def _verdict(winner: str) -> int:
    """1 or 2: the preferred response; 0: a tie."""
    return WINNERS.get(winner, 0)


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """Load (Hub `test` split, or the local file `data`), check the schema; `subsets` are `language` values."""
    table = load_local(data) if data else load_hub(HUB_ID, SPLIT)
    check_rows(table.frame, Row, table.dataset, id_column="question_id", description=SCHEMA)
    frame = table.frame
    bad = ~frame["winner"].astype(str).map(lambda w: w in WINNERS or w.startswith("tie"))
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{table.dataset}: row {row} (question_id {frame['question_id'].iloc[row]!r}) has winner "
                        f"{frame['winner'].iloc[row]!r}; expected model_a, model_b or a tie")
    if "language" not in frame.columns:
        frame = frame.assign(language="all")
    frame = select_subsets(frame, "language", subsets, set(frame["language"].astype(str)), table.dataset)
    if not frame["winner"].isin(list(WINNERS)).any():
        raise DataError(f"{table.dataset}: every row is a tie; accuracy needs rows with a preferred response")
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """response_1 of every row, then response_2."""
    return [[(str(p), str(r)) for p, r in zip(frame["prompt"], frame[column])] for column in ("response_1", "response_2")]


def preference_probability(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The Bradley-Terry probability sigmoid(first - second) that response_1 is preferred; a NaN score never wins
    (the non-finite policy): 0 when only the first is NaN, 1 when only the second is, 0.5 when both are."""
    with np.errstate(over="ignore", invalid="ignore"):
        probability = 1.0 / (1.0 + np.exp(-(first - second)))
    lost, won = np.isnan(first) & ~np.isnan(second), np.isnan(second) & ~np.isnan(first)
    return np.select([lost, won, np.isnan(first) & np.isnan(second)], [0.0, 1.0, 0.5], probability)


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Accuracy and Brier score over the rows with a preference; per language and per category flag."""
    first, second = scores[: len(frame)], scores[len(frame):]
    verdict = np.array([_verdict(str(w)) for w in frame["winner"]])
    decided = verdict > 0
    correct = np.where(verdict == 1, first > second, second > first)
    brier = (preference_probability(first, second) - (verdict == 1)) ** 2
    language = frame["language"].astype(str).to_numpy()
    subsets = {name: float(correct[decided & (language == name)].mean()) for name in sorted(set(language))
               if (decided & (language == name)).any()}
    flags = [c for c in frame.columns if pd.api.types.is_bool_dtype(frame[c])]
    sections = {c: float(correct[decided & frame[c].to_numpy()].mean()) for c in flags
                if (decided & frame[c].to_numpy()).any()}
    per_example = pd.DataFrame({"id": frame["question_id"].astype(str).to_numpy(), "subset": language,
                                "winner": frame["winner"].astype(str).to_numpy(), "score_1": first,
                                "score_2": second, "correct": np.where(decided, correct, None)})
    extra: dict[str, Any] = {
        "brier": float(brier[decided].mean()), "rows": int(len(frame)), "ties_excluded": int((~decided).sum()),
        "ties": {"exact": int((first[decided] == second[decided]).sum()), "nan": int(np.isnan(scores).sum())},
    }
    return Evaluation(subsets=subsets, sections=sections, score=float(correct[decided].mean()),
                      per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `ppe-preference/<flag>` per category flag, `ppe-preference/brier`, `ppe-preference/score`."""
    return {**metric_columns(NAME, result["sections"], result["score"]), f"{NAME}/brier": result["brier"]}
