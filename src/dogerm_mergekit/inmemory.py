"""DogeRM merges in memory: the inputs read, aligned and differenced once, merged weights for any lambda on demand.

For evaluating a lambda sweep without writing checkpoints. The merge is planned in memory as mergekit plans one
(``MergePlanner.plan_in_memory``, rewritten by the driver as a disk plan is) and executed up to each tensor's
:class:`~dogerm_mergekit.tasks.Difference`; each lambda is then the kernel's
:func:`~dogerm_mergekit.method.combine_all`, which computes every element as the sweep's
:func:`~dogerm_mergekit.method.interpolate_block` does, so a state dict here equals, bit for bit, the checkpoint
``dogerm-sweep`` writes for the same lambda. A configuration of the same models (per-tensor lambdas: filters,
gradients) is planned again, without reading anything, and each tensor takes its own lambdas. Memory: the reward
model's tensors plus one fp32 difference per domain model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mergekit.common import dtype_from_name
from mergekit.config import MergeConfiguration
from mergekit.io.tasks import ReturnTensor
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import plan_merge
from dogerm_mergekit.contract import Point, lambda_vector
from dogerm_mergekit.driver import executor_for, plan_in_memory, prepare_loaders
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.method import check_lambdas, combine_all
from dogerm_mergekit.plan import DogeRMPlan
from dogerm_mergekit.tasks import Interpolate


class InMemoryMerger:
    """Holds each tensor's shared difference (or pass-through value); ``state_dict(lam)`` merges them."""

    def __init__(self, reward_model: str, domain_model: str | Sequence[str], options: MergeOptions | None = None,
                 tokenizer: Mapping[str, object] | None = None):
        """``domain_model``: one domain model, or several (then ``state_dict`` takes one lambda per model)."""
        self._options = options or MergeOptions(quiet=True)
        domains = [domain_model] if isinstance(domain_model, str) else list(domain_model)
        self._template = MergeConfiguration.model_validate({
            "merge_method": "dogerm",
            "base_model": reward_model,
            "models": [{"model": domain, "parameters": {"lambda": 0.0}} for domain in domains],
            **({"tokenizer": dict(tokenizer)} if tokenizer else {}),
        })
        self.plan: DogeRMPlan = plan_merge(self._template, self._options)
        prepare_loaders(self.plan, self._options)
        planned = plan_in_memory(self.plan, self._template, self._options, {})
        needed = {r.weight_info.name: r.tensor_task.difference if isinstance(r.tensor_task, Interpolate)
                  else r.tensor_task for r in planned}
        values = dict(executor_for(list(needed.values()), self._options).run(quiet=self._options.quiet))
        self._values = {name: values[task] for name, task in needed.items()}
        self._out_dtypes = {r.weight_info.name: dtype_from_name(r.dtype) for r in planned}

    def state_dict(self, lam: Point | float | Sequence[float] | MergeConfiguration,
                   allow_extrapolation: bool = False) -> dict[str, torch.Tensor]:
        """The merged model's tensors, as ``mergekit-yaml`` writes them, for ``lam``: a point (``{"lambda": x}``,
        ``{"lambda[MODEL]": x, ...}``), one lambda per domain model (in order), or a dogerm configuration of the same
        models whose lambdas may vary by tensor."""
        if isinstance(lam, MergeConfiguration):
            return self._configured(lam)
        lams = lambda_vector(lam, [str(d) for d in self.plan.domain_models])
        if len(lams) != len(self.plan.domain_models):
            raise DogeRMConfigError(f"give one lambda per domain model ({len(self.plan.domain_models)}); got {len(lams)}")
        check_lambdas(lams, allow_extrapolation)
        merged = {}
        for name, value in self._values.items():
            dtype = self._out_dtypes[name]
            merged[name] = combine_all(*value, lams, dtype) if isinstance(value, tuple) else value.to(dtype)
        return merged

    def _configured(self, config: MergeConfiguration) -> dict[str, torch.Tensor]:
        models = plan_merge(config, self._options)
        if (models.reward_model, models.domain_models) != (self.plan.reward_model, self.plan.domain_models):
            raise DogeRMConfigError("the configuration merges other models than this merger holds (reward model "
                                    f"{self.plan.reward_model}, domain models {list(map(str, self.plan.domain_models))})")
        merged = {}
        for returned in plan_in_memory(self.plan, config, self._options, {}):  # lambdas checked per tensor there
            name, task, value = returned.weight_info.name, returned.tensor_task, self._values[returned.weight_info.name]
            dtype = dtype_from_name(returned.dtype)
            merged[name] = combine_all(*value, task.lams, dtype) if isinstance(task, Interpolate) else value.to(dtype)
        return merged


def merged_state_dict(config: MergeConfiguration, options: MergeOptions | None = None) -> dict[str, torch.Tensor]:
    """The tensors ``mergekit-yaml`` would write for ``config`` (any dogerm form: ``dogerm`` or ``dogerm_<kernel>``),
    computed by the same plan and graph, without writing anything.

    For ``dogerm_<kernel>`` grids there is no shared difference to keep: each call reads the inputs again (and
    seeds DARE/DELLA from ``options.random_seed`` as a single merge does).
    """
    options = options or MergeOptions(quiet=True)
    plan = plan_merge(config, options)
    prepare_loaders(plan, options)
    planned: list[ReturnTensor] = plan_in_memory(plan, config, options, {})
    values = dict(executor_for(planned, options).run(quiet=options.quiet))
    return {r.weight_info.name: values[r] for r in planned}
