"""The nodes dogerm adds to mergekit's task graph: the shared difference, the interpolation, the streaming writer.

A run plans one mergekit graph per output (lambda vector) and runs them as one graph. Written through the
streaming writer, each merged tensor becomes one ``SweepTensor`` node for all K outputs: it reads the inputs once
and writes every output's slice from the same cache-resident slices. Otherwise (mergekit's own writer, the
in-memory merger) it becomes ``Difference`` (the reward model's tensor and the fp32 difference to each domain
model's, lambda-free, so the K lambdas share one node) followed by one ``Interpolate`` per lambda; mergekit's
executor frees the difference after the last interpolation that needs it: no state outside the graph.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from mergekit.common import ModelReference, dtype_from_name
from mergekit.graph import Task
from mergekit.io.tasks import TensorWriterTask
from mergekit.merge_methods.base import TensorGroup
from pydantic import ConfigDict

from dogerm_mergekit import dtypes
from dogerm_mergekit.errors import CheckpointError
from dogerm_mergekit.method import NonFiniteInput, combine_all, differences, interpolate_block
from dogerm_mergekit.writer import StreamingSafetensorsWriter, TensorLayout, WriteQueue, write_rows


class MergedInputs(Task):
    """Reads one merged tensor's gathered (vocabulary-aligned) inputs: the reward model's and each domain model's."""

    tensors: Task
    reward_model: ModelReference
    domain_models: tuple[ModelReference, ...]
    name: str
    vocabulary_axis: int | None = None
    allow_nonfinite: bool = False

    def group_label(self) -> str | None:
        return self.tensors.group_label()

    def uses_accelerator(self) -> bool:
        return True  # with --cuda the executor hands the inputs over on the GPU, as to mergekit's merge tasks

    def inputs(self, tensors: dict[ModelReference, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        group = TensorGroup.from_tensors(
            [tensors[self.reward_model], *(tensors[d] for d in self.domain_models)], base_index=0, name=self.name,
            vocabulary_axis=self.vocabulary_axis,
        )
        group.validate_tensors()  # mergekit's own shape check (vocabularies must be aligned)
        # Each input as loaded (in the configuration's `dtype:` when set): the kernel computes mixed dtypes in fp32
        # (fp64 for fp64 inputs) and rounds once to the output's dtype, so nothing is rounded before it.
        rm, *domains = group.tensors
        return rm, domains

    def refusal(self, error: NonFiniteInput) -> CheckpointError:
        """The one-line error for a NaN or infinity the kernel met in an input of this tensor."""
        model = self.reward_model if error.which == 0 else self.domain_models[error.which - 1]
        role = "the reward model" if error.which == 0 else "the domain model"
        return CheckpointError(
            f"{role} {model} holds {error.value} in {self.name} (flat index {error.index}), which would spread into the "
            "merge: use an intact copy of the checkpoint, or set `allow_nonfinite: true` under `parameters` to merge "
            "it as it is (nothing was written)"
        )


class Difference(MergedInputs, Task[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]):
    """``(rm, (d_1 - rm, ..., d_n - rm))`` for one tensor: what the in-memory merger keeps for any lambda."""

    def arguments(self) -> dict[str, Task]:
        return {"tensors": self.tensors}

    def execute(self, tensors: dict[ModelReference, torch.Tensor],
                **_kwargs: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        try:
            return differences(*self.inputs(tensors), check=not self.allow_nonfinite)
        except NonFiniteInput as error:
            raise self.refusal(error) from None


PairDifference = Difference
"""The one-domain name of :class:`Difference`."""


class Interpolate(Task[torch.Tensor]):
    """``rm + sum_i lams[i] * (d_i - rm)`` of one tensor for one lambda vector, in the output dtype."""

    difference: Difference
    lams: tuple[float, ...]
    out_dtype: str | None = None

    @property
    def lam(self) -> float:
        """The lambda of a one-domain merge."""
        (lam,) = self.lams
        return lam

    def arguments(self) -> dict[str, Task]:
        return {"difference": self.difference}

    def uses_accelerator(self) -> bool:
        return True

    def group_label(self) -> str | None:
        return self.difference.group_label()

    def execute(self, difference: tuple[torch.Tensor, tuple[torch.Tensor, ...]], **_kwargs: Any) -> torch.Tensor:
        return combine_all(*difference, self.lams, dtype_from_name(self.out_dtype) if self.out_dtype else None)


class KeepTensor(Task[torch.Tensor]):
    """One model's tensor unchanged (the reward model's head), in the output dtype; NaN or infinity in it refused
    unless ``allow_nonfinite``."""

    tensors: Task
    model: ModelReference
    name: str
    out_dtype: str | None = None
    allow_nonfinite: bool = False

    def arguments(self) -> dict[str, Task]:
        return {"tensors": self.tensors}

    def group_label(self) -> str | None:
        return self.tensors.group_label()

    def execute(self, tensors: dict[ModelReference, torch.Tensor], **_kwargs: Any) -> torch.Tensor:
        tensor = tensors[self.model]
        if not self.allow_nonfinite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            index = int((~torch.isfinite(tensor)).reshape(-1).nonzero()[0])
            raise CheckpointError(
                f"the reward model {self.model} holds {float(tensor.reshape(-1)[index])} in {self.name} (flat index "
                f"{index}), which the merge would keep: use an intact copy of the checkpoint, or set "
                "`allow_nonfinite: true` under `parameters` to keep it as it is (nothing was written)"
            )
        return tensor.to(dtype_from_name(self.out_dtype)) if self.out_dtype else tensor


class _WriterAdapter:
    """What mergekit's ``SaveTensor`` calls (``save_tensor``), over a :class:`StreamingSafetensorsWriter`."""

    def __init__(self, writer: StreamingSafetensorsWriter):
        self.writer = writer

    def save_tensor(self, name: str, tensor: torch.Tensor, clone: bool = False) -> None:
        self.writer.write(name, tensor)  # the writer copies nothing it does not own: clone is moot


class StreamingWriterTask(TensorWriterTask):
    """Opens a :class:`StreamingSafetensorsWriter`; vocabulary axes are sized once the output tokenizer is built."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    layout: tuple[tuple[str, str, tuple[int, ...], int | None], ...]
    """(name, safetensors dtype code, shape, vocabulary axis or None) per tensor, in save order."""
    queue: WriteQueue
    tokenizer_task: Task | None = None
    pad_to_multiple_of: int | None = None
    index_metadata: tuple[tuple[str, str], ...] = ()

    def arguments(self) -> dict[str, Task]:
        return {"tokenizer": self.tokenizer_task} if self.tokenizer_task is not None else {}

    def execute(self, tokenizer: Any = None, **_kwargs: Any) -> _WriterAdapter:
        rows = None
        if tokenizer is not None:
            rows = len(tokenizer.tokenizer.get_vocab())
            if self.pad_to_multiple_of:
                rows = -(-rows // self.pad_to_multiple_of) * self.pad_to_multiple_of
        layout = []
        for name, code, shape, axis in self.layout:
            if axis is not None and rows is not None:
                shape = (*shape[:axis], rows, *shape[axis + 1 :])
            layout.append(TensorLayout(name, dtypes.by_code(code), tuple(shape)))
        writer = StreamingSafetensorsWriter(Path(self.out_path), layout, self.max_shard_size, self.queue,
                                            dict(self.index_metadata))
        return _WriterAdapter(writer)


MERGE_THREADS = 2
"""Threads computing a sweep's slices (torch's own intra-op threads are set to one for the run). Two measured
21 s against 23 s for one on this project's 2-CPU machine (``dogerm-sweep`` on ``benchmarks/sweep.py``'s
TinyLlama checkpoints, K = 11, timed while developing); more were not measured."""


class SweepTensor(MergedInputs, Task[None]):
    """One merged tensor for every output of a run: each output's lambda vector, written by each output's writer.

    The inputs are read once; each staging buffer holds a slice of every output, computed from the same
    cache-resident slices of the inputs (:func:`~dogerm_mergekit.method.interpolate_block`), and is written while
    the next is computed. The fp32 difference is never held whole.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    lam_vectors: tuple[tuple[float, ...], ...]
    writers: tuple[StreamingWriterTask, ...]
    queue: WriteQueue
    out_dtype: str | None = None

    def arguments(self) -> dict[str, Task]:
        return {"tensors": self.tensors, **{f"writer_{i}": writer for i, writer in enumerate(self.writers)}}

    def execute(self, tensors: dict[ModelReference, torch.Tensor], **writers: _WriterAdapter) -> None:
        rm, domains = self.inputs(tensors)
        out_dtype = dtype_from_name(self.out_dtype) if self.out_dtype else rm.dtype
        outputs = [writers[f"writer_{i}"].writer for i in range(len(self.writers))]
        flat, flat_domains = rm.reshape(-1), [d.reshape(-1) for d in domains]
        width = max(1, self.queue.staging_bytes // (len(outputs) * out_dtype.itemsize))

        def block_at(start: int) -> tuple[torch.Tensor, torch.Tensor]:
            stop = min(start + width, flat.numel())
            buffer = self.queue.staging()
            block = buffer[: len(outputs) * (stop - start) * out_dtype.itemsize].view(out_dtype).view(-1, stop - start)
            target = block if rm.device.type == "cpu" else torch.empty(block.shape, dtype=out_dtype, device=rm.device)
            try:
                interpolate_block(flat[start:stop], [d[start:stop] for d in flat_domains], self.lam_vectors, target,
                                  check=not self.allow_nonfinite)
            except NonFiniteInput as error:
                raise self.refusal(NonFiniteInput(error.which, start + error.index, error.value)) from None
            if target is not block:
                block.copy_(target)
            return buffer, block

        # Slices are computed by up to MERGE_THREADS threads and written in order (the order shards stream in).
        workers = min(os.cpu_count() or 1, MERGE_THREADS)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dogerm-merge") as pool:
            computing: collections.deque[tuple[int, Future]] = collections.deque()
            for start in range(0, flat.numel(), width):
                computing.append((start, pool.submit(block_at, start)))
                if len(computing) > workers:
                    self._write(outputs, *computing.popleft())
            while computing:
                self._write(outputs, *computing.popleft())

    def _write(self, outputs: list[StreamingSafetensorsWriter], start: int, computed: Future) -> None:
        buffer, block = computed.result()
        write_rows(outputs, self.name, start, block, self.queue)
        self.queue.recycle(buffer)


class CloseCheckpoint(Task[dict[str, str]]):
    """After every tensor of one checkpoint is saved: close its writer and return each file's digest."""

    tensor_save_tasks: tuple[Task, ...]
    writer_task: StreamingWriterTask

    def arguments(self) -> dict[str, Task]:
        return {"writer": self.writer_task, **{f"_unused_{i}": t for i, t in enumerate(self.tensor_save_tasks)}}

    def execute(self, writer: _WriterAdapter, **_kwargs: Any) -> dict[str, str]:
        return writer.writer.close()

    def main_thread_only(self) -> bool:
        return True
