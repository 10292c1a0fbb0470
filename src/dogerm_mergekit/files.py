"""File helpers of both packages: content digests, atomic files and folders, and locks on outputs."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dogerm_mergekit.errors import OutputError

TEMP_MARK = ".tmp-"
"""Part of every temporary name (``.NAME.tmp-XXXXXXXX``): an interrupted run's leftovers are recognisable."""

FAST_DIGEST = "xxh3-128"
"""The digest recorded for checkpoint files (fast enough to compute while writing at disk speed)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fast_hasher():
    """A new streaming hasher for :data:`FAST_DIGEST` (``update(bytes)``, ``hexdigest()``)."""
    import xxhash

    return xxhash.xxh3_128()


def fast_digest_file(path: str | Path) -> str:
    """``xxh3-128:<hex>`` of a file's bytes."""
    hasher = fast_hasher()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            hasher.update(block)
    return f"{FAST_DIGEST}:{hasher.hexdigest()}"


OLD_MARK = ".old-"


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for building it before it is renamed into place."""
    return path.parent / f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:8]}"


def remove_leftovers(path: Path) -> None:
    """Remove what an interrupted writer of ``path`` left beside it (call it holding ``path``'s output lock)."""
    path = Path(path).absolute()
    for mark in (TEMP_MARK, OLD_MARK):
        for leftover in path.parent.glob(f".{path.name}{mark}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds the file is synced and renamed onto ``path``.

    Readers see the old file or the new one, never a partial one; on error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_file(path) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


class StagedDirectory:
    """A hidden folder beside ``final`` that takes its place on :meth:`commit`; :meth:`discard` removes it.

    An existing ``final`` is kept until the new folder is complete, so a failure never loses earlier output.
    """

    def __init__(self, final: Path):
        self.final = Path(final).absolute()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = temporary_sibling(self.final)
        self.path.mkdir()

    def commit(self) -> None:
        old = self.final.parent / f".{self.final.name}{OLD_MARK}{uuid.uuid4().hex[:8]}"
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove the folder if it was not committed (a no-op after :meth:`commit`)."""
        shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty :class:`StagedDirectory`'s path: committed when the block succeeds, discarded otherwise."""
    staged = StagedDirectory(final)
    try:
        yield staged.path
    except BaseException:
        staged.discard()
        raise
    staged.commit()


@contextmanager
def output_lock(output: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``output`` for the block; a second run on the same output is refused at once
    (``wait``: waits for it instead, e.g. to append its row to a shared table).

    The lock file is removed when the block ends, failed or not, so no run leaves it behind. (filelock keeps its
    files, since removing one is only safe while it is held and every taker checks that the file it locked is still
    the one at the path: done here with ``flock``, which filelock's own Unix locks also take.)
    """
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.parent / f".{output.name}.lock"
    handle = _take(path, wait=wait)
    if handle is None:
        raise OutputError(
            f"{output} is being written by another run (lock {path}); wait for it to finish or choose another output"
        )
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while held: a run that opened the old file finds it gone and takes a new one
        os.close(handle)


def _take(path: Path, tries: int = 3, wait: bool = False) -> int | None:
    """A descriptor holding an exclusive ``flock`` on ``path``, or None while another process holds it (``wait``:
    blocks until it is free, however often the file is replaced meanwhile)."""
    import fcntl

    attempt = 0
    while wait or attempt < tries:
        attempt += 1
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(handle)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(handle).st_ino:
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)  # the previous holder removed the file between our open and our lock: take the new one
    return None
