"""RMB (Zhou et al., ICLR 2025; Zhou-Zoey/RMB-Reward-Model-Benchmark): 49 scenarios under two goals
(helpfulness, harmlessness), a pairwise set and a Best-of-N set.

Schema (the repository's `RMB_dataset/`, one JSON array per scenario, e.g.
`Pairwise_set/Helpfulness/Code/Data Management.json`; `--data` takes that folder, a sub-folder, one file, or the
same records as JSON lines / parquet):
- every record: `conversation_input` (the conversation so far: `role`, `content`, `language`; user and assistant
  turns alternate and end with a user turn) and `category_path` (`<set>/<goal>/.../<scenario>`, the file's path);
- a pairwise record: `pair_uid`, `chosen` and `reject` (each `{llm_name, answer}`);
- a Best-of-N record: `bon_uid`, `bon_best` (`{llm_name, answer}`) and `loser_list` (2-6 of them).

Scoring: the reward model scores the whole conversation followed by each answer as the assistant turn (the authors'
`eval/scripts/my_utils/utils.py`, `load_eval_dataset`: `conversation_input` + the answer). A pair is correct when
the chosen answer scores strictly higher than the rejected one (`eval/scripts/my_run_rm.py`: `1 if chosen > rejected
else 0`); a Best-of-N item when `bon_best` scores strictly higher than every answer of `loser_list` (the paper's
Best-of-N accuracy; the repository has no Best-of-N code). Ties and NaN are wrong.

Averaging: `my_run_rm.py` prints one accuracy over all the pairs of the files it is given (one scenario file, or
every file under a folder), so a goal's figure is the accuracy over the pairs (items) of all its scenarios, not a
mean of scenario accuracies (also reported, as `scenario_mean`). The repository publishes no averaging code for the
paper's table; its Overall, here the score, is taken as the mean of the four figures (helpfulness and harmlessness,
pairwise and Best-of-N), as the paper's table lays them out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dogerm_eval.data import LoadedTable, load_local, read_frame
from dogerm_eval.errors import BenchmarkError, DataError
from dogerm_eval.results import Evaluation, coverage, metric_columns
from dogerm_mergekit.files import sha256_file

NAME = "rmb"
CARD_DATASET = "Zhou-Zoey/RMB-Reward-Model-Benchmark"
SPLIT = "test"
SETS = {"Pairwise_set": "pairwise", "BoN_set": "bon"}
GOALS = ("helpfulness", "harmlessness")
SECTIONS = tuple(f"{goal}-{kind}" for goal in GOALS for kind in ("pairwise", "bon"))
SCHEMA = ("RMB: conversation_input, category_path, and pair_uid + chosen + reject (pairwise) or bon_uid + bon_best + "
          "loser_list (Best-of-N), as in the repository's RMB_dataset/ JSON files")


def _read(data: str) -> LoadedTable:
    """A folder of the authors' JSON arrays (revision: sha256 over the files' paths and digests), or one file of
    the same records (a JSON array, JSON lines or parquet, told by its content)."""
    path = Path(data)
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
        if not files:
            raise DataError(f"{path}: no .json files; give the RMB_dataset folder of Zhou-Zoey/RMB-Reward-Model-Benchmark")
        digest = hashlib.sha256("".join(f"{f.relative_to(path)}\0{sha256_file(f)}\n" for f in files).encode())
        frame = pd.concat([read_frame(f) for f in files], ignore_index=True)
        return LoadedTable(frame=frame, dataset=str(path.resolve()), revision=f"sha256-tree:{digest.hexdigest()}")
    return load_local(path)  # one file: a JSON array as the authors ship it, JSON lines or parquet


def _answer(value: Any, where: str) -> str:
    if not isinstance(value, Mapping) or not isinstance(value.get("answer"), str):
        raise DataError(f"{where}: expected an object with a string `answer` (and `llm_name`)")
    return value["answer"]


def _history(turns: Any, where: str) -> tuple[tuple[str, str], ...]:
    roles = [t.get("role") if isinstance(t, Mapping) else None for t in (turns if hasattr(turns, "__len__") else [])]
    if not roles or roles[-1] != "user" or any(r not in ("user", "assistant") for r in roles):
        raise DataError(f"{where}: conversation_input must be a list of user/assistant turns ending with a user turn")
    bad = next((i for i, t in enumerate(turns) if not isinstance(t.get("content"), str)), None)
    if bad is not None:  # checked as they are, never coerced (as every benchmark's Rows schema does)
        raise DataError(f"{where}: conversation_input[{bad}] needs a string `content`; found "
                        f"{type(turns[bad].get('content')).__name__}")
    return tuple((t["role"], t["content"]) for t in turns)


def _row(record: Mapping[str, Any], index: int, dataset: str) -> dict[str, Any]:
    where = f"{dataset}: record {index}"
    path = str(record.get("category_path") or "")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] not in SETS or parts[1].lower() not in GOALS:
        raise DataError(f"{where}: category_path {path!r} is not <Pairwise_set|BoN_set>/<Helpfulness|Harmlessness>/"
                        "<scenario>")
    kind = SETS[parts[0]]
    keys = ("pair_uid", "chosen", "reject") if kind == "pairwise" else ("bon_uid", "bon_best", "loser_list")
    missing = [k for k in (*keys, "conversation_input") if not _present(record.get(k))]
    if missing:
        raise DataError(f"{where} ({path}): missing {missing}; expected schema: {SCHEMA}")
    if kind == "pairwise":
        chosen, rejected = _answer(record["chosen"], where), [_answer(record["reject"], where)]
    else:
        chosen = _answer(record["bon_best"], where)
        rejected = [_answer(loser, where) for loser in record["loser_list"]]
        if not rejected:
            raise DataError(f"{where} ({path}): loser_list is empty")
    return {"id": f"{kind}:{record[keys[0]]}", "set": kind, "goal": parts[1].lower(), "scenario": path,
            "section": f"{parts[1].lower()}-{kind}", "history": _history(record["conversation_input"], where),
            "chosen": chosen, "rejected": rejected}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def load(data: str | None, subsets: Sequence[str] | None) -> LoadedTable:
    """The RMB records under `data` (required: there is no Hub copy by the authors), checked; `subsets` are the
    sections helpfulness-pairwise, helpfulness-bon, harmlessness-pairwise, harmlessness-bon."""
    if data is None:
        raise BenchmarkError("rmb needs --data: the RMB_dataset folder of github.com/Zhou-Zoey/"
                             "RMB-Reward-Model-Benchmark (git clone it), a file of it, or its records as .jsonl/.parquet")
    unknown = sorted(set(subsets or ()) - set(SECTIONS))
    if unknown:
        raise BenchmarkError(f"unknown RMB section(s) {unknown}; choose from {list(SECTIONS)}")
    table = _read(data)
    frame = pd.DataFrame([_row(record, i, table.dataset) for i, record in
                          enumerate(table.frame.to_dict("records"))])
    if frame.empty:
        raise DataError(f"{table.dataset}: no RMB records")
    if subsets:
        frame = frame[frame["section"].isin(list(subsets))].reset_index(drop=True)
        if frame.empty:
            raise DataError(f"{table.dataset}: no records in section(s) {list(subsets)}")
    return LoadedTable(frame=frame, dataset=table.dataset, revision=table.revision)


def passes(frame: pd.DataFrame) -> list[list[tuple[Any, str]]]:
    """One pass: per record its chosen answer, then its rejected answers, each after the conversation."""
    return [[(history, answer) for history, chosen, rejected in zip(frame["history"], frame["chosen"],
                                                                    frame["rejected"])
             for answer in [chosen, *rejected]]]


def evaluate(frame: pd.DataFrame, scores: np.ndarray) -> Evaluation:
    """Per record: chosen strictly above every rejected answer; accuracy per scenario and per section (over
    records), the score = mean of the sections present."""
    sizes = np.array([1 + len(r) for r in frame["rejected"]])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    chosen = scores[starts]
    best_rejected = np.array([np.max(scores[s + 1:s + n]) for s, n in zip(starts, sizes)])  # NaN if any is NaN
    correct = chosen > best_rejected
    scenario, section = frame["scenario"].to_numpy(), frame["section"].to_numpy()
    subsets = {name: float(correct[scenario == name].mean()) for name in sorted(set(scenario))}
    sections, scenario_mean, counts = {}, {}, {}
    for name in SECTIONS:
        rows = section == name
        if rows.any():
            sections[name] = float(correct[rows].mean())
            scenario_mean[name] = float(np.mean([v for k, v in subsets.items() if (scenario[rows] == k).any()]))
            counts[name] = int(rows.sum())
    per_example = pd.DataFrame({"id": frame["id"].to_numpy(), "subset": scenario, "section": section,
                                "score_chosen": chosen,
                                "score_rejected": [scores[s + 1:s + n] for s, n in zip(starts, sizes)],
                                "correct": correct})
    extra: dict[str, Any] = {
        "scenario_mean": scenario_mean, "counts": counts, **coverage(sections, SECTIONS),
        "ties": {"exact": int(sum((scores[s + 1:s + n] == scores[s]).sum() for s, n in zip(starts, sizes))),
                 "nan": int(np.isnan(scores).sum())},
    }
    return Evaluation(subsets=subsets, sections=sections, score=float(np.mean(list(sections.values()))),
                      per_example=per_example, extra=extra)


def metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Sweep columns: `rmb/<goal>-<set>` (helpfulness-pairwise, helpfulness-bon, harmlessness-pairwise,
    harmlessness-bon) and `rmb/score`."""
    return metric_columns(NAME, result["sections"], result["score"])
