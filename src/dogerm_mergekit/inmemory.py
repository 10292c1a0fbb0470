"""DogeRM merges in memory: the inputs read, aligned and differenced once, merged weights for any lambda on demand.

For evaluating a lambda sweep without writing checkpoints. The graph is the driver's (the same loading and
vocabulary alignment as ``mergekit-yaml``), executed up to each tensor's
:class:`~dogerm_mergekit.tasks.Difference`; each lambda is then the kernel's
:func:`~dogerm_mergekit.method.combine_all`, which computes every element as the sweep's
:func:`~dogerm_mergekit.method.interpolate_block` does, so a state dict here equals, bit for bit, the checkpoint
``dogerm-sweep`` writes for the same lambda. Memory: the reward model's
tensors plus one fp32 difference per domain model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from mergekit.common import dtype_from_name
from mergekit.config import MergeConfiguration
from mergekit.io.tasks import SaveTensor
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import DogeRMPlan, plan_merge
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.driver import executor_for, plan_outputs, prepare_loaders
from dogerm_mergekit.method import check_lambdas, combine_all
from dogerm_mergekit.tasks import Interpolate


class InMemoryMerger:
    """Holds each tensor's shared difference (or pass-through value); ``state_dict(lam)`` merges them."""

    def __init__(self, reward_model: str, domain_model: str | Sequence[str], options: MergeOptions | None = None,
                 tokenizer: Mapping[str, object] | None = None):
        """``domain_model``: one domain model, or several (then ``state_dict`` takes one lambda per model)."""
        options = options or MergeOptions(quiet=True)
        domains = [domain_model] if isinstance(domain_model, str) else list(domain_model)
        config = MergeConfiguration.model_validate({
            "merge_method": "dogerm",
            "base_model": reward_model,
            "models": [{"model": domain, "parameters": {"lambda": 0.0}} for domain in domains],
            **({"tokenizer": dict(tokenizer)} if tokenizer else {}),
        })
        self.plan: DogeRMPlan = plan_merge(config, options)
        prepare_loaders(self.plan, options)
        # Nothing is written: only the inputs of the interpolations (and the pass-through tensors) are executed.
        (planned,) = plan_outputs(self.plan, [(config, Path("unused"))], options, None)
        saves = [t for t in planned if isinstance(t, SaveTensor)]
        needed = {s.tensor_name: s.tensor_task.difference if isinstance(s.tensor_task, Interpolate) else s.tensor_task
                  for s in saves}
        values = dict(executor_for(list(needed.values()), options).run(quiet=options.quiet))
        self._values = {name: values[task] for name, task in needed.items()}
        self._out_dtypes = {s.tensor_name: dtype_from_name(s.dtype) for s in saves}

    def state_dict(self, lam: float | Sequence[float], allow_extrapolation: bool = False) -> dict[str, torch.Tensor]:
        """The merged model's tensors for ``lam`` (one per domain model, in order), as ``mergekit-yaml`` writes them."""
        lams = (float(lam),) if isinstance(lam, (int, float)) else tuple(map(float, lam))
        if len(lams) != len(self.plan.domain_models):
            raise DogeRMConfigError(f"give one lambda per domain model ({len(self.plan.domain_models)}); got {len(lams)}")
        check_lambdas(lams, allow_extrapolation)
        merged = {}
        for name, value in self._values.items():
            dtype = self._out_dtypes[name]
            merged[name] = combine_all(*value, lams, dtype) if isinstance(value, tuple) else value.to(dtype)
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
    (planned,) = plan_outputs(plan, [(config, Path("unused"))], options, None)
    saves = [t for t in planned if isinstance(t, SaveTensor)]
    values = dict(executor_for([s.tensor_task for s in saves], options).run(quiet=options.quiet))
    return {s.tensor_name: values[s.tensor_task].to(dtype_from_name(s.dtype)) for s in saves}
