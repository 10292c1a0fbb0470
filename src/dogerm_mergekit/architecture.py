"""A ``dogerm`` merge planned: the configuration and every checkpoint validated, then the plan built from the reward
model's keys (:mod:`~dogerm_mergekit.plan`); ``dogerm_<kernel>`` configurations go to :mod:`~dogerm_mergekit.kernels`.
"""

from __future__ import annotations

from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_mergekit.checkpoint import tensor_specs
from dogerm_mergekit.kernels import plan_kernel_merge
from dogerm_mergekit.methods import is_kernel_method
from dogerm_mergekit.plan import DogeRMPlan, build_plan
from dogerm_mergekit.validation import check_config, check_model_configs, check_roles, locate_inputs, split_models

__all__ = ["DogeRMPlan", "plan_merge"]


def plan_merge(config: MergeConfiguration, options: MergeOptions) -> DogeRMPlan:
    """Validate the configuration and every checkpoint, and derive the plan from the reward model's keys."""
    if is_kernel_method(config.merge_method):  # unknown dogerm_* names are refused by name there
        return plan_kernel_merge(config, options)
    check_config(config, options)
    rm, domains = split_models(config)
    locate_inputs(config, options)
    rm_config = rm.config(trust_remote_code=options.trust_remote_code)
    for domain in domains:
        role = "domain model" if len(domains) == 1 else f"domain model {domain}"
        check_model_configs(rm_config, domain.config(trust_remote_code=options.trust_remote_code), role)
    specs = {m: tensor_specs(m) for m in (rm, *domains)}
    for domain in domains:
        check_roles(rm, domain, specs[rm], specs[domain])
    return build_plan(config, options, rm, domains, specs)
