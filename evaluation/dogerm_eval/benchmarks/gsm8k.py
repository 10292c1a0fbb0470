"""GSM8K Best-of-N: data, policy prompt, answer extraction and checking (DogeRM's protocol, SEED_FACTS.md).

Facts re-implemented from the DogeRM code (MiuLab/DogeRM, src/best_of_n/run_gsm8k.py and bon_utils.py, whose
number finder comes from Google DeepMind's Gemma GSM8K notebook): the policy sees a math system prompt and the
question, and its turn starts with " Let's think step by step."; gold = the number after '####'; a candidate's
answer = the first number after the last "The answer is", else its last number; both compared as floats. The reward
model scores user = question, assistant = " Let's think step by step." + candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dogerm_eval.task import Task
from dogerm_eval.bestofn import prepare
from dogerm_eval.data import LoadedTable, load_hub, load_local
from dogerm_eval.errors import DataError
from dogerm_eval.generate import CandidateRecord
from dogerm_eval.schema import Rows, Text, check_rows

NAME = "bon-gsm8k"
HUB_ID = "openai/gsm8k"
HUB_CONFIG = "main"
HUB_SPLIT = "test"


class Row(Rows):
    """A row of openai/gsm8k (config `main`, parquet)."""

    question: Text
    answer: Text


SYSTEM_PROMPT = (
    "You are a math problem solver. Please think step by step and demonstrate your calculation steps. After your "
    "reasoning steps, you should generate the answer by following the format starting with 'The answer is'"
)
RESPONSE_PREFIX = " Let's think step by step."
STOP = (
    "Question:", "Question", "USER:", "USER", "ASSISTANT:", "ASSISTANT", "Instruction:", "Instruction",
    "Response:", "Response", "[INST]", "<s>", "[/INST]",
)
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 512}

ANSWER_DELIMITER = "The answer is"
# optional minus, digits with thousands commas, optional decimal part (the Gemma notebook's pattern)
NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def load(data: str | None) -> LoadedTable:
    """The GSM8K test split (Hub `openai/gsm8k`, config `main`) or a local file in its schema; schema checked."""
    if data is not None:
        table = load_local(data)
    else:
        table = load_hub(HUB_ID, HUB_SPLIT, config=HUB_CONFIG)
    check_rows(table.frame, Row, table.dataset, description="GSM8K: question, answer (strings)")
    for index, answer in enumerate(table.frame["answer"]):
        try:
            gold_answer(answer)
        except DataError as exc:
            raise DataError(f"{table.dataset}: row {index}: {exc}") from None
    return table


def problems(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """(problem_id, question) per row; the problem id is the row's index in the split."""
    return [(index, str(question)) for index, question in enumerate(frame["question"])]


def _to_float(number: str) -> float:
    return float(number.replace(",", ""))


def gold_answer(answer: str) -> float:
    """The number after '####' in a GSM8K reference answer (commas removed)."""
    if "####" not in answer:
        raise DataError(f"reference answer has no '####': {answer[-80:]!r}")
    match = NUMBER.search(answer.split("####")[-1])
    if match is None:
        raise DataError(f"no number after '####': {answer[-80:]!r}")
    return _to_float(match.group())


def extract_answer(text: str) -> float | None:
    """First number after the last "The answer is", else the last number; None when there is none."""
    if ANSWER_DELIMITER in text:
        after = NUMBER.findall(text.split(ANSWER_DELIMITER)[-1])
        if after:
            return _to_float(after[0])
    numbers = NUMBER.findall(text)
    return _to_float(numbers[-1]) if numbers else None


def check(candidates: Sequence[str], row: pd.Series) -> tuple[list[bool], list[float | None]]:
    """Correctness and extracted answer of each candidate for one dataset row."""
    gold = gold_answer(row["answer"])
    answers = [extract_answer(text) for text in candidates]
    return [answer is not None and answer == gold for answer in answers], answers



def task(data: str | None, candidates: str | Path) -> Task:
    """Load and validate the dataset and candidate file, check every candidate; all input errors are raised here."""
    table = load(data)

    def build(rows: list[int], records: list[CandidateRecord]) -> pd.DataFrame:
        frame = table.frame.iloc[rows]
        checked = [check(r.candidates, row) for r, (_, row) in zip(records, frame.iterrows())]
        return pd.DataFrame({
            "problem_id": [r.problem_id for r in records],
            "prompt": [str(q) for q in frame["question"]],
            "responses": [[RESPONSE_PREFIX + text for text in r.candidates] for r in records],
            "correct": [correct for correct, _ in checked],
            "answers": [answers for _, answers in checked],
            "gold": [gold_answer(a) for a in frame["answer"]],
        })

    extra = {
        "rm_response_prefix": RESPONSE_PREFIX,
        "majority_rule": "most frequent extracted answer among the first N (ties: seen first)",
    }
    return prepare(NAME, table, [pid for pid, _ in problems(table.frame)], candidates, build, extra)
