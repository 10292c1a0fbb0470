"""PPE correctness (lmarena/PPE, ICLR 2025, arXiv 2410.14872): best-of-K sets with verified correctness.

Five Hub datasets, split `train`, one row per (question, model) with 32 sampled responses:
`lmarena-ai/PPE-MATH-Best-of-K`, `-MBPP-Plus-`, `-GPQA-`, `-MMLU-Pro-`, `-IFEval-Best-of-K`. Columns used:
`question_id`, `model_name`, `prompt`, `response_1` ... `response_32`, `scores` (correctness of each response, a
list of booleans, already verified by the dataset authors: no answer checking or code execution here) and
`sampled_conflict_pairs` (0-based index pairs [i, j] of one correct and one incorrect response of the row); the
sets' own columns (problem, options, ...) are kept but not used. A local file (`--data`) is one such set, named
by a `subset` column or by its file name containing the Hub name (e.g. `PPE-MATH-Best-of-K.parquet`).

Metrics (the correctness metrics of the PPE paper, section 3; the official implementation, lmarena/PPE, could not
be read here, so sampling details below follow the paper and the dataset cards):
- accuracy: over the sampled conflict pairs, correct if the correct response scores strictly higher (ties and NaN
  are wrong), micro-averaged over the pairs of a set;
- best-of-K: for K = 1, 2, 4, ..., 32 the accuracy of the response the reward model ranks first among K of the
  row's responses, as the exact mean over all C(32, K) subsets (`dogerm_eval.bestofn.expected_best_of_n`, the
  same expectation Best-of-N uses: ties go to the lower response index), averaged over rows; `oracle` is
  pass@K, the ceiling;
- maximum achieved performance: the largest best-of-K value over K; end score: best-of-K at the largest K.
The score is the mean of the sets' accuracies. DogeRM's figures: Math = MATH accuracy, Code = MBPP-Plus accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field, create_model

from dogerm_eval.bestofn import bon_table, usable_ns
from dogerm_eval.data import LoadedTable, load_hub, load_local
from dogerm_eval.errors import BenchmarkError, DataError
from dogerm_eval.results import Evaluation, coverage
from dogerm_eval.schema import Id, Rows, Text, check_rows, native

NAME = "ppe"
HUB_IDS: dict[str, str] = {
    "math": "lmarena-ai/PPE-MATH-Best-of-K",
    "mbpp-plus": "lmarena-ai/PPE-MBPP-Plus-Best-of-K",
    "gpqa": "lmarena-ai/PPE-GPQA-Best-of-K",
    "mmlu-pro": "lmarena-ai/PPE-MMLU-Pro-Best-of-K",
    "ifeval": "lmarena-ai/PPE-IFEval-Best-of-K",
}
CARD_DATASET = "lmarena-ai/PPE-Best-of-K"
SPLIT = "train"
RESPONSE = re.compile(r"^response_(\d+)$")
KS = (1, 2, 4, 8, 16, 32)
DOGERM_SECTIONS = {"Math": "math", "Code": "mbpp-plus"}
SCHEMA = ("PPE best-of-K: prompt, response_1 ... response_N (strings), scores (one boolean per response), "
          "sampled_conflict_pairs (pairs [i, j] of 0-based response indices); question_id, model_name optional")


class Row(Rows):
    """A row of a PPE set (parquet on the Hub); the `response_<n>` columns are added by :func:`row_schema`."""

    same_type = ("question_id",)
    prompt: Text
    scores: Annotated[list[bool | Annotated[int, Field(ge=0, le=1)]], Field(min_length=1)]
    sampled_conflict_pairs: list[Annotated[list[int], Field(min_length=2, max_length=2)]]
    subset: Text
    question_id: Id | None = None
    model_name: Text | None = None


def row_schema(responses: Sequence[str]) -> type[Row]:
    """The row schema with one string column per response."""
    return create_model("PPERow", __base__=Row, **{name: (Text, ...) for name in responses})


def response_columns(columns: Sequence[str]) -> list[str]:
    """`response_<n>` columns in numeric order."""
    found = [(int(m.group(1)), c) for c in columns if (m := RESPONSE.match(str(c)))]
    return [c for _, c in sorted(found)]


def _set_of_file(path: Path) -> str | None:
    name = path.name.lower()
    return next((key for key, repo in HUB_IDS.items() if repo.split("/")[1].lower() in name), None)


def _local(data: str) -> LoadedTable:
    table = load_local(data)
    frame = table.frame
    if "subset" not in frame.columns:
        found = _set_of_file(Path(data))
        if found is None:
            raise DataError(f"{data}: no `subset` column and the file name names none of the PPE sets "
                            f"({', '.join(r.split('/')[1] for r in HUB_IDS.values())})")
        frame = frame.assign(subset=found)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def _hub(names: Sequence[str]) -> LoadedTable:
    tables = [(name, load_hub(HUB_IDS[name], SPLIT)) for name in names]
    frame = pd.concat([t.frame.assign(subset=name) for name, t in tables], ignore_index=True)
    return LoadedTable(frame=frame, dataset=",".join(t.dataset for _, t in tables),
                       revision=",".join(f"{name}@{t.revision}" for name, t in tables))


def _validate(frame: pd.DataFrame, responses: list[str], dataset: str) -> None:
    for row, (scores, pairs) in enumerate(zip(frame["scores"], frame["sampled_conflict_pairs"])):
        if len(scores) != len(responses):
            raise DataError(f"{dataset}: row {row}: {len(scores)} scores for {len(responses)} responses")
        for pair in pairs:
            i, j = (int(k) for k in pair)
            if not (0 <= i < len(responses) and 0 <= j < len(responses)) or bool(scores[i]) == bool(scores[j]):
                raise DataError(f"{dataset}: row {row}: conflict pair {[i, j]} is not one correct and one incorrect "
                                f"response among the {len(responses)}")


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """Load the sets (Hub, only those in `subsets`; or the local file `data`), check the schema, keep `subsets`."""
    unknown = sorted(set(subsets or ()) - set(HUB_IDS))
    if unknown:
        raise BenchmarkError(f"unknown PPE set(s) {unknown}; choose from {sorted(HUB_IDS)}")
    table = _local(data) if data else _hub(list(subsets) if subsets else list(HUB_IDS))
    frame = table.frame
    responses = response_columns(frame.columns)
    first = native(frame["scores"].iloc[0]) if "scores" in frame.columns and len(frame) else None
    width = max(len(responses), len(first) if isinstance(first, list) else 0)  # one response per score
    gaps = [f"response_{k}" for k in range(1, width + 1) if f"response_{k}" not in responses]
    if not responses or gaps:
        raise DataError(f"{table.dataset}: missing column(s) {gaps or ['response_1']}; expected schema: {SCHEMA}; "
                        f"found columns {list(frame.columns)}")
    check_rows(frame, row_schema(responses), table.dataset, id_column="question_id", description=SCHEMA)
    bad = sorted(set(frame["subset"].astype(str)) - set(HUB_IDS))
    if bad:
        raise DataError(f"{table.dataset}: rows with unknown subset {bad}; known: {sorted(HUB_IDS)}")
    if subsets:
        frame = frame[frame["subset"].isin(list(subsets))]
        if frame.empty:
            raise DataError(f"{table.dataset}: no rows in subset(s) {list(subsets)}")
    frame = frame.reset_index(drop=True)
    _validate(frame, responses, table.dataset)
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
    """One pass, each response once: row by row, response_1 ... response_N."""
    columns = response_columns(frame.columns)
    return [[(str(prompt), str(text)) for prompt, *texts in zip(frame["prompt"], *(frame[c] for c in columns))
             for text in texts]]


def pair_results(scores: np.ndarray, correct: Sequence[bool], pairs: Sequence[Sequence[int]]) -> list[bool]:
    """Per conflict pair: the correct response scored strictly above the incorrect one."""
    results = []
    for pair in pairs:
        i, j = (int(k) for k in pair)
        good, bad = (i, j) if correct[i] else (j, i)
        results.append(bool(scores[good] > scores[bad]))
    return results


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Per set: conflict-pair accuracy, the best-of-K curve (exact expectation), its maximum and end value."""
    n = len(response_columns(frame.columns))
    per_row = scores.reshape(len(frame), n)
    correct = [list(map(bool, c)) for c in frame["scores"]]
    pairs = [pair_results(s, c, p) for s, c, p in zip(per_row, correct, frame["sampled_conflict_pairs"])]
    ids = (frame["question_id"].astype(str) + ":" + frame["model_name"].astype(str)
           if {"question_id", "model_name"} <= set(frame.columns) else pd.Series(range(len(frame))).astype(str))
    per_example = pd.DataFrame({
        "id": ids.to_numpy(), "subset": frame["subset"].astype(str).to_numpy(), "scores": list(per_row),
        "correct": correct, "pairs_correct": [sum(p) for p in pairs], "pairs_total": [len(p) for p in pairs],
    })
    subsets: dict[str, float] = {}
    bok: dict[str, dict[str, dict[str, float | None]]] = {}
    figures: dict[str, dict[str, float]] = {}
    ks = usable_ns([n], KS)
    for name in HUB_IDS:
        rows = np.flatnonzero(per_example["subset"].to_numpy() == name)
        if rows.size == 0:
            continue
        total = int(per_example["pairs_total"].iloc[rows].sum())
        subsets[name] = float(per_example["pairs_correct"].iloc[rows].sum() / total) if total else float("nan")
        table = bon_table([per_row[r].tolist() for r in rows], [correct[r] for r in rows], None, ks)
        bok[name] = {str(k): {"expected": row["expected"], "oracle": row["oracle"]} for k, row in table.items()}
        curve = [table[k]["expected"] for k in ks]
        figures[name] = {"max": float(max(curve)), "end": float(curve[-1]), "pairs": total, "rows": int(rows.size)}
    sections = {label: subsets[name] for label, name in DOGERM_SECTIONS.items() if name in subsets}
    extra: dict[str, Any] = {
        "bok": bok, "figures": figures, "ks": ks, "responses_per_row": n,
        "counts": {str(k): int(v) for k, v in per_example["subset"].value_counts().sort_index().items()},
        **coverage(subsets, list(HUB_IDS)),
        "ties": {"exact_in_pairs": int(sum(
            sum(s[int(i)] == s[int(j)] for i, j in p) for s, p in zip(per_row, frame["sampled_conflict_pairs"]))),
            "nan": int(np.isnan(scores).sum())},
    }
    return Evaluation(subsets=subsets, sections=sections, score=float(np.nanmean(list(subsets.values()))),
                      per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `ppe/<set>` (accuracy), `ppe/math`, `ppe/code` (DogeRM's), `ppe/<set>-bok@<K>` (expected
    best-of-K), `ppe/<set>-max` (maximum achieved), `ppe/score`."""
    columns: dict[str, float] = {f"{NAME}/{name}": value for name, value in result["subsets"].items()}
    columns.update({f"{NAME}/{label.lower()}": value for label, value in result["sections"].items()})
    for name, curve in result["bok"].items():
        columns.update({f"{NAME}/{name}-bok@{k}": row["expected"] for k, row in curve.items()})
        columns[f"{NAME}/{name}-max"] = result["figures"][name]["max"]
    columns[f"{NAME}/score"] = result["score"]
    return columns
