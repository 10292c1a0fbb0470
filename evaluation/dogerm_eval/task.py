"""What a benchmark is to the scoring loop, and a benchmark with its loaded rows (no registry: Best-of-N builds
its own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable
from dogerm_eval.results import Evaluation


class Scorer(Protocol):
    """What a benchmark needs from a reward model (implemented by `dogerm_eval.scorer.RewardScorer`)."""

    def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray: ...

    def settings_record(self) -> dict[str, Any]: ...


class Benchmark(Protocol):
    """A pairwise reward-model benchmark module."""

    NAME: str
    CARD_DATASET: str  # dataset id written into model cards
    SPLIT: str

    def load(self, data: str | None, subsets: Sequence[str] | None) -> LoadedTable: ...

    def passes(self, frame: pd.DataFrame) -> list[list[tuple[str, str]]]: ...

    def evaluate(self, frame: pd.DataFrame, scores: np.ndarray) -> Evaluation: ...

    def metrics(self, result: Mapping[str, Any]) -> dict[str, float]: ...


@dataclass(frozen=True)
class Task:
    """A benchmark with its loaded, validated rows (loaded once, before any model is scored)."""

    benchmark: Benchmark
    table: LoadedTable
    subsets: tuple[str, ...] | None = None
