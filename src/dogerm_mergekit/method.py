"""The DogeRM merge method: theta = theta_RM + lambda * (theta_domain - theta_RM).

lambda weights the domain model, 1 - lambda the reward model (Lin et al., EMNLP 2024, arXiv 2407.01470).
With several domain models, theta = theta_RM + sum_i lambda_i * (theta_i - theta_RM): each domain model has
its own lambda, and the reward model keeps 1 - sum_i lambda_i.
The reward model is the configuration's ``base_model``; tensors only it has (the value head) pass through
unchanged through mergekit's ``BASE_OR_SKIP`` policy, so the kernel only ever sees pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from mergekit.merge_methods.base import (
    BasePolicy,
    GroupMergeMethod,
    InputContract,
    MergeMethodSpec,
    OptionalTensorPolicy,
    ParameterScope,
    ParameterSpec,
    TensorGroup,
)

from dogerm_mergekit.errors import DogeRMConfigError

METHOD_NAME = "dogerm"


YAML_FIX = "or set `allow_extrapolation: true` under `parameters` to extrapolate on purpose"


def check_lambdas(lams: Sequence[float], allow_extrapolation: bool = False, where: str = "",
                  fix: str = YAML_FIX) -> None:
    """Refuse lambdas (one per domain model) outside [0, 1], or summing outside [0, 1], unless extrapolating;
    ``fix`` ends the message (how to extrapolate where the caller's user can: a YAML key, a command line)."""
    for lam in lams:
        check_lambda(lam, allow_extrapolation, fix)
    total = math.fsum(lams)
    if len(lams) > 1 and not allow_extrapolation and not 0.0 <= total <= 1.0 + 1e-12:
        raise DogeRMConfigError(
            f"the domain models' lambdas sum to {total:g}{where} (the reward model would get {1 - total:g}); "
            f"keep the sum in [0, 1] {fix}"
        )


def check_lambda(lam: float, allow_extrapolation: bool = False, fix: str = YAML_FIX) -> None:
    """Refuse a lambda outside [0, 1] unless extrapolation was asked for explicitly."""
    if not math.isfinite(lam):
        raise DogeRMConfigError(f"lambda must be a finite number; got {lam!r}")
    if not allow_extrapolation and not 0.0 <= lam <= 1.0:
        raise DogeRMConfigError(f"lambda={lam} is outside [0, 1]; give lambdas in [0, 1] {fix}")


class NonFiniteInput(ValueError):
    """An input tensor holds NaN or infinity: ``which`` is 0 for the reward model, i for the i-th domain model."""

    def __init__(self, which: int, index: int, value: float):
        super().__init__(f"input {which} holds {value} at flat index {index}")
        self.which, self.index, self.value = which, index, value


def _check_finite(delta: torch.Tensor, rm: torch.Tensor, domain: torch.Tensor, which: int, start: int) -> None:
    """Raise :class:`NonFiniteInput` when the slice ``delta = domain - rm`` is not finite (a NaN or infinity in
    either input makes it so). One reduction over the cache-resident slice; the culprit is located only then."""
    if math.isfinite(float(delta.sum())) or bool(torch.isfinite(delta).all()):  # a huge finite sum may overflow
        return
    for tensor, index in ((rm, 0), (domain, which)):
        bad = (~torch.isfinite(tensor)).nonzero()
        if len(bad):
            position = int(bad[0])
            raise NonFiniteInput(index, start + position, float(tensor[position]))
    raise NonFiniteInput(which, start, float("inf"))  # finite inputs whose difference overflows


def difference(rm: torch.Tensor, domain: torch.Tensor, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rm, domain - rm)``, the difference in fp32 (fp64 for fp64 inputs): what every lambda of one tensor shares.

    ``check``: raise :class:`NonFiniteInput` (``which`` 1) when an input holds NaN or infinity.
    """
    compute = _compute_dtype(rm, (domain,))
    delta = torch.empty(rm.shape, dtype=compute, device=rm.device)
    step = _step(rm, 1)
    for start in range(0, rm.numel(), step):
        part, rm_part, domain_part = (delta.view(-1)[start : start + step], rm.reshape(-1)[start : start + step],
                                      domain.reshape(-1)[start : start + step])
        _difference_into(part, rm_part, domain_part)
        if check:
            _check_finite(part, rm_part, domain_part, 1, start)
    return rm, delta


BLOCK = 1 << 21
"""Elements per step of the kernel's loops, all lambdas together (8 MiB of fp32): few enough Python-level
operations that the per-call overhead, and the GIL hand-offs between the sweep's merge threads, stay small
(``dogerm-sweep`` on ``benchmarks/sweep.py``'s TinyLlama checkpoints, K = 11, timed while developing: 2**17
took 26-27 s, 2**20 22-23 s, 2**21 21 s), while a step's slices still fit a server CPU's last-level cache."""


def _step(tensor: torch.Tensor, rows: int) -> int:
    """Elements per row and step: BLOCK / rows on the CPU; the whole tensor on an accelerator (one kernel each)."""
    return max(BLOCK // rows, 1) if tensor.device.type == "cpu" else max(tensor.numel(), 1)


def _compute_dtype(rm: torch.Tensor, domains: Sequence[torch.Tensor]) -> torch.dtype:
    tensors = (rm, *domains)
    if not all(t.is_floating_point() for t in tensors):
        raise TypeError(f"DogeRM merges floating-point tensors only; got {[t.dtype for t in tensors]}")
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _difference_into(out: torch.Tensor, rm: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    return out.copy_(domain).sub_(rm)


def _fill(out: torch.Tensor, rm: torch.Tensor, lam_vectors: Sequence[Sequence[float]], compute: torch.dtype,
          deltas_at: Callable[[int, int, torch.Tensor], Sequence[torch.Tensor]]) -> None:
    """``out[k] = rm + sum_i lam_vectors[k][i] * delta_i`` on the flattened tensors, step by step.

    ``deltas_at(start, stop, rm_slice)`` gives each difference's slice (``rm_slice``: the reward model's, in
    ``compute`` precision, exact). Per element: the products in ``compute`` precision added in order, then the
    reward model's value, rounded once to ``out.dtype`` (whatever the inputs' dtypes). Every operation is within
    one dtype, on cache-resident slices.
    """
    rows, flat = len(lam_vectors), rm.reshape(-1)
    lams = torch.tensor(lam_vectors, dtype=compute, device=rm.device).T.contiguous().unsqueeze(-1)  # (domains, rows, 1)
    step = _step(rm, rows)
    size = min(step, max(flat.numel(), 1))
    acc = torch.empty((rows, size), dtype=compute, device=rm.device)
    term = torch.empty_like(acc) if len(lams) > 1 else None
    base = None if rm.dtype == compute else torch.empty(size, dtype=compute, device=rm.device)
    for start in range(0, flat.numel(), step):
        stop = min(start + step, flat.numel())
        width = stop - start
        rm_part = flat[start:stop] if base is None else base[:width].copy_(flat[start:stop])
        part = acc[:, :width]
        deltas = deltas_at(start, stop, rm_part)
        torch.mul(deltas[0], lams[0], out=part)
        for delta, lam in zip(deltas[1:], lams[1:]):
            part.add_(torch.mul(delta, lam, out=term[:, :width]))
        part.add_(rm_part)
        out[:, start:stop].copy_(part)


def combine_block(rm: torch.Tensor, deltas: Sequence[torch.Tensor], lam_vectors: Sequence[Sequence[float]],
                  out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (one row of ``rm.numel()`` elements per lambda vector) with ``rm + sum_i lams[i] * deltas[i]``."""
    if any(len(lams) != len(deltas) for lams in lam_vectors):
        raise ValueError(f"{len(deltas)} differences but lambda vectors {list(lam_vectors)}")
    flat = [delta.reshape(-1) for delta in deltas]
    _fill(out, rm, lam_vectors, deltas[0].dtype, lambda start, stop, _rm: [d[start:stop] for d in flat])
    return out


