"""Small synthetic rows in each benchmark's real schema, for tests and dry runs without downloads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


def rewardbench_rows(counts: Mapping[str, int], prefix: str = "") -> pd.DataFrame:
    """RewardBench `filtered` rows (prompt, chosen, chosen_model, rejected, rejected_model, subset, id).

    Chosen answers start with "good", rejected ones with "bad"; ids run 0..n-1.
    """
    rows = []
    for subset, n in counts.items():
        for i in range(n):
            rows.append({
                "prompt": f"{prefix}{subset} question {i}?", "chosen": f"good answer {i}", "chosen_model": "a",
                "rejected": f"bad answer {i}", "rejected_model": "b", "subset": subset, "id": len(rows),
            })
    return pd.DataFrame(rows)


def rewardbench2_row(row_id: str, subset: str, chosen: Sequence[str], rejected: Sequence[str]) -> dict[str, Any]:
    """One RewardBench 2 `test` row (id, prompt, chosen, rejected, num_correct, num_incorrect, total_completions,
    models, subset, additional_metadata)."""
    return {
        "id": row_id, "prompt": f"prompt of {row_id}", "chosen": list(chosen), "rejected": list(rejected),
        "num_correct": len(chosen), "num_incorrect": len(rejected), "total_completions": len(chosen) + len(rejected),
        "models": ["m"] * (len(chosen) + len(rejected)), "subset": subset, "additional_metadata": "{}",
    }


def autoj_row(index: int, scenario: str, label: int) -> dict[str, Any]:
    """One Auto-J pairwise row (scenario, label, prompt, "response 1", "response 2"); texts encode `index`."""
    return {"scenario": scenario, "label": label, "prompt": f"p{index}", "response 1": f"r1-{index}",
            "response 2": f"r2-{index}"}
