"""A constant-memory safetensors writer: every tensor goes straight to its final offset in a pre-laid-out shard.

mergekit's ``TensorWriter`` keeps a whole shard (5 GB by default) in memory before writing it; a sweep writing K
checkpoints at once would hold K shards. When every tensor's name, dtype and shape are known before the merge
runs, each shard can be laid out up front. The bytes are those of mergekit's writer (tests compare them): the
same shard split (tensors in save order, a new shard when the next one would pass ``max_shard_size``), the
same file names and index, and safetensors' own layout (tensors sorted by dtype, then name, compact JSON header
padded with spaces to 8 bytes). Tensors may arrive whole or in flat pieces; bytes arriving in file order go to disk
with direct I/O. Independent of mergekit; :mod:`dogerm_mergekit.tasks` adapts it to mergekit's graph.
"""

from __future__ import annotations

import errno
import json
import math
import mmap
import os
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dogerm_mergekit.dtypes import FILE_ORDER, DType
from dogerm_mergekit.files import FAST_DIGEST, fast_hasher


@dataclass(frozen=True)
class TensorLayout:
    """One output tensor: name, dtype and shape."""

    name: str
    dtype: DType
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def safetensors_header(entries: Sequence[TensorLayout]) -> tuple[bytes, dict[str, int]]:
    """The header safetensors writes for these tensors (format ``pt``), and each tensor's data offset."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offsets: dict[str, int] = {}
    position = 0
    for entry in sorted(entries, key=lambda e: (FILE_ORDER[e.dtype.code], e.name)):
        header[entry.name] = {
            "dtype": entry.dtype.code,
            "shape": list(entry.shape),
            "data_offsets": [position, position + entry.nbytes],
        }
        offsets[entry.name] = position
        position += entry.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offsets


def split_shards(layout: Sequence[TensorLayout], max_shard_size: int) -> list[list[TensorLayout]]:
    """mergekit's shard split: in save order, a new shard when the next tensor would pass ``max_shard_size``."""
    shards: list[list[TensorLayout]] = [[]]
    size = 0
    for entry in layout:
        if shards[-1] and max_shard_size > 0 and size + entry.nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += entry.nbytes
    return shards


def shard_file_names(count: int, prefix: str = "model") -> list[str]:
    """``model.safetensors``, or ``model-00001-of-00003.safetensors`` ... (Hugging Face's names)."""
    if count == 1:
        return [f"{prefix}.safetensors"]
    return [f"{prefix}-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


class WriteQueue:
    """One background thread writing tensors in submission order, at most ``budget`` bytes pending.

    Disk writes (and digests) then overlap the merging of the next tensors, and memory stays bounded however
    many writers share the queue. Callers that compute their output in pieces borrow one of ``staging`` reusable
    buffers of ``staging_bytes`` (no fresh pages per piece) and give it back with :meth:`recycle` once its writes
    are queued. Use it as a context manager: leaving it waits for every write and stops the thread.
    """

    def __init__(self, budget: int = 64 << 20, staging: int = 6, staging_bytes: int = 8 << 20):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dogerm-writer")
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dogerm-direct-io")
        """The shards' direct writes, so that filling one block overlaps writing the other."""
        self._ready = threading.Condition()
        self._pending = 0
        self._budget = budget
        self.staging_bytes = staging_bytes
        self._staging_left = staging
        self._free: list[torch.Tensor] = []

    def submit(self, nbytes: int, work: Callable[[], None]) -> Future:
        with self._ready:
            self._ready.wait_for(lambda: self._pending == 0 or self._pending + nbytes <= self._budget)
            self._pending += nbytes
        future = self._pool.submit(work)
        future.add_done_callback(lambda _: self._release(nbytes))
        return future

    def _release(self, nbytes: int) -> None:
        with self._ready:
            self._pending -= nbytes
            self._ready.notify_all()

    def staging(self) -> torch.Tensor:
        """A free staging buffer (``staging_bytes`` of uint8), waiting for one if all are in use."""
        with self._ready:
            self._ready.wait_for(lambda: self._free or self._staging_left)
            if self._free:
                return self._free.pop()
            self._staging_left -= 1
        return torch.empty(self.staging_bytes, dtype=torch.uint8)

    def recycle(self, buffer: torch.Tensor) -> None:
        """Give ``buffer`` back once the writes queued before this call (those reading it) are done."""

        def give_back() -> None:
            with self._ready:
                self._free.append(buffer)
                self._ready.notify_all()

        self._pool.submit(give_back)

    def __enter__(self) -> WriteQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True)
        self.io.shutdown(wait=True)