def interpolate_block(rm: torch.Tensor, domains: Sequence[torch.Tensor], lam_vectors: Sequence[Sequence[float]],
                      out: torch.Tensor, check: bool = True) -> torch.Tensor:
    """:func:`combine_block` of the differences to ``domains``, formed a step at a time (never held whole).

    Bit-identical to ``combine_block(*differences(rm, domains), lam_vectors, out)``: what a sweep runs, reading
    each input once and writing every lambda's output from the same cache-resident slices. ``check``: raise
    :class:`NonFiniteInput` when an input holds NaN or infinity, found on the slices as they stream through.
    """
    if any(len(lams) != len(domains) for lams in lam_vectors):
        raise ValueError(f"{len(domains)} domain tensors but lambda vectors {list(lam_vectors)}")
    compute = _compute_dtype(rm, domains)
    flat_domains = [d.reshape(-1) for d in domains]
    scratch = [torch.empty(min(_step(rm, len(lam_vectors)), max(rm.numel(), 1)), dtype=compute, device=rm.device)
               for _ in domains]

    def deltas_at(start: int, stop: int, rm_part: torch.Tensor) -> list[torch.Tensor]:
        deltas = [_difference_into(s[: stop - start], rm_part, d[start:stop]) for s, d in zip(scratch, flat_domains)]
        if check:
            for which, (delta, domain) in enumerate(zip(deltas, flat_domains), start=1):
                _check_finite(delta, rm_part, domain[start:stop], which, start)
        return deltas

    _fill(out, rm, lam_vectors, compute, deltas_at)
    return out


