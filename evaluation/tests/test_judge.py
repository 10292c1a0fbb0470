"""dogerm-eval judge: verdict parsing on crafted answers, the seeded placement, scoring through the benchmark's own
formula (checked by hand), and a tiny causal LM end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval import judge
from dogerm_eval.benchmarks import rewardbench
from dogerm_eval.cli import main
from dogerm_eval.generate import CandidateRecord
from dogerm_eval.results import read_per_example
from dogerm_mergekit.contract import MetricsTable
from dogerm_mergekit.testing import build_tiny_lm, build_tiny_rm
from evaluation.tests.manifests import write_manifest

ROWS = [
    {"id": 10 + i, "subset": subset, "prompt": f"What is {i} + {i}?", "chosen": f"{2 * i}", "rejected": f"{2 * i + 1}",
     "chosen_model": "a", "rejected_model": "b"}
    for i, subset in enumerate(["math-prm"] * 4 + ["hep-python"] * 4 + ["alpacaeval-easy"] * 2)
]


@pytest.mark.parametrize(("text", "verdict"), [
    ("Assistant A is right.\n\nFinal verdict: [[A]]", "A"),
    ("Both have flaws, but B is better. [[B]]", "B"),
    ("They are equally good. Final verdict: [[C]]", "tie"),
    ("I prefer [[A]] over [[B]]... Final verdict: [[B]]", "B"),  # the final verdict wins over bare mentions
    ("Final verdict: [[A]]\nOn reflection, Final verdict: [[B]]", "B"),  # the last final verdict
    ("Final verdict:[[A]]", "A"),
    ("Assistant A is better.", None),
    ("Final verdict: [A]", None),
    ("Final verdict: [[a]]", None),
    ("Final verdict: [[D]]", None),
    ("", None),
])
def test_parse_verdict(text: str, verdict: str | None) -> None:
    assert judge.parse_verdict(text) == verdict


def test_placement_is_seeded_per_row_and_fair() -> None:
    first = [judge.chosen_position(0, i) for i in range(2000)]
    assert first == [judge.chosen_position(0, i) for i in range(2000)]
    assert first != [judge.chosen_position(1, i) for i in range(2000)]
    assert abs(first.count("A") / 2000 - 0.5) < 0.05
    assert judge.chosen_position(0, 7) == first[7]  # independent of which other rows are judged


def test_user_turn_places_the_answers() -> None:
    text = judge.user_turn("Q?", "good", "bad", "B")
    assert text.startswith("[User Question]\nQ?\n\n[The Start of Assistant A’s Answer]\nbad\n")
    assert "[The Start of Assistant B’s Answer]\ngood\n[The End of Assistant B’s Answer]" in text


def test_outcomes_score_through_the_benchmarks_formula() -> None:
    frame = pd.DataFrame(ROWS)
    positions = ["A", "B", "A", "B", "A", "A", "B", "B", "A", "B"]
    verdicts = ["A", "A", "tie", None, "A", "B", "B", "B", "A", "B"]
    outcomes = [judge.outcome(v, p) for v, p in zip(verdicts, positions)]
    assert outcomes == ["chosen", "rejected", "tie", "unparsable", "chosen", "rejected", "chosen", "chosen",
                        "chosen", "chosen"]
    evaluation = rewardbench.evaluate(frame, judge.verdict_scores(outcomes))
    assert evaluation.subsets == {"math-prm": 0.25, "hep-python": 0.75, "alpacaeval-easy": 1.0}
    assert evaluation.sections["Reasoning"] == pytest.approx((984 * 0.25 + 164 * 0.75) / (984 + 164))  # one hep subset
    assert evaluation.sections["Math"] == 0.25 and evaluation.sections["Code"] == 0.75
    assert evaluation.extra["ties"]["exact"] == 1 and evaluation.extra["ties"]["nan"] == 1
    assert judge.counts(outcomes, positions, verdicts) == {
        "pairs": 10, "correct": 6, "wrong": 2, "ties": 1, "unparsable": 1, "chosen_in_a": 5, "named_a": 4 / 8}


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("judge") / "tiny-judge")


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "rb.jsonl"
    pd.DataFrame(ROWS).to_json(path, orient="records", lines=True)
    return path


def test_a_tiny_model_end_to_end(tiny_judge: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["judge", str(tiny_judge), "--data", str(_data(tmp_path)), "--subsets", "math-prm,hep-python",
            "--max-new-tokens", "6", "--dtype", "float32", "--backend", "transformers", "--output-dir", str(out)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    # a run on some subsets is stored beside a full one (judge-rewardbench.json), never in its place
    result = json.loads((out / "tiny-judge" / "judge-rewardbench@hep-python+math-prm.json").read_text())
    per_example = read_per_example(out / "tiny-judge" / "judge-rewardbench@hep-python+math-prm.json")
    assert not (out / "tiny-judge" / "judge-rewardbench.json").exists()
    # an untrained model answers gibberish: every verdict is unparsable, so every pair is wrong, and reported
    assert result["verdicts"]["pairs"] == 8 and result["verdicts"]["unparsable"] == 8 and result["score"] == 0.0
    assert set(result["subsets"]) == {"math-prm", "hep-python"} and result["sections"]["Math"] == 0.0
    assert set(result["metrics"]) >= {"rewardbench/math", "rewardbench/code", "rewardbench/score"}
    assert result["settings"]["generation"]["temperature"] == 0.0 and result["settings"]["seed"] == 0
    assert per_example["chosen_position"].tolist() == [judge.chosen_position(0, r["id"]) for r in ROWS[:8]]
    assert per_example["answer"].str.len().gt(0).all() and per_example["outcome"].eq("unparsable").all()
    assert "0 correct, 0 wrong, 0 ties, 8 unparsable of 8; no A/B verdict" in done.output
    assert "named A in -" not in done.output
    assert not (out / "tiny-judge" / ".cache").exists()
    again = CliRunner().invoke(main, args)  # cached: same result, no generation
    assert again.exit_code == 0 and "reusing cached result" in again.output


def _always_a(problems, settings, out, **_):
    """In place of generate_candidates: a judge whose every answer names assistant A."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for pid, user in problems:
            record = CandidateRecord(problem_id=pid, prompt=user, candidates=["Reasoning... Final verdict: [[A]]"],
                                     generation=settings.model_dump())
            handle.write(record.model_dump_json() + "\n")
    return len(problems)


