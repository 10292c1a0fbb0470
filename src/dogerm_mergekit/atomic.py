"""Outputs that appear all at once: build in a hidden sibling folder, then rename into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final``, on error it vanishes.

    An existing ``final`` is kept until the new folder is complete, so a failure never loses earlier output.
    """
    final = Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}{TEMP_MARK}{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
    os.replace(temporary, final)
    shutil.rmtree(old, ignore_errors=True)
