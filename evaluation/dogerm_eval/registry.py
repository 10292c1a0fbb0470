"""The benchmark registry: one entry per benchmark ``dogerm-eval`` scores itself.

Everything the command line needs to know about a benchmark before it runs (its command name, the help summary,
its headline metric) lives here, import-light, so that ``--help`` loads no benchmark module; the benchmark's module
(``dogerm_eval.benchmarks.<module>``: ``NAME``, ``load``, ``passes``, ``evaluate``, ``metrics``, its schema) is
imported when a command runs. Adding a benchmark: its module, and one line in :data:`ENTRIES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dogerm_eval.task import Benchmark


@dataclass(frozen=True)
class BenchmarkEntry:
    """A benchmark as the command line knows it."""

    name: str  #: command name, result file name (OUT/<model>/<name>.json) and metric prefix
    module: str  #: module under dogerm_eval.benchmarks implementing it
    summary: str  #: the command's help text
    title: str = ""  #: the name papers give it (the suite table's row); default: ``name``
    headline: str = "score"  #: the metric that stands for the benchmark in a summary: ``<name>/<headline>``

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)

    @property
    def headline_metric(self) -> str:
        return f"{self.name}/{self.headline}"

    def load(self) -> Benchmark:
        """The benchmark module (imported on first use)."""
        return importlib.import_module(f"dogerm_eval.benchmarks.{self.module}")  # type: ignore[return-value]


ENTRIES: tuple[BenchmarkEntry, ...] = (
    BenchmarkEntry("rewardbench", "rewardbench", "RewardBench v1 (allenai/reward-bench, filtered): subsets, the four "
                   "sections, DogeRM's Math (math-prm) and Code (hep-*), and the overall score.",
                   title="RewardBench v1"),
    BenchmarkEntry("rewardbench2", "rewardbench2", "RewardBench 2 (allenai/reward-bench-2, test): best-of-4 with tie "
                   "credit, the Ties score, overall = mean of the six subsets.", title="RewardBench v2"),
    BenchmarkEntry("autoj", "autoj", "Auto-J pairwise test set: DogeRM's tie-free Math/Code/Other accuracy and "
                   "Auto-J's agreement with a tie threshold tuned on the test set."),
    BenchmarkEntry("pairwise", "pairwise", "Your own preference pairs in RewardBench's schema (--data, any subset "
                   "names): accuracy per subset and over all pairs."),
    BenchmarkEntry("rmbench", "rmbench", "RM-Bench (THU-KEG/RM-Bench): 3x3 chosen/rejected style matrix, "
                   "hard/normal/easy, Chat/Math/Code/Safety, overall = mean of the domains.", title="RM-Bench"),
    BenchmarkEntry("rewardmath", "rewardmath", "RewardMATH (RewardMATH/RewardMATH): one correct vs nine incorrect "
                   "MATH500 solutions; accuracy (correct above all) and MRR."),
    BenchmarkEntry("ppe", "ppe", "PPE correctness best-of-K sets (lmarena-ai/PPE-*-Best-of-K): conflict-pair "
                   "accuracy, exact best-of-K curves, maximum and end score per set.", title="PPE Correctness"),
    BenchmarkEntry("judgebench", "judgebench", "JudgeBench (ScalerLab/JudgeBench, GPT-4o pairs): objectively "
                   "correct vs incorrect responses; accuracy per category (knowledge, reasoning, math, coding) and "
                   "over all pairs.", title="JudgeBench"),
    BenchmarkEntry("rmb", "rmb", "RMB (Zhou-Zoey/RMB-Reward-Model-Benchmark; --data RMB_dataset/): pairwise and "
                   "Best-of-N accuracy for helpfulness and harmlessness over 49 scenarios, overall = their mean.",
                   title="RMB"),
    BenchmarkEntry("ppe-preference", "ppe_preference", "PPE human preference (lmarena-ai/PPE-Human-Preference-V1): "
                   "Chatbot Arena pairs with the human verdict; accuracy over non-tie pairs, per language and "
                   "category flag, and the Bradley-Terry Brier score.", title="PPE Preference"),
)
REGISTRY: dict[str, BenchmarkEntry] = {entry.name: entry for entry in ENTRIES}
NAMES: tuple[str, ...] = tuple(REGISTRY)
#: The seven benchmarks of ``dogerm-eval suite``, in the order Skywork-Reward-V2's README reports them.
SUITE: tuple[str, ...] = ("rewardbench", "rewardbench2", "ppe-preference", "ppe", "rmb", "rmbench", "judgebench")
