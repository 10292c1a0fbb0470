"""What a checkpoint holds, read from its safetensors headers (no tensor data is loaded)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from mergekit.common import ModelReference
from mergekit.io.tasks import LoaderCache
from safetensors import safe_open

# safetensors dtype codes that hold floating-point numbers
FLOAT_CODES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
_TORCH_CODES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


@dataclass(frozen=True)
class TensorSpec:
    """A stored tensor's dtype (safetensors code, e.g. ``BF16``) and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_CODES


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
        specs[name] = TensorSpec(_TORCH_CODES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))
    return specs
