"""Your own preference pairs in RewardBench's schema, with any subset names: accuracy per subset and overall.

For data that is not RewardBench itself (a domain test set, the demo's mini benchmark): the same columns
(`id`, `subset`, `prompt`, `chosen`, `rejected`; `chosen_model`/`rejected_model` may be there) and the same
scoring as `rewardbench` (chosen and rejected in separate passes; ties and NaN count as wrong), without
RewardBench's sections. The score is the accuracy over all pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dogerm_eval.benchmarks import rewardbench
from dogerm_eval.data import LoadedTable, load_local, select_subsets
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.results import Evaluation, metric_columns
from dogerm_eval.schema import check_rows

NAME = "pairwise"
CARD_DATASET = "pairwise"
SPLIT = "local"
#: `--compat rewardbench` truncation: rewardbench's scripts/run_rm.py (v1) cuts on the left.
REWARDBENCH_TRUNCATION = "left"
passes = rewardbench.passes
SCHEMA = ("RewardBench's: id, subset (any names), prompt, chosen, rejected (strings); chosen_model, "
          "rejected_model optional")


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """The local file ``data`` (required), schema checked, ``subsets`` kept."""
    if data is None:
        raise BenchmarkError("pairwise scores your own pairs: give --data PATH (parquet, JSON array or JSON lines in "
                             "RewardBench's schema)")
    table = load_local(data)
    check_rows(table.frame, rewardbench.Row, table.dataset, id_column="id", description=SCHEMA)
    frame = select_subsets(table.frame, "subset", subsets, set(table.frame["subset"]), table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Accuracy per subset and over all pairs."""
    return rewardbench.pair_accuracy(frame, scores)


def summary_of(subset_accuracy: Mapping[str, float], pooled: float) -> dict[str, Any]:
    """What ``metrics`` reads, from the subsets' accuracies and the accuracy over all pairs (search's bootstrap
    summarises each resample so)."""
    return {"subsets": dict(subset_accuracy), "sections": {}, "score": float(pooled)}


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """``pairwise/<subset>`` accuracies and ``pairwise/score``."""
    return metric_columns(NAME, result["subsets"], result["score"], keep_names=True)
