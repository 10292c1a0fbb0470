"""What a checkpoint holds, read from its safetensors headers (no tensor data is loaded)."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from mergekit.common import ModelReference
from mergekit.io.tasks import LoaderCache
from safetensors import safe_open

from dogerm_mergekit import dtypes
from dogerm_mergekit.errors import CheckpointError


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


def check_safetensors_file(path: Path) -> None:
    """Refuse a safetensors file whose header cannot be read or whose size is not what the header says."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 0 < length <= size - 8:
                raise ValueError(f"header length {length} in a file of {size} bytes")
            header = json.loads(handle.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error}); re-download or re-save it") from None
    if size != 8 + length + end:
        raise CheckpointError(
            f"{path} is truncated or padded: {size} bytes, its header describes {8 + length + end}; re-download or "
            "re-save it"
        )


def check_model_folder(folder: Path, role: str) -> None:
    """A model folder must exist, be a folder, hold a config.json and readable, complete safetensors files."""
    if not folder.exists():
        raise CheckpointError(f"the {role} {folder} does not exist: give a model folder or a Hub id (org/name)")
    if not folder.is_dir():
        raise CheckpointError(f"the {role} {folder} is a file: give the model folder that holds it")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"the {role} {folder} has no config.json: give a transformers model folder")
    for path in sorted(folder.glob("*.safetensors")):
        if not os.access(path, os.R_OK):
            raise CheckpointError(f"{path} is not readable (permissions): let this user read it")
        check_safetensors_file(path)


def model_folder(model: ModelReference) -> Path:
    """The folder mergekit reads ``model`` from (a Hub id's snapshot in the Hugging Face cache)."""
    return Path(LoaderCache().get(model).index.base_path)


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
