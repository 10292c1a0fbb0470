"""RMB: pairwise and Best-of-N accuracy per goal against an independent count, the authors' published ArmoRM
accuracy, multi-turn conversations as the scorer renders them, schema errors, the command on the authors' folder."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dogerm_eval.benchmarks import rmb
from dogerm_eval.cli import main
from dogerm_eval.errors import BenchmarkError, DataError

SCENARIOS = ["Pairwise_set/Helpfulness/Chat/Discussion", "Pairwise_set/Helpfulness/Code/Data Management",
             "Pairwise_set/Harmlessness/S1", "BoN_set/Helpfulness/Chat/Discussion", "BoN_set/Harmlessness/S1",
             "BoN_set/Harmlessness/multi"]


def turns(index: int, length: int) -> list[dict]:
    """conversation_input as the authors write it: alternating turns with `language`, ending with the user."""
    return [{"content": f"turn {k} of {index}", "language": "English", "role": "user" if k % 2 == 0 else "assistant"}
            for k in range(length)]


def record(index: int, path: str, losers: int = 3) -> dict:
    """One record of RMB_dataset/<path>.json (a pairwise or a Best-of-N record, all the authors' keys)."""
    base = {"conversation_input": turns(index, 1 + 2 * (index % 3)), "category_path": path}
    if path.startswith("Pairwise_set"):
        return {"pair_uid": str(index), **base, "chosen": {"llm_name": "m1", "answer": f"good {index}"},
                "reject": {"llm_name": "m2", "answer": f"bad {index}"}}
    return {**base, "bon_best": {"llm_name": "m1", "answer": f"best {index}"},
            "loser_list": [{"llm_name": f"m{k}", "answer": f"loser {index}.{k}"} for k in range(losers)],
            "bon_uid": str(index)}


def records(seed: int, n: int = 40) -> list[dict]:
    rng = random.Random(seed)
    return [record(i, rng.choice(SCENARIOS), rng.randint(2, 6)) for i in range(n)]


def write_tree(root: Path, rows: list[dict]) -> Path:
    """The authors' layout: RMB_dataset/<category_path>.json, one JSON array per scenario."""
    for path in sorted({r["category_path"] for r in rows}):
        file = root / "RMB_dataset" / f"{path}.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps([r for r in rows if r["category_path"] == path], indent=2))
    return root / "RMB_dataset"


def independent(rows: list[dict], score: dict[str, float]) -> dict[str, float]:
    """Best-of-N and pairwise as one rule, written with all(): the chosen answer beats each rejected answer;
    per goal and set the share of records over all their scenarios; the score the mean of the four."""
    wins: dict[str, list[bool]] = {}
    for r in rows:
        pairwise = "pair_uid" in r
        best, losers = (r["chosen"], [r["reject"]]) if pairwise else (r["bon_best"], r["loser_list"])
        key = f"{r['category_path'].split('/')[1].lower()}-{'pairwise' if pairwise else 'bon'}"
        wins.setdefault(key, []).append(all(score[best["answer"]] > score[x["answer"]] for x in losers))
    figures = {k: sum(v) / len(v) for k, v in wins.items()}
    return {**figures, "score": sum(figures.values()) / len(figures)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_matches_an_independent_count(tmp_path: Path, seed: int) -> None:
    rows = records(seed)
    table = rmb.load(str(write_tree(tmp_path, rows)), None)
    rng = random.Random(seed)
    texts = [answer for history, answer in rmb.passes(table.frame)[0]]
    score = {text: float(rng.randint(0, 3)) for text in texts}
    score[texts[5]] = math.nan
    result = rmb.evaluate(table.frame, np.array([score[t] for t in texts]))
    expected = independent(rows, score)
    for name, value in expected.items():
        got = result.score if name == "score" else result.sections[name]
        assert got == pytest.approx(value, abs=1e-15), name
    assert rmb.metrics(result.summary())["rmb/harmlessness-bon"] == result.sections["harmlessness-bon"]


def test_best_of_n_needs_every_loser_beaten() -> None:
    rows = [record(0, "BoN_set/Harmlessness/S1", 3), record(1, "BoN_set/Harmlessness/S1", 2)]
    frame = pd.DataFrame([rmb._row(r, i, "test") for i, r in enumerate(rows)])
    # item 0: best 2 vs losers 1, 2 (a tie), 0 -> wrong; item 1: best 5 vs 4, 1 -> right
    result = rmb.evaluate(frame, np.array([2.0, 1, 2, 0, 5, 4, 1]))
    assert result.sections == {"harmlessness-bon": 0.5} and result.extra["ties"]["exact"] == 1


def test_golden_authors_armorm_result() -> None:
    """The authors' published ArmoRM rewards on Pairwise_set/Helpfulness/Brainstorming/Idea Development (849 pairs)
    give the accuracy their script printed (its is_correct column, 0.795053)."""
    with gzip.open(Path(__file__).parent / "data" / "rmb_armorm_idea_development.json.gz", "rt") as handle:
        rows = json.load(handle)["rows"]
    path = "Pairwise_set/Helpfulness/Brainstorming/Idea Development"
    frame = pd.DataFrame([rmb._row({**record(i, path), "pair_uid": uid}, i, "golden")
                          for i, (uid, *_) in enumerate(rows)])
    scores = np.array([s for _, chosen, rejected, _ in rows for s in (chosen, rejected)])
    result = rmb.evaluate(frame, scores)
    assert len(rows) == 849
    assert result.sections["helpfulness-pairwise"] == pytest.approx(sum(r[3] for r in rows) / 849, abs=1e-15)
    assert round(result.sections["helpfulness-pairwise"], 6) == 0.795053


def test_multi_turn_conversation_as_the_chat_template_renders_it(tiny_rm_dir: Path) -> None:
    from transformers import AutoTokenizer

    from dogerm_eval.formatting import FormatSettings, format_conversation

    tokenizer = AutoTokenizer.from_pretrained(tiny_rm_dir)
    row = rmb._row(record(2, "Pairwise_set/Helpfulness/Chat/Discussion"), 0, "test")
    assert len(row["history"]) == 5
    text = format_conversation(tokenizer, row["history"], row["chosen"], FormatSettings())
    messages = [{"role": t["role"], "content": t["content"]} for t in turns(2, 5)]
    expected = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": "good 2"}], tokenize=False)
    assert text == expected and text.index("turn 0 of 2") < text.index("turn 4 of 2") < text.index("good 2")
    single = format_conversation(tokenizer, "hello", "hi", FormatSettings())
    assert single == format_conversation(tokenizer, (("user", "hello"),), "hi", FormatSettings())


def test_inputs_schema_errors_and_sections(tmp_path: Path) -> None:
    rows = records(0, 12)
    root = write_tree(tmp_path, rows)
    folder = rmb.load(str(root), None)
    one_file = rmb.load(str(root / "BoN_set" / "Harmlessness" / "S1.json"), None)
    assert set(one_file.frame["section"]) == {"harmlessness-bon"} and one_file.revision.startswith("sha256:")
    jsonl = tmp_path / "rmb.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "rmb.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    for path in (jsonl, parquet):
        other = rmb.load(str(path), None)
        assert sorted(other.frame["id"]) == sorted(folder.frame["id"])
        assert [list(r) for r in other.frame["rejected"]] == [list(r) for r in folder.frame.set_index("id").loc[
            other.frame["id"], "rejected"]]
    assert set(rmb.load(str(root), ["helpfulness-pairwise"]).frame["section"]) == {"helpfulness-pairwise"}
    with pytest.raises(BenchmarkError, match="unknown RMB section"):
        rmb.load(str(root), ["helpfulness"])
    with pytest.raises(BenchmarkError, match="rmb needs --data"):
        rmb.load(None, None)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**rows[0], "category_path": "Other_set/Helpfulness/X"}]))
    with pytest.raises(DataError, match="category_path 'Other_set/Helpfulness/X'"):
        rmb.load(str(bad), None)
    pair = record(0, SCENARIOS[0])
    bad.write_text(json.dumps([{k: v for k, v in pair.items() if k != "reject"}]))
    with pytest.raises(DataError, match=r"missing \['reject'\]"):
        rmb.load(str(bad), None)
    bad.write_text(json.dumps([{**pair, "conversation_input": turns(0, 2)}]))
    with pytest.raises(DataError, match="ending with a user turn"):
        rmb.load(str(bad), None)
    numeric = turns(0, 1)
    numeric[-1] = {**numeric[-1], "content": 5}  # a number is refused, not turned into "5"
    bad.write_text(json.dumps([{**pair, "conversation_input": numeric}]))
    with pytest.raises(DataError, match=r"conversation_input\[0\] needs a string `content`; found int"):
        rmb.load(str(bad), None)
    bad.write_text("[{")
    with pytest.raises(DataError, match="cannot read"):
        rmb.load(str(bad), None)


def test_command_end_to_end(tiny_rm_dir: Path, tmp_path: Path) -> None:
    rows = records(3, 16)
    root = write_tree(tmp_path, rows)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["rmb", str(tiny_rm_dir), "--data", str(root), "--output-dir", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / tiny_rm_dir.name / "rmb.json").read_text())
    per_example = pd.read_parquet(out / tiny_rm_dir.name / saved["per_example"])
    table = rmb.load(str(root), None)
    score = {}
    for (_, chosen, rejected), c, rs in zip(table.frame[["id", "chosen", "rejected"]].itertuples(index=False),
                                            per_example["score_chosen"], per_example["score_rejected"]):
        score.update({chosen: c, **dict(zip(rejected, rs))})
    expected = independent(rows, score)
    assert saved["score"] == pytest.approx(expected["score"], abs=1e-15)
    assert saved["metrics"]["rmb/helpfulness-bon"] == pytest.approx(expected["helpfulness-bon"], abs=1e-15)
    assert saved["dataset_revision"].startswith("sha256-tree:") and "rmb/harmlessness-pairwise" in result.output
