"""The merge methods dogerm offers, in one table that the hook, the command lines, the sweep and the search read.

``merge_method: dogerm`` is dogerm's own interpolation; ``dogerm_<kernel>`` runs mergekit's ``<kernel>`` on reward
models (see :mod:`dogerm_mergekit.kernels`). Import-light (no mergekit, no torch): the ``.pth`` hook and
``--help`` read it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

DOGERM = "dogerm"
PREFIX = "dogerm_"


@dataclass(frozen=True)
class KernelMethod:
    """A ``dogerm_<kernel>`` method: mergekit's kernel, whether it needs the pretrained base, whether it draws
    random masks (DARE, DELLA: each merge seeded as a single merge, so a grid runs one pass per point), and whether
    it reads ``density``."""

    name: str
    kernel: str
    needs_base: bool
    random: bool
    density: bool


KERNEL_METHODS = {method.name: method for method in (
    KernelMethod("dogerm_linear", "linear", needs_base=False, random=False, density=False),
    KernelMethod("dogerm_task_arithmetic", "task_arithmetic", needs_base=True, random=False, density=False),
    KernelMethod("dogerm_ties", "ties", needs_base=True, random=False, density=True),
    KernelMethod("dogerm_dare_linear", "dare_linear", needs_base=True, random=True, density=True),
    KernelMethod("dogerm_dare_ties", "dare_ties", needs_base=True, random=True, density=True),
    KernelMethod("dogerm_della", "della", needs_base=True, random=True, density=True),
)}


def ours() -> tuple[str, ...]:
    """Every merge method name dogerm offers."""
    return (DOGERM, *KERNEL_METHODS)


def misspelling(merge_method: object) -> str | None:
    """The dogerm method ``merge_method`` misspells (case, ``-`` for ``_``, a letter or two off), or None: for our
    own names, mergekit's, and names closer to a mergekit method or to none (imports mergekit's registry)."""
    if not isinstance(merge_method, str) or merge_method in ours():
        return None
    from mergekit.merge_methods import registry

    theirs = {method.spec.name for method in registry.registered_methods()} - set(ours())
    name = merge_method.lower().replace("-", "_")
    if name in ours():
        return name
    if merge_method in theirs or name in theirs or name.removeprefix(PREFIX) in theirs:
        return None  # mergekit's method, or one of its kernels dogerm does not offer
    close = difflib.get_close_matches(name, [*ours(), *sorted(theirs)], n=1, cutoff=0.8)
    return close[0] if close and close[0] in ours() else None


def is_dogerm(merge_method: object) -> bool:
    """Whether a configuration's ``merge_method`` is ours (``dogerm`` or any ``dogerm_*``, known or not)."""
    return isinstance(merge_method, str) and (merge_method == DOGERM or merge_method.startswith(PREFIX))


def is_kernel_method(merge_method: object) -> bool:
    """Whether ``merge_method`` names a ``dogerm_<kernel>`` method (any ``dogerm_*``: unknown ones are refused by
    name when planned)."""
    return isinstance(merge_method, str) and merge_method.startswith(PREFIX)


def parameters(merge_method: str) -> set[str]:
    """The parameter names the method reads (mergekit's spec of its kernel, or dogerm's own); empty if unknown."""
    from mergekit import merge_methods

    from dogerm_mergekit import method  # registers dogerm

    known = KERNEL_METHODS.get(merge_method)
    name = known.kernel if known else method.METHOD_NAME if merge_method == DOGERM else None
    return {p.name for p in merge_methods.get(name).spec.parameters} if name else set()
