"""RewardMATH (arXiv 2410.01729; kimsh0507/RewardMATH_official): one correct vs nine incorrect MATH500 solutions.

Schema (the Hub dataset `RewardMATH/RewardMATH`, and the repository's `dataset/benchmark/RewardMATH_direct.json`, a
JSON array): one row per solution with `problem`, `answer`, `eval_solution` (the solution's steps, a list of
strings), `solution_reference` (who wrote it), `solution_type` (`chosen` for the one correct solution, `rejected`
for the incorrect ones), `subject`, `level`, `problem_id`, `id`. 483 problems x 10 solutions in the full set.

Scoring as the official code does:
- the reward model sees user = `problem`, assistant = the steps joined by newlines (`src/prompts.py`,
  `RewardExperimentPromptHandler.generate_prompt`, classifier branch);
- per problem (`src/evaluation/eval.py`, `RewardMATHEvaluation.get_results`): accuracy = 1 if the correct
  solution scores strictly above every incorrect one, "accuracy with ties" uses >=; MRR = 1/rank of the correct
  solution, where the official sort (by (score, label) descending, label "rej" > "cho") puts incorrect solutions
  with the same score first, so ties rank the correct one last among them (`_calculate_MRR`);
- the benchmark's figures are the means over problems.
A NaN score (the scorer never produces one for finite weights) ranks below every real score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable, load_hub, load_local, select_subsets
from dogerm_eval.errors import DataError
from dogerm_eval.results import Evaluation, metric_columns
from dogerm_eval.schema import Id, Rows, Text, TextList, check_rows

NAME = "rewardmath"
HUB_ID = "RewardMATH/RewardMATH"
CARD_DATASET = HUB_ID
SPLITS = ("test", "train")  # the first the Hub dataset has is read
SPLIT = SPLITS[0]
CHOSEN, REJECTED = "chosen", "rejected"
SCHEMA = ("RewardMATH: one row per solution: problem (string), eval_solution (list of step strings), solution_type "
          "('chosen' or 'rejected'), problem_id; subject, id optional")


class Row(Rows):
    """A row of `RewardMATH_direct.json` (a JSON array); answer, solution_reference, level are not read."""

    same_type = ("problem_id", "id")
    problem: Text
    eval_solution: TextList
    solution_type: Literal["chosen", "rejected"]
    problem_id: Id
    subject: Text | None = None
    id: Id | None = None


def _load_hub() -> LoadedTable:
    for split in SPLITS[:-1]:
        try:
            return load_hub(HUB_ID, split)
        except DataError as exc:
            if "no split" not in str(exc):
                raise
    return load_hub(HUB_ID, SPLITS[-1])


def _validate(frame: pd.DataFrame, dataset: str) -> None:
    kinds = frame.groupby("problem_id", sort=False)["solution_type"]
    for problem, types in kinds:
        n_chosen = int((types == CHOSEN).sum())
        if n_chosen != 1 or len(types) < 2:
            raise DataError(f"{dataset}: problem_id {problem!r} has {n_chosen} chosen and {len(types) - n_chosen} "
                            f"rejected solutions; expected exactly one chosen and at least one rejected")


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """Load (the Hub dataset, or the local file `data`), check the schema, keep `subsets` (MATH subjects)."""
    table = load_local(data) if data else _load_hub()
    check_rows(table.frame, Row, table.dataset, id_column="id", description=SCHEMA)
    frame = table.frame
    if "subject" not in frame.columns:
        frame = frame.assign(subject="all")
    frame = select_subsets(frame, "subject", subsets, set(frame["subject"]), table.dataset)
    _validate(frame, table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def solution_text(steps: Sequence[str]) -> str:
    """The assistant turn the official classifier path scores: the steps joined by newlines."""
    return "\n".join(str(step) for step in steps)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """One pass, each solution once, in dataset order."""
    return [[(str(problem), solution_text(steps)) for problem, steps in zip(frame["problem"], frame["eval_solution"])]]


def problem_figures(chosen: float, rejected: np.ndarray) -> tuple[bool, bool, int]:
    """(accuracy, accuracy with ties, rank of the correct solution; ties ranked against it) for one problem."""
    if np.isnan(chosen):
        return False, False, len(rejected) + 1
    r = np.where(np.isnan(rejected), -np.inf, rejected)
    return bool(chosen > r.max()), bool(chosen >= r.max()), 1 + int((r >= chosen).sum())


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Per problem: accuracy, accuracy with ties, reciprocal rank; per subject and overall means."""
    work = pd.DataFrame({"problem_id": frame["problem_id"].to_numpy(), "subject": frame["subject"].astype(str),
                         "type": frame["solution_type"].to_numpy(), "score": scores})
    rows = []
    for problem, group in work.groupby("problem_id", sort=False):
        chosen = float(group.loc[group["type"] == CHOSEN, "score"].iloc[0])
        rejected = group.loc[group["type"] == REJECTED, "score"].to_numpy(dtype=np.float64)
        correct, with_ties, rank = problem_figures(chosen, rejected)
        rows.append({"id": str(problem), "subset": group["subject"].iloc[0], "score_chosen": chosen,
                     "score_rejected": rejected, "correct": correct, "correct_with_ties": with_ties, "rank": rank,
                     "reciprocal_rank": 1.0 / rank})
    per_example = pd.DataFrame(rows)
    subsets = {str(k): float(v) for k, v in per_example.groupby("subset")["correct"].mean().items()}
    accuracy = float(per_example["correct"].mean())
    sections = {"Math": accuracy, "MRR": float(per_example["reciprocal_rank"].mean()),
                "Accuracy with ties": float(per_example["correct_with_ties"].mean())}
    extra: dict[str, Any] = {
        "counts": {str(k): int(v) for k, v in per_example["subset"].value_counts().sort_index().items()},
        "num_problems": len(per_example),
        "rejected_per_problem": sorted({len(r) for r in per_example["score_rejected"]}),
        "ties": {"exact": int((per_example["correct_with_ties"] & ~per_example["correct"]).sum()),
                 "nan": int(np.isnan(scores).sum())},
    }
    return Evaluation(subsets=subsets, sections=sections, score=accuracy, per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `rewardmath/math` (accuracy, also the score), `rewardmath/mrr`,
    `rewardmath/accuracy-with-ties`."""
    return metric_columns(NAME, result["sections"], result["score"])