def combine(rm: torch.Tensor, delta: torch.Tensor, lam: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``rm + lam * delta`` in the difference's precision, rounded once to ``dtype`` (default ``rm.dtype``).

    Every element sees the same operations as ``delta.mul(lam).add_(rm).to(dtype)``, so the result is
    bit-identical to that.
    """
    return combine_all(rm, (delta,), (lam,), dtype)


def differences(rm: torch.Tensor, domains: Sequence[torch.Tensor],
                check: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``(rm, (d_1 - rm, ..., d_n - rm))``: what every lambda vector of one tensor shares (``check``: as
    :func:`difference`, ``which`` numbering the domain models from 1)."""
    deltas = []
    for which, domain in enumerate(domains, start=1):
        try:
            deltas.append(difference(rm, domain, check)[1])
        except NonFiniteInput as error:
            raise NonFiniteInput(0 if error.which == 0 else which, error.index, error.value) from None
    return rm, tuple(deltas)


def combine_all(rm: torch.Tensor, deltas: Sequence[torch.Tensor], lams: Sequence[float],
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """``rm + sum_i lams[i] * deltas[i]`` in the differences' precision, rounded once to ``dtype`` (the output's;
    default ``rm.dtype``).

    Each product is formed in the differences' precision and added in order, then the reward model's tensor.
    """
    if len(deltas) != len(lams):
        raise ValueError(f"{len(deltas)} differences but {len(lams)} lambdas")
    out = torch.empty(rm.shape, dtype=dtype or rm.dtype, device=rm.device)
    combine_block(rm, deltas, (tuple(lams),), out.view(1, -1))
    return out


def interpolate(rm: torch.Tensor, domain: torch.Tensor, lam: float) -> torch.Tensor:
    """Return ``rm + lam * (domain - rm)`` computed in fp32 (fp64 for fp64 inputs), cast to ``rm.dtype``.

    This form keeps rows that are identical in both inputs exact, and lambda = 0 bit-identical to the RM.
    """
    return combine(*difference(rm, domain), lam)


class DogeRMMerge(GroupMergeMethod):
    """mergekit adapter around :func:`combine_all`: one RM tensor, one or more domain tensors, per-input lambda."""

    spec = MergeMethodSpec(
        name=METHOD_NAME,
        pretty_name="DogeRM",
        reference_url="https://arxiv.org/abs/2407.01470",
        parameters=(
            # `lambda` is a Python keyword, so the spec is written out instead of derived from a signature.
            ParameterSpec(
                name="lambda",
                value_type=float,
                scope=ParameterScope.NON_BASE,
                description="Weight of a domain model; the reward model gets 1 - (sum of the lambdas).",
            ),
            ParameterSpec(
                name="allow_extrapolation",
                value_type=bool,
                scope=ParameterScope.SHARED,
                default=False,
                description="Accept lambdas (or their sum) outside [0, 1].",
            ),
            ParameterSpec(
                name="allow_nonfinite",
                value_type=bool,
                scope=ParameterScope.SHARED,
                default=False,
                description="Merge NaN or infinite weights instead of refusing them.",
            ),
        ),
        contract=InputContract(base=BasePolicy.REQUIRED, min_inputs=2),
        optional_tensor_policy=OptionalTensorPolicy.BASE_OR_SKIP,
    )

    def merge_group(self, group: TensorGroup, /, **parameters: Any) -> torch.Tensor:
        domains = group.non_base
        lams = [parameters["lambda"][domain.id] for domain in domains]
        check_lambdas(lams, parameters["allow_extrapolation"], f" for {group.metadata.name}")
        deltas = differences(group.base.tensor, [domain.tensor for domain in domains], not parameters["allow_nonfinite"])
        return combine_all(*deltas, lams)


METHOD = DogeRMMerge()


def _register() -> None:
    """Put METHOD in mergekit's registry once (importing this module is what registers it)."""
    from mergekit.merge_methods import registry

    if all(method.spec.name != METHOD_NAME for method in registry.registered_methods()):
        registry.register(METHOD)


_register()
