"""dogerm-train-rm's --data as the world sends it: parquet, a JSON array or JSON lines, gzip-compressed or not, told
apart by content whatever the file is called (the reader dogerm-eval uses); broken files refused in one line naming
the file and the line or row, before any model is downloaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.preferences import load_preferences
from tests.formats import FORMATS, write
from tests.test_train_rm import ROWS

SUFFIXES = (".json", ".jsonl", ".parquet", ".gz", ".txt", "")
"""Names that say nothing, or the wrong thing, about the content."""


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_format_loads_whatever_its_name(tmp_path: Path, fmt: str, compress: bool, suffix: str) -> None:
    path = write(ROWS, tmp_path / f"prefs{suffix}", fmt, compress)
    data = load_preferences(str(path))
    assert data.source == str(path.resolve())
    assert data.revision == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(data.rows.column_names) == ["chosen", "prompt", "rejected"]  # ratings and models not read
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in data.rows] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in ROWS]


@pytest.mark.parametrize("fmt", FORMATS)
def test_line_and_paragraph_separators_inside_strings_are_text(tmp_path: Path, fmt: str) -> None:
    """JSON written with ensure_ascii=False keeps U+2028 / U+2029 / U+0085 raw inside strings; they are not line
    ends (nor is the CR of a file with Windows line ends)."""
    def reply(row: dict) -> list[dict]:
        *turns, last = row["chosen"]
        return [*turns, {**last, "content": last["content"] + "\u2028line\u2029para\x85next"}]

    rows = [{**row, "chosen": reply(row)} for row in ROWS]
    path = write(rows, tmp_path / "prefs", fmt)
    if fmt == "lines":
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    loaded = load_preferences(str(path)).rows
    assert [r["chosen"][-1]["content"] for r in loaded] == [r["chosen"][-1]["content"] for r in rows]


def test_unread_columns_of_mixed_types_do_not_matter(tmp_path: Path) -> None:
    rows = [{**row, "chosen-rating": "5" if i == 2 else 5.0, "id": None if i else 3} for i, row in enumerate(ROWS)]
    assert len(load_preferences(str(write(rows, tmp_path / "mixed.jsonl", "lines"))).rows) == len(ROWS)


def test_a_prompt_given_apart_is_put_in_front_only_where_the_user_turn_is_missing(tmp_path: Path) -> None:
    """The rows of a file without a ``prompt`` key in some rows (JSON lines are free-form) load with None there."""
    answer_only = {k: [m for m in ROWS[0][k] if m["role"] == "assistant"] for k in ("chosen", "rejected")}
    rows = [{"prompt": "Why?", **answer_only}, {k: ROWS[1][k] for k in ("chosen", "rejected")}]
    data = load_preferences(str(write(rows, tmp_path / "prefs.json", "lines")))
    assert [r["prompt"] for r in data.rows] == ["Why?", None]

    reversed_rows = load_preferences(str(write(rows[::-1], tmp_path / "first-without.json", "lines"))).rows
    assert [r["prompt"] for r in reversed_rows] == [None, "Why?"]  # the key missing from the first row is kept
    orphan = [rows[1], {"prompt": None, **answer_only}]
    with pytest.raises(DogeRMConfigError, match=r"row 1, column 'chosen' has no user turn and the row no prompt"):
        load_preferences(str(write(orphan, tmp_path / "orphan.parquet", "array")))


def _refusal(path: Path) -> str:
    with pytest.raises(DogeRMConfigError) as excinfo:
        load_preferences(str(path))
    message = excinfo.value.message
    assert "\n" not in message and str(path.name) in message, message
    return message


def test_broken_files_are_named_with_the_line_or_row(tmp_path: Path) -> None:
    lines = write(ROWS, tmp_path / "cut.parquet", "lines")  # a JSON-lines file cut inside its fourth line
    text = lines.read_text()
    lines.write_text(text[: text.index("\n", text.index("\n", text.index("\n") + 1) + 1) + 20])
    assert "line 4 is not valid JSON (truncated?)" in _refusal(lines)

    array = tmp_path / "cut.jsonl"
    array.write_text(json.dumps(ROWS)[:-30])
    assert "as a JSON array (truncated or invalid JSON?)" in _refusal(array)

    not_rows = tmp_path / "strings.json"
    not_rows.write_text(json.dumps([ROWS[0], "a string"]))
    assert "JSON array element 1 is a string, expected a JSON object" in _refusal(not_rows)

    packed = write(ROWS, tmp_path / "cut.json.gz", "parquet", compress=True)
    packed.write_bytes(packed.read_bytes()[:-10])
    assert "as a gzip file (truncated or corrupt?)" in _refusal(packed)

    null = write([ROWS[0], {**ROWS[1], "rejected": None}], tmp_path / "null.json", "parquet")
    assert "row 1, column 'rejected': expected a message list ending with an assistant turn" in _refusal(null)

    text_file = tmp_path / "notes.json"
    text_file.write_text("chosen,rejected\n")
    assert "it starts with 'chosen,rejected" in _refusal(text_file)


@pytest.mark.parametrize(("ref", "message"), [
    ("./missing/prefs.json", "no such file or folder"),
    ("~/missing-prefs.jsonl", "no such file or folder"),
    ("org/name@", "empty revision after '@'"),
    ("not a hub id", "is neither an existing local path nor a valid Hub id"),
])
def test_a_missing_file_or_a_malformed_hub_id_is_refused_without_the_hub(ref: str, message: str) -> None:
    with pytest.raises(DogeRMConfigError, match=message):
        load_preferences(ref)


@pytest.mark.parametrize(("ref", "message"), [
    ("./missing-base", "BASE ./missing-base: no such folder"),
    ("org/name@", "empty revision after '@'"),
])
def test_the_base_is_read_by_the_same_hub_reference_rules(ref: str, message: str) -> None:
    from dogerm_mergekit.train_rm import resolve_base

    with pytest.raises(DogeRMConfigError, match=message):
        resolve_base(ref)
