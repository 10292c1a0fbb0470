"""Benchmark rows in the shapes their authors publish, and the three file formats they come in.

Shapes read from the authors' repositories (not copied): THU-KEG/RM-Bench @ 73c52d7 `data/*.json` and README
(`total_dataset.json`: a JSON array indented by 4, rows `id` (int), `prompt`, `chosen` [3], `rejected` [3],
`domain`); kimsh0507/RewardMATH_official @ cd599e8 `dataset/benchmark/RewardMATH_direct.json` (a JSON array indented
by 4, one row per solution: `problem`, `answer`, `eval_solution` [steps], `solution_reference`, `solution_type`,
`subject`, `level` (int), `problem_id` (int), `id` (int)); allenai/reward-bench(-2) and lmarena-ai/PPE-* are parquet
on the Hub, GAIR-NLP/auto-j's test set is JSON lines.
"""

from __future__ import annotations

from typing import Any

from dogerm_eval.benchmarks.samples import autoj_row, rewardbench2_row, rewardbench_rows
from tests.formats import FORMATS, write  # noqa: F401 (re-exported: the formats shared with the merge package tests)

RMBENCH_DOMAINS = ("chat", "math", "code", "safety-refuse", "safety-response")


def rmbench_rows(per_domain: int = 2) -> list[dict[str, Any]]:
    """`total_dataset.json` rows: int ids, three styled responses each (concise, detailed plain, markdown)."""
    rows = []
    for domain in RMBENCH_DOMAINS:
        for k in range(per_domain):
            i = len(rows)
            rows.append({"id": i, "prompt": f"{domain} question {i}?",
                         "chosen": [f"right {i}", f"right {i}, in detail.", f"**right** {i}\n- detail"],
                         "rejected": [f"wrong {i}", f"wrong {i}, in detail.", f"**wrong** {i}\n- detail"],
                         "domain": domain})
    return rows


def rewardmath_rows(problems: int = 3, rejected: int = 9) -> list[dict[str, Any]]:
    """`RewardMATH_direct.json` rows: per problem the human-to-GPT-4 chosen solution, then the rejected ones."""
    rows = []
    for p in range(problems):
        for k in range(rejected + 1):
            rows.append({"problem": f"$x+{p}=2{p}$. Solve for $x$.", "answer": f"{p}",
                         "eval_solution": [f"Subtract {p} from both sides.", f"Therefore $x = \\boxed{{{p + k}}}$."],
                         "solution_reference": "human_to_GPT-4" if k == 0 else f"model-{k}",
                         "solution_type": "chosen" if k == 0 else "rejected",
                         "subject": ("Algebra", "Geometry")[p % 2], "level": 1 + p % 5, "problem_id": p,
                         "id": 10 * p + k})
    return rows


def rewardbench_v1_rows() -> list[dict[str, Any]]:
    """`filtered` split rows (id, subset, prompt, chosen, rejected, chosen_model, rejected_model)."""
    return rewardbench_rows({"math-prm": 2, "hep-go": 2, "alpacaeval-easy": 2}).to_dict("records")


def rewardbench2_rows() -> list[dict[str, Any]]:
    """`test` split rows: one best-of-4 row per subset, and a Ties prompt with its ref and tied rows."""
    rows = [rewardbench2_row(f"{s}-0", s, [f"{s} good"], [f"{s} bad {k}" for k in range(3)])
            for s in ("Factuality", "Precise IF", "Math", "Safety", "Focus")]
    rows.append(rewardbench2_row("ref:1", "Ties", ["4"], ["5", "6"]))
    rows.append(rewardbench2_row("tied:1", "Ties", ["4", "four"], ["5", "6"]))
    return rows


def autoj_rows() -> list[dict[str, Any]]:
    """`testdata_pairwise.jsonl` lines (no id column: the line number is used)."""
    return [autoj_row(i, scenario, label) for i, (scenario, label) in
            enumerate([("math_reasoning", 0), ("code_generation", 1), ("chitchat", 2), ("chitchat", 0)])]


def ppe_rows(responses: int = 4) -> list[dict[str, Any]]:
    """Rows of a PPE best-of-K set (`subset` names the set), responses alternating correct / incorrect."""
    rows = []
    for q in range(2):
        correct = [k % 2 == q % 2 for k in range(responses)]
        rows.append({"question_id": f"q{q}", "model_name": "m", "prompt": f"question {q}",
                     **{f"response_{k + 1}": f"answer {q}.{k}" for k in range(responses)},
                     "scores": correct, "sampled_conflict_pairs": [[0, 1], [2, 3]], "subset": "math"})
    return rows


def gsm8k_rows() -> list[dict[str, Any]]:
    """openai/gsm8k `main` rows (question, answer ending in `#### <number>`)."""
    return [{"question": f"What is {a} + {a}?", "answer": f"{a} + {a} = {2 * a}\n#### {2 * a}"} for a in (1, 2)]


def judgebench_rows() -> list[dict]:
    """ScalerLab/JudgeBench data/dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl lines (all their keys)."""
    sources = ("mmlu-pro-math", "livebench-reasoning", "livebench-math", "livecodebench")
    return [{"pair_id": f"id-{i}", "original_id": i, "source": source, "question": f"question {i}?",
             "response_model": "gpt-4o-2024-05-13", "response_A": f"answer A {i}", "response_B": f"answer B {i}",
             "label": "A>B" if i % 2 else "B>A"} for i, source in enumerate(sources)]


ROWS = {"rmbench": rmbench_rows, "rewardmath": rewardmath_rows, "rewardbench": rewardbench_v1_rows,
        "pairwise": rewardbench_v1_rows, "rewardbench2": rewardbench2_rows, "autoj": autoj_rows, "ppe": ppe_rows,
        "judgebench": judgebench_rows}
"""Benchmark name -> rows in its published shape."""
