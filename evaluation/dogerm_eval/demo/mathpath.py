"""One code path for the demo's floating-point math, so that a world is a function of its seed and recipe alone.

Training sums in an order that the math libraries choose per CPU and per thread count: MKL's gemm kernels differ
between AVX2 and AVX-512 CPUs and between Intel and AMD, and MKL's AVX-512 kernels split work by thread count;
ATen's vectorised kernels sum 8 or 16 lanes at a time. After thousands of steps the weights differ, and with them
the demo's figures. The settings below pin each library to one path (``PINNED``):

- ``MKL_CBWR=COMPATIBLE``: oneMKL's conditional numerical reproducibility, in the one branch that Intel and other
  x86-64 CPUs both honour (the AVX2 / AVX-512 branches are ignored on AMD CPUs, where MKL then picks its own);
  reproducible for a fixed thread count (oneMKL Developer Guide, "Reproducibility Conditions").
- ``MKL_DYNAMIC=FALSE``, ``OMP_DYNAMIC=FALSE``: the libraries use the thread count asked for, never fewer (ibid.).
- ``ATEN_CPU_CAPABILITY=avx2``: ATen's own kernels at AVX2 width on every x86-64 CPU that has AVX2.
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN likewise, where an operation reaches it.
- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep at barriers instead of spinning, so a stage on two threads does
  not stall (seconds a step) when another process takes a core.

Every stage's torch thread count is part of the recipe (``WorldSpec.threads`` / ``solo_threads``), never chosen by
the machine. The libraries read these variables when they load or first compute, so they must be in a process's
environment before torch does any math: the world's trainings run in spawned processes started inside
:func:`pinned_environ`, and the ``dogerm-demo`` command calls :func:`pin_process` before anything imports torch
(importing the module changes nothing).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

PINNED: dict[str, str] = {
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_WAIT_POLICY": "PASSIVE",
}
CAPABILITY = "AVX2"
"""What ``torch.backends.cpu.get_cpu_capability()`` reports on the pinned path."""


def pin_process() -> None:
    """Put ``PINNED`` into this process's environment (call before torch is imported)."""
    os.environ.update(PINNED)


@contextlib.contextmanager
def pinned_environ() -> Iterator[None]:
    """``PINNED`` in ``os.environ`` for the duration (processes spawned inside inherit it), then the old values."""
    old = {name: os.environ.get(name) for name in PINNED}
    os.environ.update(PINNED)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def in_use() -> dict[str, Any]:
    """The settings this process computes with: the pinned variables as its environment holds them, ATen's CPU
    capability and the torch version (recorded in a world's metadata)."""
    import torch

    return {"env": {name: os.environ.get(name) for name in PINNED},
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def deviation(settings: dict[str, Any]) -> str | None:
    """Why ``settings`` (from :func:`in_use`) are not the pinned path, or None when they are."""
    if settings["env"] != PINNED:
        changed = sorted(k for k, v in settings["env"].items() if v != PINNED[k])
        return f"{', '.join(changed)} not pinned (torch was initialised before dogerm-demo could set them)"
    if settings["cpu_capability"] != CAPABILITY:
        return (f"ATen computes with {settings['cpu_capability']} kernels, not {CAPABILITY} (a CPU without AVX2, "
                "or not x86-64)")
    return None
