"""What ``dogerm-eval search`` searches: a merge configuration with some of its parameters free, each in bounds.

A space is a configuration template (``dogerm`` or ``dogerm_<kernel>``, as mergekit-yaml reads it) and parameters
written ``NAME[MODEL]=LOW:HIGH`` (``--param``): ``lambda`` per domain model of a ``dogerm`` merge, a kernel's
``weight``, ``density``, ... per model, or ``NAME=LOW:HIGH`` for a top-level parameter (or the one domain model's
``lambda``). ``NAME[MODEL]@K=LOW:HIGH`` makes the parameter a depth schedule: K knots, written as mergekit's gradient
syntax (a list mergekit interpolates across the layers), each knot a parameter of its own (``lambda[MODEL]@0``, ...).

A point (``{"lambda[A]": 0.3, "lambda[B]": 0.1}``) becomes a configuration with :meth:`SearchSpace.config`; the
dogerm lambdas of one layer may not sum past 1 (``dogerm`` refuses it), so a proposal over 1 is scaled down onto
the sum 1 (:meth:`SearchSpace.point`). Everything here is checked before any model is read.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dogerm_eval.errors import BenchmarkError

_SPEC = re.compile(r"^\s*(?P<name>\w+)(?:\[(?P<model>[^\]]+)\])?(?:@(?P<knots>\d+))?\s*=\s*"
                   r"(?P<low>[-+]?[\d.eE+-]+)\s*:\s*(?P<high>[-+]?[\d.eE+-]+)\s*$")
DECIMALS = 4
"""Proposals are rounded to 4 decimals: two proposals closer than that are one point, evaluated once."""


@dataclass(frozen=True)
class Parameter:
    """One free number: its point key, the configuration key it sets (``NAME`` or ``NAME[MODEL]``), the knot it is
    (None: a plain value) of how many, and its bounds."""

    key: str
    target: str
    low: float
    high: float
    knot: int | None = None
    knots: int = 1

    @property
    def name(self) -> str:
        return self.target.partition("[")[0]


@dataclass(frozen=True)
class SearchSpace:
    """A configuration template (the user's mapping, models as the user names them) and its free parameters."""

    template: dict[str, Any]
    parameters: tuple[Parameter, ...]
    domains: tuple[str, ...]  # the domain models (``dogerm``) or merged models (kernels), as ``models:`` writes them

    @property
    def method(self) -> str:
        return str(self.template["merge_method"])

    @property
    def is_dogerm(self) -> bool:
        return self.method == "dogerm"

    @property
    def lambdas_only(self) -> bool:
        """A ``dogerm`` space of plain lambdas: each point is a :data:`~dogerm_mergekit.contract.Point` that
        ``dogerm-sweep`` can write."""
        return self.is_dogerm and all(p.name == "lambda" and p.knot is None for p in self.parameters)

    @property
    def writable(self) -> bool:
        """Whether ``dogerm-sweep`` can write its points: plain dogerm lambdas, or kernel parameters without knots."""
        return self.lambdas_only or not self.is_dogerm and not self.knotted

    @property
    def knotted(self) -> bool:
        return any(p.knot is not None for p in self.parameters)

    def zero(self) -> dict[str, float]:
        """The reward model alone as a point: every dogerm lambda 0 (empty for a kernel space, which has no such point)."""
        return {p.key: 0.0 for p in self.parameters} if self.is_dogerm else {}

    def point(self, proposal: Mapping[str, float]) -> dict[str, float]:
        """``proposal`` clipped to the bounds, rounded to :data:`DECIMALS`, and, for ``dogerm`` lambdas whose sum
        passes 1 at some knot, scaled down onto the sum 1 (then rounded down, so the sum stays <= 1)."""
        point = {p.key: round(min(max(float(proposal[p.key]), p.low), p.high), DECIMALS) for p in self.parameters}
        if self.is_dogerm:
            for group in self._lambda_groups():
                total = sum(point[p.key] for p in group) + self._fixed_lambda_sum()
                if total > 1:
                    free = 1 - self._fixed_lambda_sum()
                    scale = free / sum(point[p.key] for p in group)
                    for p in group:
                        point[p.key] = math.floor(point[p.key] * scale * 10**DECIMALS) / 10**DECIMALS
        return point

    def _lambda_groups(self) -> list[list[Parameter]]:
        """The lambdas that add up in one layer: all plain ones, or those of the same knot."""
        groups: dict[int | None, list[Parameter]] = {}
        for p in self.parameters:
            if p.name == "lambda":
                groups.setdefault(p.knot, []).append(p)
        return list(groups.values())

    def _fixed_lambda_sum(self) -> float:
        """The lambdas of domain models no parameter frees (their configuration's own values)."""
        free = {p.target for p in self.parameters}
        return sum(float((_entry(self.template, model).get("parameters") or {}).get("lambda", 0.0))
                   for model in self.domains if f"lambda[{model}]" not in free)

    def config(self, point: Mapping[str, float]) -> dict[str, Any]:
        """The configuration of ``point``: each parameter's value (knots as one list, mergekit's gradient syntax)."""
        from dogerm_mergekit.sweep import config_for_point

        values: dict[str, Any] = {}
        for p in self.parameters:
            if p.knot is None:
                values[p.target] = float(point[p.key])
            else:
                values.setdefault(p.target, [0.0] * p.knots)[p.knot] = float(point[p.key])
        return config_for_point(self.template, values)

    def sweep_point(self, point: Mapping[str, float]) -> dict[str, float]:
        """A point as ``dogerm-sweep`` takes it: a kernel's parameters as they are; ``{"lambda": x}`` for one domain
        model, else ``lambda[MODEL]`` for every domain model (those no parameter frees at their configuration's
        value)."""
        if not self.is_dogerm:
            return dict(point)
        if len(self.domains) == 1:
            return {"lambda": float(point["lambda"])}
        values = {p.target: float(point[p.key]) for p in self.parameters}
        return {f"lambda[{d}]": values.get(f"lambda[{d}]", float((_entry(self.template, d).get("parameters") or {})
                                                                  .get("lambda", 0.0))) for d in self.domains}

    def starts(self) -> list[dict[str, float]]:
        """Where a study starts, before its sampler proposes anything: each dogerm domain model alone, its lambda
        (every knot of it) at the middle of its range, the others at their lowest (a DogeRM curve's peak lies
        inside (0, 1), and a domain model that does not help belongs at 0: the faces of the simplex, which
        random starts never reach). Kernel spaces: none."""
        if not self.is_dogerm or len(self.domains) < 2:
            return []
        starts = []
        for target in dict.fromkeys(p.target for p in self.parameters):
            starts.append(self.point({p.key: (p.low + p.high) / 2 if p.target == target else p.low
                                      for p in self.parameters}))
        return starts

    def magnitude(self, point: Mapping[str, float]) -> float:
        """How far ``point`` moves from the reward model: the sum of its dogerm lambdas (0 for kernel spaces)."""
        return sum(point.get(p.key, 0.0) for p in self.parameters if p.name == "lambda") if self.is_dogerm else 0.0


def _entry(raw: Mapping[str, Any], model: str) -> dict[str, Any]:
    from mergekit.config import ModelReference

    return next(e for e in raw["models"] if str(ModelReference.model_validate(e["model"])) == model)


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BenchmarkError(f"--param {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BenchmarkError(f"--param {spec!r}: bounds must be finite numbers")
    return value


def parse_space(source: str, where: str, specs: Sequence[str]) -> SearchSpace:
    """The space of a configuration text and ``--param`` specs (none: every dogerm domain model's lambda in [0, 1]);
    every refusal is one line naming the spec and the fix."""
    from dogerm_mergekit import methods
    from dogerm_mergekit.config_file import read_config
    from dogerm_mergekit.errors import DogeRMError
    from dogerm_mergekit.kernels import split_kernel_models
    from dogerm_mergekit.sweep import KERNEL_GRID_PARAMETERS, match_model
    from dogerm_mergekit.validation import split_models

    try:
        raw, config = read_config(source, where)
        if config.merge_method == methods.DOGERM:
            domains = split_models(config)[1]
        elif methods.is_kernel_method(config.merge_method):
            domains = split_kernel_models(config)[1]
        else:
            raise BenchmarkError(f"{where}: merge_method {config.merge_method!r} is not a dogerm method; search takes "
                                 "merge_method: dogerm or dogerm_<kernel>")
        names = tuple(str(d) for d in domains)
        dogerm = config.merge_method == methods.DOGERM
        if not specs:
            if not dogerm:
                raise BenchmarkError(f"merge_method: {config.merge_method}: say what to search with --param "
                                     "NAME[MODEL]=LOW:HIGH (e.g. 'weight[MODEL]=0:1', 'density=0.1:1')")
            specs = ["lambda=0:1"] if len(names) == 1 else [f"lambda[{name}]=0:1" for name in names]
        allowed = {"lambda"} if dogerm else set(KERNEL_GRID_PARAMETERS) & methods.parameters(config.merge_method)
        parameters: list[Parameter] = []
        for spec in specs:
            match = _SPEC.match(spec)
            if not match:
                raise BenchmarkError(f"--param {spec!r}: write NAME=LOW:HIGH, NAME[MODEL]=LOW:HIGH or "
                                     "NAME[MODEL]@KNOTS=LOW:HIGH (e.g. 'lambda[MetaMath-7B]@3=0:1')")
            name, model, knots = match["name"], match["model"], int(match["knots"] or 0)
            low, high = _number(match["low"], spec), _number(match["high"], spec)
            if name not in allowed:
                raise BenchmarkError(f"--param {spec!r}: merge_method {config.merge_method} searches "
                                     f"{', '.join(sorted(allowed)) or 'no numeric parameter'}, not {name!r}")
            if not low < high:
                raise BenchmarkError(f"--param {spec!r}: the lower bound must be below the upper bound")
            if dogerm and not 0 <= low < high <= 1:
                raise BenchmarkError(f"--param {spec!r}: dogerm lambdas lie in [0, 1]; give bounds inside it")
            if name == "density" and not 0 < low < high <= 1:
                raise BenchmarkError(f"--param {spec!r}: density lies in (0, 1]; give bounds inside it")
            if match["knots"] is not None and knots < 2:
                raise BenchmarkError(f"--param {spec!r}: a depth schedule needs at least 2 knots (@2, @3, ...)")
            if model is None and dogerm:
                if len(names) != 1:
                    raise BenchmarkError(f"--param {spec!r}: {len(names)} domain models; name one as "
                                         f"lambda[MODEL] (they are {', '.join(names)})")
                target, key = f"lambda[{names[0]}]", "lambda"
            elif model is None:
                own = [str(e["model"]) for e in raw["models"] if name in (e.get("parameters") or {})]
                if own:
                    raise BenchmarkError(f"--param {spec!r}: {own[0]} sets its own {name}, which overrides the "
                                         f"top-level one: search {name}[MODEL] instead, or remove it from the model")
                target = key = name
            else:
                target = f"{name}[{match_model(model, domains, f'--param {spec}')}]"
                key = target if len(names) > 1 or not dogerm else "lambda"
            if any(p.target == target for p in parameters):
                raise BenchmarkError(f"--param: two ranges for {target}; give one")
            if knots:
                parameters += [Parameter(f"{key}@{k}", target, low, high, k, knots) for k in range(knots)]
            else:
                parameters.append(Parameter(key, target, low, high))
    except DogeRMError as exc:
        raise BenchmarkError(str(exc)) from None
    space = SearchSpace(copy.deepcopy(raw), tuple(parameters), names)
    if dogerm:
        knot_counts = {p.knots for p in parameters if p.name == "lambda"}
        if len(knot_counts) > 1:
            raise BenchmarkError("--param: give every domain model's lambda the same number of knots (or none), so "
                                 "the lambdas of each layer can be kept to a sum <= 1")
        try:
            fixed = space._fixed_lambda_sum()
        except (TypeError, ValueError):
            raise BenchmarkError(f"{where}: a domain model no --param frees has a lambda that is not one number; "
                                 "give it a number or search it with --param") from None
        if fixed >= 1:
            raise BenchmarkError(f"{where}: the domain models no --param frees already sum to lambda >= 1")
    return space


def dogerm_source(reward_model: str, domains: Sequence[str]) -> str:
    """The ``dogerm`` configuration of ``--rm`` and ``--domain`` models (each lambda 0 until a point sets it)."""
    import yaml

    return yaml.safe_dump({"merge_method": "dogerm", "base_model": reward_model,
                           "models": [{"model": d, "parameters": {"lambda": 0.0}} for d in domains]}, sort_keys=False)
