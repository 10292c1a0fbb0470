"""The DogeRM merge method: theta = theta_RM + lambda * (theta_domain - theta_RM).

lambda weights the domain model, 1 - lambda the reward model (Lin et al., EMNLP 2024, arXiv 2407.01470).
The reward model is the configuration's ``base_model``; tensors only it has (the value head) pass through
unchanged through mergekit's ``BASE_OR_SKIP`` policy, so the kernel only ever sees pairs.
"""

from __future__ import annotations

import math
import weakref
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


def check_lambda(lam: float, allow_extrapolation: bool = False) -> None:
    """Refuse a lambda outside [0, 1] unless extrapolation was asked for explicitly."""
    if not math.isfinite(lam):
        raise DogeRMConfigError(f"lambda must be a finite number; got {lam!r}")
    if not allow_extrapolation and not 0.0 <= lam <= 1.0:
        raise DogeRMConfigError(
            f"lambda={lam} is outside [0, 1]; set `allow_extrapolation: true` under `parameters` "
            "to extrapolate on purpose"
        )


# The last pair's (base, delta): a sweep merges the same two tensors for K lambdas in a row. Weak references to
# the inputs: a hit needs the very same tensor objects, and nothing keeps the inputs alive.
_last_pair: tuple[weakref.ref, weakref.ref, torch.Tensor, torch.Tensor] | None = None


def _base_and_delta(rm: torch.Tensor, domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    global _last_pair
    if _last_pair is not None and _last_pair[0]() is rm and _last_pair[1]() is domain:
        return _last_pair[2], _last_pair[3]
    compute = torch.float64 if torch.float64 in (rm.dtype, domain.dtype) else torch.float32
    base = rm.to(compute)
    delta = domain.to(compute, copy=True).sub_(base)
    _last_pair = (weakref.ref(rm), weakref.ref(domain), base, delta)
    return base, delta


def interpolate(rm: torch.Tensor, domain: torch.Tensor, lam: float) -> torch.Tensor:
    """Return ``rm + lam * (domain - rm)`` computed in fp32 (fp64 for fp64 inputs), cast to ``rm.dtype``.

    This form keeps rows that are identical in both inputs exact, and lambda = 0 bit-identical to the RM.
    """
    if not (rm.is_floating_point() and domain.is_floating_point()):
        raise TypeError(f"DogeRM merges floating-point tensors only; got {rm.dtype} and {domain.dtype}")
    base, delta = _base_and_delta(rm, domain)
    return delta.mul(lam).add_(base).to(rm.dtype)


class DogeRMMerge(GroupMergeMethod):
    """mergekit adapter around :func:`interpolate`: one RM tensor, one domain tensor, per-input lambda."""

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
                description="Weight of the domain model; the reward model gets 1 - lambda.",
            ),
            ParameterSpec(
                name="allow_extrapolation",
                value_type=bool,
                scope=ParameterScope.SHARED,
                default=False,
                description="Accept lambda outside [0, 1].",
            ),
        ),
        contract=InputContract(base=BasePolicy.REQUIRED, min_inputs=2, max_inputs=2),
        optional_tensor_policy=OptionalTensorPolicy.BASE_OR_SKIP,
    )

    def merge_group(self, group: TensorGroup, /, **parameters: Any) -> torch.Tensor:
        (domain,) = group.non_base
        lam = parameters["lambda"][domain.id]
        check_lambda(lam, parameters["allow_extrapolation"])
        return interpolate(group.base.tensor, domain.tensor, lam)


METHOD = DogeRMMerge()


def _register() -> None:
    """Put METHOD in mergekit's registry once (importing this module is what registers it)."""
    from mergekit.merge_methods import registry

    if all(method.spec.name != METHOD_NAME for method in registry.registered_methods()):
        registry.register(METHOD)


_register()
