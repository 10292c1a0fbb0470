"""A constant-memory replacement for mergekit's shard-buffering ``TensorWriter``.

mergekit keeps a whole shard (5 GB by default) in memory before writing it; a sweep writing K checkpoints at
once would hold K shards. When every tensor's name, dtype and shape are known before the merge runs, each shard
file can be laid out up front and every tensor written to its final offset as soon as it is computed. The bytes
are the same as mergekit's: the same shard split (tensors in save order, a new shard when the next tensor would
pass ``max_shard_size``) and safetensors' own layout (tensors sorted by name, compact JSON header padded with
spaces to 8 bytes), which the tests check against ``safetensors.torch.save_file``.
"""

from __future__ import annotations

import hashlib
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
from mergekit.graph import Task
from mergekit.io.tasks import TensorWriterTask
from mergekit.io.tensor_writer import TensorWriter

DIGESTS_SUFFIX = ".sha256.json"
_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16"}


@dataclass(frozen=True)
class TensorLayout:
    """One output tensor: name, dtype name (``bfloat16``), shape (``vocabulary_axis`` sized by the tokenizer)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    vocabulary_axis: int | None = None

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.torch_dtype.itemsize


def safetensors_header(entries: Sequence[TensorLayout]) -> tuple[bytes, dict[str, int]]:
    """The header safetensors writes for these tensors (format ``pt``), and each tensor's data offset."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offsets: dict[str, int] = {}
    position = 0
    for entry in sorted(entries, key=lambda e: e.name):
        header[entry.name] = {
            "dtype": _CODES[entry.dtype],
            "shape": list(entry.shape),
            "data_offsets": [position, position + entry.nbytes],
        }
        offsets[entry.name] = position
        position += entry.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offsets


class _WriteQueue:
    """One background thread writing (and hashing) tensors in submission order, at most ``budget`` bytes pending.

    Disk writes then overlap the merging of the next tensors, and memory stays bounded however many writers share it.
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


_QUEUE = _WriteQueue()


class StreamingTensorWriter(TensorWriter):
    """Writes each tensor straight to its place in a pre-laid-out shard; finalisation is mergekit's own."""

    def __init__(self, out_path: str, layout: Sequence[TensorLayout], max_shard_size: int):
        super().__init__(out_path, max_shard_size=max_shard_size, safe_serialization=True)
        shards: list[list[TensorLayout]] = [[]]
        size = 0
        for entry in layout:
            if shards[-1] and max_shard_size > 0 and size + entry.nbytes > max_shard_size:
                shards.append([])
                size = 0
            shards[-1].append(entry)
            size += entry.nbytes
        prefix, extension = self._get_name_components()
        self._expected = {entry.name: entry for entry in layout}
        self._places: dict[str, tuple[int, int]] = {}
        self._files: list[int] = []
        headers = []
        for index, entries in enumerate(shards):
            header, offsets = safetensors_header(entries)
            headers.append(header)
            shard_name = f"{prefix}-{index + 1}.{extension}"
            fd = os.open(os.path.join(out_path, shard_name), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, header)
            os.ftruncate(fd, len(header) + sum(e.nbytes for e in entries))
            self._files.append(fd)
            for entry in entries:
                self._places[entry.name] = (fd, len(header) + offsets[entry.name])
                self.weight_map[entry.name] = shard_name
        self.shards_written = len(shards)
        self.total_size = sum(entry.nbytes for entry in layout)
        self._written: set[str] = set()
        self._futures: list[Future] = []
        # Tensors arrive in name order, which is file order: hash each shard as it is written, not after.
        self._digests = {fd: [hashlib.sha256(header), len(header)] for fd, header in zip(self._files, headers)}

    def save_tensor(self, name: str, tensor: torch.Tensor, clone: bool = False) -> None:
        expected = self._expected.get(name)
        if expected is None or tensor.dtype != expected.torch_dtype or tuple(tensor.shape) != expected.shape:
            raise ValueError(f"tensor {name} {tensor.dtype} {tuple(tensor.shape)} does not match the planned {expected}")
        fd, offset = self._places[name]
        tensor = tensor.detach().cpu().contiguous()
        self._futures.append(_QUEUE.submit(expected.nbytes, lambda: self._write(fd, offset, tensor)))
        self._written.add(name)

    def _write(self, fd: int, offset: int, tensor: torch.Tensor) -> None:
        """In the writer thread: hash (when in file order, as the schedule makes it) and write at ``offset``."""
        data = memoryview(tensor.view(-1).view(torch.uint8).numpy())
        digest = self._digests[fd]
        if digest[1] == offset:
            digest[0].update(data)
            digest[1] += len(data)
        else:
            digest[1] = -1  # out of order: hash the file afterwards
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written

    def _flush_current_shard(self) -> None:
        for future in self._futures:
            future.result()  # re-raises a failed write
        missing = self._expected.keys() - self._written
        if missing:
            raise RuntimeError(f"checkpoint incomplete: {len(missing)} tensors never written, e.g. {min(missing)}")
        for fd in self._files:
            os.fsync(fd)
            os.close(fd)

    def finalize(self) -> None:
        """mergekit's finalisation (shard names, index), then ``<out_path>.sha256.json`` with each shard's hash."""
        super().finalize()
        prefix, extension = self._get_name_components()
        count = len(self._files)
        hashes = {}
        for index, fd in enumerate(self._files):
            name = f"{prefix}.{extension}" if count == 1 else f"{prefix}-{index + 1:05d}-of-{count:05d}.{extension}"
            digest, position = self._digests[fd]
            if position >= 0:
                hashes[name] = digest.hexdigest()
        Path(self.out_path + DIGESTS_SUFFIX).write_text(json.dumps(hashes))


class StreamingWriterTask(TensorWriterTask):
    """Builds a :class:`StreamingTensorWriter`; vocabulary axes are sized once the output tokenizer is built."""

    layout: tuple[TensorLayout, ...]
    tokenizer_task: Task | None = None
    pad_to_multiple_of: int | None = None

    def arguments(self) -> dict[str, Task]:
        return {"tokenizer": self.tokenizer_task} if self.tokenizer_task is not None else {}

    def execute(self, tokenizer: Any = None, **_kwargs: Any) -> TensorWriter:
        layout = self.layout
        if tokenizer is not None:
            rows = len(tokenizer.tokenizer.get_vocab())
            if self.pad_to_multiple_of:
                rows = -(-rows // self.pad_to_multiple_of) * self.pad_to_multiple_of
            layout = tuple(
                e if e.vocabulary_axis is None
                else TensorLayout(e.name, e.dtype, (*e.shape[: e.vocabulary_axis], rows, *e.shape[e.vocabulary_axis + 1 :]))
                for e in layout
            )
        return StreamingTensorWriter(self.out_path, layout, self.max_shard_size)
