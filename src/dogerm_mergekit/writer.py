"""A constant-memory safetensors writer: every tensor goes straight to its final offset in a pre-laid-out shard.

mergekit's ``TensorWriter`` keeps a whole shard (5 GB by default) in memory before writing it; a sweep writing K
checkpoints at once would hold K shards. When every tensor's name, dtype and shape are known before the merge
runs, each shard can be laid out up front. The bytes are those of mergekit's writer (tests compare them): the
same shard split (tensors in save order, a new shard when the next one would pass ``max_shard_size``), the
same file names and index, and safetensors' own layout (tensors sorted by dtype, then name, compact JSON header padded with
spaces to 8 bytes). Independent of mergekit; :mod:`dogerm_mergekit.tasks` adapts it to mergekit's graph.
"""

from __future__ import annotations

import json
import math
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
    many writers share the queue. Use it as a context manager: leaving it waits for every write and stops the thread.
    """

    def __init__(self, budget: int = 64 << 20):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dogerm-writer")
        self._ready = threading.Condition()
        self._pending = 0
        self._budget = budget

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

    def __enter__(self) -> WriteQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True)


class _Shard:
    """One open shard file and the running digest of the bytes written to it in file order."""

    def __init__(self, path: Path, header: bytes, size: int):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, header)
        os.ftruncate(self.fd, size)
        self.hasher = fast_hasher()
        self.hasher.update(header)
        self.hashed_to: int | None = len(header)  # None once a write arrived out of file order

    def write(self, offset: int, data: memoryview) -> None:
        if self.hashed_to == offset:
            self.hasher.update(data)
            self.hashed_to += len(data)
        else:
            self.hashed_to = None
        while data:
            written = os.pwrite(self.fd, data, offset)
            data, offset = data[written:], offset + written


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
            shard = _Shard(self.folder / name, header, len(header) + sum(e.nbytes for e in entries))
            self._shards.append(shard)
            for entry in entries:
                self._places[entry.name] = (shard, len(header) + offsets[entry.name])
                self.weight_map[entry.name] = name
        self.total_size = sum(entry.nbytes for entry in layout)
        self._written: set[str] = set()
        self._futures: list[Future] = []

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Queue ``tensor`` (of the planned dtype and shape) for writing at its place."""
        expected = self._expected.get(name)
        if expected is None or tensor.dtype != expected.dtype.torch or tuple(tensor.shape) != expected.shape:
            raise ValueError(f"tensor {name} {tensor.dtype} {tuple(tensor.shape)} does not match the planned {expected}")
        if name in self._written:
            raise ValueError(f"tensor {name} written twice")
        shard, offset = self._places[name]
        tensor = tensor.detach().cpu().contiguous()
        data = memoryview(tensor.view(-1).view(torch.uint8).numpy())
        self._futures.append(self._queue.submit(expected.nbytes, lambda: shard.write(offset, data)))
        self._written.add(name)

    def close(self) -> dict[str, str]:
        """Wait for the writes, check every tensor came, sync and close; return each file's digest.

        The index (``model.safetensors.index.json``, only for several shards) has mergekit's format.
        """
        try:
            for future in self._futures:
                future.result()  # re-raises a failed write
            missing = self._expected.keys() - self._written
            if missing:
                raise RuntimeError(f"checkpoint incomplete: {len(missing)} tensors never written, e.g. {min(missing)}")
            digests = {}
            for shard in self._shards:
                os.fsync(shard.fd)
                if shard.hashed_to is not None:
                    digests[shard.path.name] = f"{FAST_DIGEST}:{shard.hasher.hexdigest()}"
        finally:
            for shard in self._shards:
                os.close(shard.fd)
        if len(self._shards) > 1:
            index = {"metadata": {"total_size": self.total_size, **self._index_metadata}, "weight_map": self.weight_map}
            text = json.dumps(index, indent=2).encode()
            (self.folder / "model.safetensors.index.json").write_bytes(text)
            hasher = fast_hasher()
            hasher.update(text)
            digests["model.safetensors.index.json"] = f"{FAST_DIGEST}:{hasher.hexdigest()}"
        return digests

