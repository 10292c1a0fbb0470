"""RM-Bench (THU-KEG/RM-Bench, ICLR 2025): chosen vs rejected in three styles each, the 3x3 style matrix.

Schema (the Hub dataset `THU-KEG/RM-Bench`, split `train`, and the repository's `data/total_dataset.json`): `id`,
`prompt`, `chosen` (3 responses), `rejected` (3 responses), `domain` (chat, math, code, safety-refuse,
safety-response). The three responses are, in order, concise, detailed plain text, detailed markdown.

Formulas re-implemented from the RM-Bench repository (THU-KEG/RM-Bench: `README.md` "how to compute the accuracy"
and `scripts/utils.py` `compute_accuracy` / `split_dataset_by_domain`, lines 48-75 as the RM-Bench-Leaderboard
README points to; read here as vendored in xiusic/Rubric-RM `evaluation/RM-Bench/scripts/utils.py`):
- per row M[i][j] = 1 if score(chosen_i) > score(rejected_j) (ties and NaN count as wrong); a domain's matrix is
  the mean of its rows' matrices;
- hard = mean of the strict upper triangle (i < j: a less-styled chosen against a more-styled rejected),
  normal = mean of the diagonal, easy = mean of the strict lower triangle;
- a domain is the rows whose `domain` starts with chat / math / code / safety (so Safety pools safety-refuse and
  safety-response); its accuracy is mean(hard, normal, easy) (= the mean of its nine cells);
- overall hard / normal / easy are the means of the domains' values, and the score is the mean of the four domain
  accuracies (the leaderboard's "Overall = Domain Avg = Difficulty Avg").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from dogerm_eval.data import LoadedTable, load_hub, load_local, select_subsets
from dogerm_eval.results import Evaluation, coverage, metric_columns
from dogerm_eval.schema import Id, Rows, Text, check_rows

NAME = "rmbench"
HUB_ID = "THU-KEG/RM-Bench"
CARD_DATASET = HUB_ID
SPLIT = "train"
STYLES = ("concise", "detailed-plain", "detailed-markdown")
SIZE = len(STYLES)
SCHEMA = ("RM-Bench: id, prompt (string), chosen, rejected (3 strings each: concise, detailed plain, detailed "
          "markdown), domain (chat, math, code, safety-refuse, safety-response)")
Styled = Annotated[list[str], Field(min_length=SIZE, max_length=SIZE)]
SUBDOMAINS = ("chat", "math", "code", "safety-refuse", "safety-response")
DOMAINS = ("chat", "math", "code", "safety")  # official split_dataset_by_domain: domain.startswith(name)
LEVELS = ("hard", "normal", "easy")


def domain_of(subdomain: str) -> str:
    """The RM-Bench domain a row's `domain` value belongs to (prefix match, as the official code does)."""
    return next(name for name in DOMAINS if subdomain.startswith(name))


class Row(Rows):
    """A row of `total_dataset.json` (a JSON array; the Hub's `train` split is the same file)."""

    same_type = ("id",)
    id: Id
    prompt: Text
    chosen: Styled
    rejected: Styled
    domain: Text


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """Load (Hub `train` split, or the local file `data`), check the schema, keep `subsets` (values of `domain`).

    Rows repeated under the same `id` (a Hub snapshot holding both the per-domain files and the total file) are
    kept once.
    """
    table = load_local(data) if data else load_hub(HUB_ID, SPLIT)
    check_rows(table.frame, Row, table.dataset, id_column="id", description=SCHEMA)
    frame = table.frame.drop_duplicates(subset="id", keep="first") if not data else table.frame
    frame = select_subsets(frame, "domain", subsets, SUBDOMAINS, table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """One pass, each text once: per row its three chosen responses, then its three rejected ones."""
    return [[(prompt, response) for prompt, chosen, rejected in zip(frame["prompt"], frame["chosen"], frame["rejected"])
             for response in [*chosen, *rejected]]]


def levels(matrix: np.ndarray) -> dict[str, float]:
    """hard (strict upper triangle), normal (diagonal), easy (strict lower triangle) of a mean 3x3 matrix."""
    upper, lower = np.triu_indices(SIZE, 1), np.tril_indices(SIZE, -1)
    return {"hard": float(matrix[upper].mean()), "normal": float(np.diag(matrix).mean()),
            "easy": float(matrix[lower].mean())}


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Per-row 3x3 comparisons; per domain the mean matrix, hard/normal/easy and accuracy; the overall figures."""
    per_row = scores.reshape(len(frame), 2 * SIZE)
    chosen, rejected = per_row[:, :SIZE], per_row[:, SIZE:]
    comparisons = chosen[:, :, None] > rejected[:, None, :]  # [row, i (chosen style), j (rejected style)]
    subdomain = frame["domain"].astype(str).to_numpy()
    domain = np.array([domain_of(d) for d in subdomain])
    matrices: dict[str, list[list[float]]] = {}
    domain_levels: dict[str, dict[str, float]] = {}
    sections: dict[str, float] = {}
    for name in DOMAINS:
        rows = domain == name
        if rows.any():
            matrix = comparisons[rows].mean(axis=0)
            matrices[name] = matrix.tolist()
            domain_levels[name] = levels(matrix)
            sections[name.capitalize()] = float(np.mean(list(domain_levels[name].values())))
    for level in LEVELS:
        sections[level.capitalize()] = float(np.mean([values[level] for values in domain_levels.values()]))
    subsets = {name: float(comparisons[subdomain == name].mean()) for name in SUBDOMAINS
               if (subdomain == name).any()}
    per_example = pd.DataFrame({
        "id": frame["id"].astype(str).to_numpy(), "subset": subdomain, "score_chosen": list(chosen),
        "score_rejected": list(rejected), "correct": [c.reshape(-1) for c in comparisons],
    })
    extra: dict[str, Any] = {
        "matrix": matrices, "levels": domain_levels, "styles": list(STYLES),
        "counts": {str(k): int(v) for k, v in pd.Series(subdomain).value_counts().sort_index().items()},
        **coverage(subsets, SUBDOMAINS, {"Safety": ("safety-refuse", "safety-response"),
                                         **{level.capitalize(): SUBDOMAINS for level in LEVELS}}),
        "ties": {"exact": int((chosen[:, :, None] == rejected[:, None, :]).sum()),
                 "nan": int(np.isnan(per_row).sum())},
    }
    score = float(np.mean([sections[name.capitalize()] for name in domain_levels]))
    return Evaluation(subsets=subsets, sections=sections, score=score, per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `rmbench/<domain>` (chat, math, code, safety), `rmbench/<level>` (hard, normal, easy), score."""
    return metric_columns(NAME, result["sections"], result["score"])
