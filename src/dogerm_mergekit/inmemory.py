"""DogeRM merges in memory: both inputs read and aligned once, merged weights for any lambda on demand.

For evaluating a lambda sweep without writing checkpoints. The inputs come from mergekit's own graph (the same
loading and vocabulary alignment as ``mergekit-yaml``) and every tensor is merged by the method's kernel, so a
state dict here equals, bit for bit, the checkpoint ``dogerm-sweep`` writes for the same lambda.
"""

from __future__ import annotations

from collections.abc import Mapping

import mergekit.merge as mergekit_merge
import torch
from mergekit.common import dtype_from_name
from mergekit.config import MergeConfiguration
from mergekit.graph import Executor
from mergekit.io.tasks import SaveTensor
from mergekit.merge_methods import merge_tensors
from mergekit.options import MergeOptions
from mergekit.plan import MergePlanner
from mergekit.tokenizer import TokenizerInfo

from dogerm_mergekit.architecture import DogeRMPlan, plan_merge
from dogerm_mergekit.merge import prepared_config
from dogerm_mergekit.method import METHOD, check_lambda


class InMemoryMerger:
    """Holds the reward model's and the domain model's aligned tensors; ``state_dict(lam)`` merges them."""

    def __init__(self, reward_model: str, domain_model: str, options: MergeOptions | None = None,
                 tokenizer: Mapping[str, object] | None = None):
        options = options or MergeOptions(quiet=True)
        config = MergeConfiguration.model_validate({
            "merge_method": "dogerm",
            "base_model": reward_model,
            "models": [{"model": domain_model, "parameters": {"lambda": 0.0}}],
            **({"tokenizer": dict(tokenizer)} if tokenizer else {}),
        })
        self.plan: DogeRMPlan = plan_merge(config, options)
        prepared = prepared_config(config, self.plan)
        out_config = mergekit_merge._model_out_config(prepared, self.plan.architecture, options.trust_remote_code)
        # mergekit 0.1.5's plan_in_memory cannot build its tasks; the on-disk plan's merge tasks are the same, and
        # only their input tasks (load + vocabulary alignment) are executed here, so nothing is written.
        planned = MergePlanner(prepared, self.plan.architecture, options, out_config).plan_to_disk(out_path="unused")
        gathers = {t.tensor_name: t.tensor_task.gather_tensors for t in planned if isinstance(t, SaveTensor)}
        tokenizer_task = getattr(next(iter(gathers.values()), None), "tokenizer_task", None)
        targets = list(gathers.values()) + ([tokenizer_task] if tokenizer_task is not None else [])
        values = dict(Executor(targets=targets, math_device="cpu", storage_device="cpu").run(quiet=options.quiet))
        self.tokenizer_info: TokenizerInfo | None = values.get(tokenizer_task) if tokenizer_task else None
        rm, domain = self.plan.reward_model, self.plan.domain_model
        self._inputs = {name: (values[task][rm], values[task].get(domain)) for name, task in gathers.items()}
        self._dtype = dtype_from_name(prepared.dtype)
        self._out_dtype = dtype_from_name(prepared.out_dtype)

    def state_dict(self, lam: float) -> dict[str, torch.Tensor]:
        """The merged model's tensors for ``lam``, as ``mergekit-yaml`` would write them."""
        check_lambda(lam)
        merged = {}
        for name, (reward, domain) in self._inputs.items():
            if domain is None:  # the value head: passed through
                merged[name] = reward.to(self._out_dtype)
            else:
                merged[name] = merge_tensors([reward, domain], METHOD, base_index=0, parameters={"lambda": lam},
                                             dtype=self._dtype, out_dtype=self._out_dtype)
        return merged
