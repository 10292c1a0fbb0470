"""Benchmark data loading: a Hub dataset at a recorded commit, a URL, or a local parquet / JSON array / JSON lines
file (told apart by content)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
from dogerm_mergekit import tables
from dogerm_mergekit.files import sha256_file
from dogerm_mergekit.hubcache import download_command


@dataclass(frozen=True)
class LoadedTable:
    """Rows of a benchmark plus where they came from.

    `dataset` is a Hub id, a URL or a local path; `revision` is the Hub commit, or `sha256:<hex>` of the file.
    """

    frame: pd.DataFrame
    dataset: str
    revision: str


def read_frame(path: Path) -> pd.DataFrame:
    """A data file's rows, its format told by its content (see :func:`dogerm_mergekit.tables.read_frame`: parquet,
    a JSON array or JSON lines, each maybe gzip-compressed); DataError names what is wrong."""
    return tables.read_frame(path, DataError)


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
        raise DataError(f"Hub dataset {where} is not (fully) in the local cache and the Hub is offline: run "
                        f"`{download_command(repo_id, revision, 'dataset')}` where the Hub is reachable, or use "
                        "--data PATH") from exc
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
