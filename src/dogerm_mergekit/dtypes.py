"""The one table of tensor dtypes: torch names, safetensors codes, sizes, and which ones DogeRM can merge."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    """A stored dtype: its torch name (``bfloat16``), safetensors code (``BF16``) and bytes per element."""

    name: str
    code: str
    itemsize: int
    mergeable: bool
    """Interpolated by the kernel (float8 is stored by some checkpoints but refused at planning time)."""

    @property
    def torch(self):
        import torch

        return getattr(torch, self.name)


# In safetensors' order: a file holds its tensors by dtype in this order (larger first), then by name.
DTYPES = (
    DType("float64", "F64", 8, True),
    DType("float32", "F32", 4, True),
    DType("bfloat16", "BF16", 2, True),
    DType("float16", "F16", 2, True),
    DType("float8_e4m3fn", "F8_E4M3", 1, False),
    DType("float8_e5m2", "F8_E5M2", 1, False),
)
RUN_DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes a network is run in (scoring, generation) besides ``auto``."""
FLOAT_CODES = frozenset(d.code for d in DTYPES)
_BY_CODE = {d.code: d for d in DTYPES}
FILE_ORDER = {d.code: rank for rank, d in enumerate(DTYPES)}
_BY_NAME = {d.name: d for d in DTYPES}


def by_code(code: str) -> DType | None:
    """The dtype of a safetensors code, or None for integer and boolean codes."""
    return _BY_CODE.get(code)


def by_name(name: str) -> DType:
    """The dtype of a torch name (``bfloat16``); a ValueError lists the names known."""
    try:
        return _BY_NAME[name.removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(_BY_NAME)}") from None


def of_tensor(dtype) -> DType | None:
    """The entry of a ``torch.dtype``, or None if it is not a floating-point dtype in the table."""
    return _BY_NAME.get(str(dtype).removeprefix("torch."))
