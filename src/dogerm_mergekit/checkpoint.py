"""What a checkpoint holds, read from its safetensors headers (no tensor data is loaded)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mergekit.common import ModelReference
from mergekit.io.tasks import LoaderCache
from safetensors import safe_open

from dogerm_mergekit import dtypes



@dataclass(frozen=True)
class TensorSpec:
    """A stored tensor's dtype (safetensors code, e.g. ``BF16``) and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def is_float(self) -> bool:
        return dtypes.by_code(self.dtype) is not None

    @property
    def mergeable(self) -> bool:
        entry = dtypes.by_code(self.dtype)
        return entry is not None and entry.mergeable


def tensor_specs(model: ModelReference) -> dict[str, TensorSpec]:
    """Map every tensor name of ``model`` to its spec, in checkpoint order (mergekit's loader resolves the files)."""
    index = LoaderCache().get(model).index
    specs: dict[str, TensorSpec] = {}
    if index.is_safetensors:
        for shard in index.shards:
            with safe_open(os.path.join(index.base_path, shard.filename), framework="pt") as handle:
                for name in shard.contained_keys:
                    piece = handle.get_slice(name)
                    specs[name] = TensorSpec(piece.get_dtype(), tuple(piece.get_shape()))
        return specs
    loader = LoaderCache().get(model)  # pickled checkpoints have no header: load each tensor once
    for name in index.tensor_paths:
        tensor = loader.get_tensor(name)
        specs[name] = TensorSpec(entry.code if (entry := dtypes.of_tensor(tensor.dtype)) else str(tensor.dtype),
                                 tuple(tensor.shape))
    return specs