DIRECT_BLOCK = 4 << 20
"""Bytes per direct write: a multiple of every device's logical block size, and the largest request most
block devices take whole."""


def _open_direct(path: Path) -> int | None:
    """A second descriptor on ``path`` with direct I/O, or None where the platform or file system has none."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:  # e.g. EINVAL: the file system does not do direct I/O
        return None


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _write_block(direct: int, fd: int, block: memoryview, offset: int) -> None:
    """One aligned block with direct I/O, or the ordinary way where the file system opened the file for direct
    I/O but refuses the write (EINVAL)."""
    try:
        _pwrite_all(direct, block, offset)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        _pwrite_all(fd, block, offset)


class _Shard:
    """One open shard file and the running digest of the bytes written to it in file order.

    Bytes arriving in file order (the executor runs tensors by name, the order safetensors stores them in)
    stream to disk with direct I/O from two aligned blocks, one filling while the other is written: copying
    into the page cache (and reclaiming it) costs more CPU than the merge's arithmetic. A write out of order
    switches the shard to ordinary writes for good; so does a file system without direct I/O.
    """

    def __init__(self, path: Path, header: bytes, size: int, io: ThreadPoolExecutor):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, size)
        self.hasher = fast_hasher()
        self.position: int | None = 0  # bytes written in file order so far; None once a write came out of order
        self._io = io
        self._direct = _open_direct(path)
        self._maps = [mmap.mmap(-1, DIRECT_BLOCK) for _ in range(2)] if self._direct is not None else []
        self._blocks = [torch.frombuffer(m, dtype=torch.uint8) for m in self._maps]  # copies into them drop the GIL
        self._pending: list[Future | None] = [None, None]
        self._current = 0
        self._filled = 0
        self._start = 0  # file offset of the current block
        self.write(0, torch.frombuffer(bytearray(header), dtype=torch.uint8))

    def write(self, offset: int, data: torch.Tensor) -> None:
        """Write ``data`` (flat uint8) at ``offset``."""
        if self.position == offset:
            self.hasher.update(memoryview(data.numpy()))
            self.position += data.numel()
            if self._direct is not None:
                self._stream(data)
                return
        elif self.position is not None:
            self.position = None
            self._stop_streaming()
        _pwrite_all(self.fd, memoryview(data.numpy()), offset)

    def _stream(self, data: torch.Tensor) -> None:
        while data.numel():
            taken = min(data.numel(), DIRECT_BLOCK - self._filled)
            self._blocks[self._current][self._filled : self._filled + taken].copy_(data[:taken])
            self._filled += taken
            data = data[taken:]
            if self._filled == DIRECT_BLOCK:
                block, start = memoryview(self._maps[self._current]), self._start
                self._pending[self._current] = self._io.submit(_write_block, self._direct, self.fd, block, start)
                self._current = 1 - self._current
                self._start += DIRECT_BLOCK
                self._filled = 0
                self._wait(self._current)

    def _wait(self, index: int) -> None:
        pending, self._pending[index] = self._pending[index], None
        if pending is not None:
            pending.result()  # re-raises a failed write (a full disk)

    def _stop_streaming(self) -> None:
        """Write what the current block holds the ordinary way and stop direct I/O."""
        if self._direct is None:
            return
        for index in range(2):
            self._wait(index)
        _pwrite_all(self.fd, memoryview(self._maps[self._current])[: self._filled], self._start)
        os.close(self._direct)
        self._direct = None
        self._blocks, self._maps = [], []  # freed with their last views

    def finish(self) -> None:
        """Write what is left and make the file durable."""
        self._stop_streaming()
        os.fsync(self.fd)

    def close(self) -> None:
        """Release the descriptors (after :meth:`finish`, or on failure)."""
        for index in range(len(self._blocks)):
            try:
                self._wait(index)
            except OSError:
                pass  # the failure already surfaced, or the run is being abandoned
        if self._direct is not None:
            os.close(self._direct)
        os.close(self.fd)


def write_rows(writers: Sequence[StreamingSafetensorsWriter], name: str, start: int, rows: torch.Tensor,
               queue: WriteQueue) -> None:
    """Row ``k`` of ``rows`` for ``writers[k]``: a flat piece of tensor ``name`` from element ``start``, in each
    output. One work item for all rows (the sweep writes K outputs' pieces together)."""
    works = [writer.claim(name, row, start) for writer, row in zip(writers, rows)]
    future = queue.submit(rows.numel() * rows.itemsize, lambda: [work() for work in works])
    for writer in writers:
        writer.track(future)


class StreamingSafetensorsWriter:
    """Writes one checkpoint's safetensors shards (and index) into ``folder`` as tensors arrive, in any order."""

    def __init__(self, folder: Path, layout: Sequence[TensorLayout], max_shard_size: int, queue: WriteQueue,
                 index_metadata: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self._queue = queue
        self._expected = {entry.name: entry for entry in layout}
        self._index_metadata = index_metadata or {}
        shards = split_shards(layout, max_shard_size)
        self._shards: list[_Shard] = []
        self._places: dict[str, tuple[_Shard, int]] = {}
        self.weight_map: dict[str, str] = {}
        for entries, name in zip(shards, shard_file_names(len(shards))):
            header, offsets = safetensors_header(entries)
            shard = _Shard(self.folder / name, header, len(header) + sum(e.nbytes for e in entries), queue.io)
            self._shards.append(shard)
            for entry in entries:
                self._places[entry.name] = (shard, len(header) + offsets[entry.name])
                self.weight_map[entry.name] = name
        self.total_size = sum(entry.nbytes for entry in layout)
        self._counts: dict[str, int] = {}  # elements queued per tensor
        self._futures: list[Future] = []

    def write(self, name: str, tensor: torch.Tensor, start: int | None = None) -> Future:
        """Queue ``tensor`` (of the planned dtype and shape) for writing at its place; with ``start``, a flat piece
        of it beginning at element ``start``. The tensor must not change until the write is done."""
        return self.track(self._queue.submit(tensor.numel() * tensor.itemsize, self.claim(name, tensor, start)))

    def claim(self, name: str, tensor: torch.Tensor, start: int | None = None) -> Callable[[], None]:
        """Check ``tensor`` (or a flat piece from element ``start``) against the plan, count it, and return the work
        that writes it; queue that work, then :meth:`track` its future."""
        expected = self._expected.get(name)
        whole = start is None
        if (expected is None or tensor.dtype != expected.dtype.torch
                or (tuple(tensor.shape) != expected.shape if whole else tensor.dim() != 1)):
            raise ValueError(f"tensor {name} {tensor.dtype} {tuple(tensor.shape)} does not match the planned {expected}")
        total = math.prod(expected.shape)
        start = start or 0
        count = self._counts.get(name, 0) + tensor.numel()
        if start < 0 or start + tensor.numel() > total or count > total:
            raise ValueError(f"tensor {name} written twice (or past its end)")
        self._counts[name] = count
        shard, offset = self._places[name]
        data = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
        offset += start * expected.dtype.itemsize
        return lambda: shard.write(offset, data)

    def track(self, future: Future) -> Future:
        """Remember a queued write: :meth:`close` waits for it (and re-raises its failure)."""
        self._futures.append(future)
        return future

    def close(self) -> dict[str, str]:
        """Wait for the writes, check every tensor came, sync and close; return each file's digest.

        The index (``model.safetensors.index.json``, only for several shards) has mergekit's format.
        """
        try:
            for future in self._futures:
                future.result()  # re-raises a failed write
            missing = {n for n, e in self._expected.items() if self._counts.get(n, 0) != math.prod(e.shape)}
            if missing:
                raise RuntimeError(f"checkpoint incomplete: {len(missing)} tensors never written, e.g. {min(missing)}")
            digests = {}
            for shard in self._shards:
                shard.finish()
                if shard.position is not None:
                    digests[shard.path.name] = f"{FAST_DIGEST}:{shard.hasher.hexdigest()}"
        finally:
            for shard in self._shards:
                shard.close()
        if len(self._shards) > 1:
            index = {"metadata": {"total_size": self.total_size, **self._index_metadata}, "weight_map": self.weight_map}
            text = json.dumps(index, indent=2).encode()
            (self.folder / "model.safetensors.index.json").write_bytes(text)
            hasher = fast_hasher()
            hasher.update(text)
            digests["model.safetensors.index.json"] = f"{FAST_DIGEST}:{hasher.hexdigest()}"
        return digests