def test_verdicts_from_the_generated_answers_are_scored(tiny_judge: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge that always names A: correct exactly where the seeded placement put the chosen answer in A."""
    from dogerm_eval import generate

    monkeypatch.setattr(generate, "generate_candidates", _always_a)
    result = judge.run_judge(str(tiny_judge), "rewardbench", str(_data(tmp_path)), None, tmp_path / "out", seed=3)
    placed_a = {r["subset"]: [] for r in ROWS}
    for row in ROWS:
        placed_a[row["subset"]].append(judge.chosen_position(3, row["id"]) == "A")
    assert result["subsets"] == {s: pytest.approx(np.mean(v)) for s, v in placed_a.items()}
    assert result["verdicts"]["named_a"] == 1.0 and result["verdicts"]["unparsable"] == 0
    assert result["verdicts"]["correct"] == sum(sum(v) for v in placed_a.values())


def test_refusals(tiny_judge: Path, tmp_path: Path) -> None:
    rm = build_tiny_rm(tmp_path / "an-rm")
    done = CliRunner().invoke(main, ["judge", str(rm), "--data", str(_data(tmp_path)), "--output-dir",
                                     str(tmp_path / "o")])
    assert done.exit_code == 1 and "is a reward model (LlamaForSequenceClassification)" in done.output
    repeated = tmp_path / "repeated.jsonl"
    pd.DataFrame(ROWS[:2]).assign(id=[1, 1]).to_json(repeated, orient="records", lines=True)
    done = CliRunner().invoke(main, ["judge", str(tiny_judge), "--data", str(repeated), "--output-dir",
                                     str(tmp_path / "o")])
    assert done.exit_code == 1 and "id 1 repeats" in done.output


def test_the_judge_is_a_reference_row_and_line_of_a_sweep(tiny_judge: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`sweep --baseline judge-rewardbench.json`: the judge's metrics below the members in sweep.csv and the printed
    table, a dotted line at its values in the plot, left out of metrics.json; refused before scoring when the judge
    read other data or other subsets, judged another benchmark, or the file is no judge result."""
    from dogerm_eval import generate
    from dogerm_eval.report import benchmark_figure

    monkeypatch.setattr(generate, "generate_candidates", _always_a)
    data, out = _data(tmp_path), tmp_path / "out"
    judged = judge.run_judge(str(tiny_judge), "rewardbench", str(data), None, out, seed=3)
    baseline = out / "tiny-judge" / "judge-rewardbench.json"
    sweep = tmp_path / "sweep"
    for lam, seed in ((0.0, 0), (0.5, 1)):
        build_tiny_rm(sweep / f"lambda-{lam:.2f}", seed=seed)
    write_manifest(sweep, [0.0, 0.5])
    args = ["sweep", str(sweep), "--benchmark", "rewardbench", "--data", str(data), "--output-dir", str(out),
            "--dtype", "float32"]

    done = CliRunner().invoke(main, [*args, "--baseline", str(baseline)])
    assert done.exit_code == 0, done.output
    csv = pd.read_csv(out / "sweep.csv", float_precision="round_trip")  # the floats written, at any pandas
    assert csv.columns[-1] == "baseline" and csv["baseline"].tolist()[2] == "judge tiny-judge"
    assert csv["lambda"].tolist()[:2] == [0.0, 0.5] and np.isnan(csv["lambda"][2]) and csv["baseline"][:2].isna().all()
    for key, value in judged["metrics"].items():  # the judge's own numbers, under the members' column names
        assert csv[key][2] == pytest.approx(value, abs=0, rel=1e-12), key
    placed_a = {s: np.mean([judge.chosen_position(3, r["id"]) == "A" for r in ROWS if r["subset"] == s])
                for s in ("math-prm", "hep-python")}  # the always-A judge is right where the chosen answer was in A
    assert (csv["rewardbench/math"][2], csv["rewardbench/code"][2]) == (placed_a["math-prm"], placed_a["hep-python"])
    member = json.loads((out / "lambda-0.50" / "rewardbench.json").read_text())
    assert csv.loc[1, "rewardbench/score"] == member["score"]
    assert MetricsTable.load(out / "metrics.json").rows == csv[:2].drop(columns="baseline").to_dict("records")
    assert "judge tiny-judge" in [line for line in done.output.splitlines() if not line.startswith("* ")][-1]
    lines = {line.get_label(): line.get_ydata() for line in benchmark_figure(csv, "rewardbench").axes[0].get_lines()}
    assert list(lines["score (judge tiny-judge)"]) == [judged["score"]] * 2  # a horizontal line at the judge's score
    assert list(lines["score"]) == csv["rewardbench/score"][:2].tolist()

    other = tmp_path / "other.jsonl"
    pd.DataFrame(ROWS).assign(chosen_model="c").to_json(other, orient="records", lines=True)
    fresh = tmp_path / "fresh"
    refusals = [
        (["--data", str(other)], "judge the same data, or give the sweep the judge's --data"),
        (["--subsets", "math-prm"], "judged the subsets ['alpacaeval-easy', 'hep-python', 'math-prm'], the sweep "
                                    "scores ['math-prm']"),
        (["--benchmark", "pairwise"], "judged rewardbench, which this sweep does not score"),
    ]
    for extra, message in refusals:
        done = CliRunner().invoke(main, [*args[:-4], "--output-dir", str(fresh), "--dtype", "float32", *extra,
                                         "--baseline", str(baseline)])
        assert done.exit_code == 1 and message in done.output, done.output
    done = CliRunner().invoke(main, [*args[:-4], "--output-dir", str(fresh), "--baseline",
                                     str(out / "lambda-0.50" / "rewardbench.json")])
    assert done.exit_code == 1 and "is not a `dogerm-eval judge` result" in done.output, done.output
    assert not fresh.exists() or not any(fresh.rglob("*.json"))  # refused before any member was scored


def test_prompts_longer_than_the_judges_window_are_counted(tiny_judge: Path, tmp_path: Path) -> None:
    """A judge of 40 positions: every prompt (the authors' instructions alone are longer) is cut on the left to fit,
    and the result counts them per subset; with the tiny model's own 4096 positions nothing is cut."""
    import shutil

    short = tmp_path / "short-judge"
    shutil.copytree(tiny_judge, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 40}))
    common = ["--data", str(_data(tmp_path)), "--subsets", "math-prm,hep-python", "--max-new-tokens", "6",
              "--dtype", "float32", "--backend", "transformers", "--output-dir", str(tmp_path / "out")]
    done = CliRunner().invoke(main, ["judge", str(short), *common])
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "out" / "short-judge" / "judge-rewardbench@hep-python+math-prm.json").read_text())
    subsets = pd.DataFrame(ROWS)["subset"].value_counts()
    assert result["truncated_texts"] == {"texts": 8, "scored": 8, "max_length": 40, "side": "left",
                                         "by_subset": {"math-prm": int(subsets["math-prm"]),
                                                       "hep-python": int(subsets["hep-python"])}}
    assert "[8 of 8 prompts cut to 40 tokens (left)]" in done.output
    done = CliRunner().invoke(main, ["judge", str(tiny_judge), *common])
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "out" / "tiny-judge" / "judge-rewardbench@hep-python+math-prm.json").read_text())
    assert result["truncated_texts"]["texts"] == 0 and "prompts cut" not in done.output
