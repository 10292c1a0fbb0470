"""Reward-model merges with mergekit's own kernels: soups (``linear``) and task vectors against the pretrained base.

``merge_method: dogerm_<kernel>`` runs mergekit's ``<kernel>`` on the backbone of reward models (and domain models),
planned from the reward model's own checkpoint as a dogerm merge is:

- ``dogerm_linear``: a soup of N reward models (mergekit's ``linear``: ``weight`` per model, ``normalize``); every
  model must have every tensor of the first (the head too, whatever its name), so heads are averaged as well.
- ``dogerm_task_arithmetic``, ``dogerm_ties``, ``dogerm_dare_linear``, ``dogerm_dare_ties``, ``dogerm_della``:
  ``base_model`` is the pretrained base every model was fine-tuned from; mergekit's kernel merges the backbone
  with its own parameters (``weight``, ``density``, ``epsilon``, ``normalize``, ``lambda``, ``--random-seed``).
  The reward model (the first model under ``models:`` with a tensor the base lacks, other than ``lm_head``) keeps
  its head unchanged; the base's ``lm_head`` and any head of the base or of other models are never merged.

The driver leaves mergekit's ``ExecuteMergeMethodTask`` of every backbone tensor as mergekit planned it, so the
backbone is exactly what mergekit computes; only the head becomes :class:`~dogerm_mergekit.tasks.KeepTensor`.
"""

from __future__ import annotations

import logging

from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_mergekit.checkpoint import tensor_specs
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.methods import KERNEL_METHODS
from dogerm_mergekit.plan import DogeRMPlan, build_plan
from dogerm_mergekit.validation import LM_HEAD, _numbers, check_model_configs, locate_models

LOG = logging.getLogger(__name__)

def split_kernel_models(config: MergeConfiguration) -> tuple[ModelReference | None, tuple[ModelReference, ...]]:
    """(pretrained base or None, the merged models in ``models:`` order), refusing bad combinations by name."""
    method = config.merge_method
    if method not in KERNEL_METHODS:
        raise DogeRMConfigError(f"unknown merge_method {method!r}; dogerm offers dogerm, {', '.join(KERNEL_METHODS)}")
    needs_base = KERNEL_METHODS[method].needs_base
    if config.slices or config.modules:
        raise DogeRMConfigError(f"merge_method: {method} takes a `models:` list, not `slices:` or `modules:`")
    base = config.base_model
    if needs_base and base is None:
        raise DogeRMConfigError(
            f"merge_method: {method} computes task vectors against the pretrained base: set `base_model:` to the "
            "model every input was fine-tuned from (e.g. meta-llama/Llama-2-7b-hf)"
        )
    if not needs_base and base is not None:
        raise DogeRMConfigError(
            f"merge_method: {method} (a reward-model soup) has no base: drop `base_model:` (the first model's config "
            "and tokenizer are written)"
        )
    models = [m.model for m in config.models or [] if m.model != base]
    repeated = sorted({str(m) for m in models if models.count(m) > 1})
    if repeated:
        raise DogeRMConfigError(f"`models:` names {repeated[0]} twice")
    least = 1 if needs_base else 2
    if len(models) < least:
        raise DogeRMConfigError(f"merge_method: {method} needs at least {least} model(s) under `models:` besides "
                                f"base_model; got {len(models)}")
    return base, tuple(models)


def check_kernel_parameters(config: MergeConfiguration) -> None:
    """The parameters dogerm can check before reading a tensor: density in (0, 1], numbers where numbers go."""
    settings = [("", config.parameters or {})]
    settings += [(f" of {m.model}", m.parameters or {}) for m in config.models or []]
    for where, parameters in settings:
        for key in ("weight", "density", "epsilon", "lambda"):
            for value in _numbers(parameters.get(key)) if key in parameters else ():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise DogeRMConfigError(f"`{key}`{where} must be a number; got {value!r}")
                if key == "density" and not 0.0 < value <= 1.0:
                    raise DogeRMConfigError(
                        f"`density`{where} is {value}: the fraction of each task vector kept must be in (0, 1]"
                    )
        if "density" in parameters and not KERNEL_METHODS[config.merge_method].density:
            LOG.warning("`density`%s is ignored by merge_method: %s", where, config.merge_method)


def plan_kernel_merge(config: MergeConfiguration, options: MergeOptions) -> DogeRMPlan:
    """The plan of a ``dogerm_<kernel>`` merge (see the module docstring); refuses before anything is written."""
    base, models = split_kernel_models(config)
    if options.unsafe_truncate_embeddings:
        raise DogeRMConfigError("--unsafe-truncate-embeddings can write an unloadable model: drop the flag")
    check_kernel_parameters(config)
    roles = ([("pretrained base (base_model)", base)] if base is not None else []) + [("model", m) for m in models]
    locate_models(roles, options)
    specs = {m: tensor_specs(m) for m in (*models, *([base] if base is not None else []))}
    if base is None:
        rm = models[0]
    else:
        heads = {m: [n for n in specs[m] if n not in specs[base] and n != LM_HEAD] for m in models}
        rm = next((m for m in models if heads[m]), None)
        if rm is None:
            raise DogeRMConfigError(
                f"no model under `models:` has a head the base {base} lacks (a score head such as score.weight): "
                "list the reward model (*ForSequenceClassification) under `models:`"
            )
        base_heads = [n for n in specs[base] if n not in specs[rm] and n != LM_HEAD]
        if base_heads:
            LOG.warning("the base's tensors %s are not in the reward model and are dropped", ", ".join(base_heads[:3]))
    others = tuple(m for m in models if m != rm)
    rm_config = rm.config(trust_remote_code=options.trust_remote_code)
    for role, other in (*([("pretrained base", base)] if base is not None else []), *((str(m), m) for m in others)):
        check_model_configs(rm_config, other.config(trust_remote_code=options.trust_remote_code), role)
    return build_plan(config, options, rm, others, specs, kernel=KERNEL_METHODS[config.merge_method].kernel,
                      pretrained=base)
