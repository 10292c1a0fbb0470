"""Checks of a dogerm merge configuration that need no tensor data; each error names the field and the fix."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from mergekit.common import ModelReference
from mergekit.config import ConditionalParameter, MergeConfiguration
from mergekit.options import MergeOptions
from transformers import PretrainedConfig

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.method import check_lambda

LOG = logging.getLogger(__name__)

# Fields that must agree for tensors to line up (errors) or for lambda = 1 to behave as the domain model does
# under the RM's config (warnings: the output config is the RM's).
SHAPE_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "head_dim",
)
BEHAVIOUR_FIELDS = (
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "rms_norm_eps",
    "layer_norm_eps",
    "max_position_embeddings",
    "sliding_window",
)


def _numbers(setting: Any) -> Iterator[Any]:
    if isinstance(setting, ConditionalParameter):
        yield from _numbers(setting.value)
    elif isinstance(setting, list):
        for item in setting:
            yield from _numbers(item)
    else:
        yield setting


def split_models(config: MergeConfiguration) -> tuple[ModelReference, ModelReference]:
    """Return (reward model, domain model), refusing anything but one RM as base_model plus one domain model."""
    if config.slices or config.modules:
        raise DogeRMConfigError("merge_method: dogerm takes a `models:` list, not `slices:` or `modules:`")
    if config.base_model is None:
        raise DogeRMConfigError(
            "merge_method: dogerm needs `base_model:` set to the reward model (the sequence-classification checkpoint)"
        )
    domain = [m.model for m in config.models or [] if m.model != config.base_model]
    if len(domain) != 1:
        raise DogeRMConfigError(
            "merge_method: dogerm merges exactly one domain model into the reward model; `models:` names "
            f"{len(domain)} besides base_model ({', '.join(str(m) for m in domain) or 'none'})"
        )
    return config.base_model, domain[0]


def check_config(config: MergeConfiguration, options: MergeOptions) -> None:
    """Validate the configuration itself: models, lambda and options."""
    rm, domain = split_models(config)
    if options.unsafe_truncate_embeddings:
        raise DogeRMConfigError(
            "--unsafe-truncate-embeddings truncates embeddings by token id and can write an unloadable model; "
            "dogerm aligns rows by token string instead: drop the flag"
        )
    global_params = config.parameters or {}
    domain_params = next(m.parameters or {} for m in config.models if m.model == domain)
    allow = global_params.get("allow_extrapolation", False)
    if not isinstance(allow, bool):
        raise DogeRMConfigError("`allow_extrapolation` must be true or false (a single value under `parameters:`)")
    settings = [s for s in (global_params.get("lambda"), domain_params.get("lambda")) if s is not None]
    if not settings:
        raise DogeRMConfigError(
            "merge_method: dogerm needs `lambda` (the domain model's weight, 0..1) under `parameters:` or under "
            f"the domain model {domain}"
        )
    for setting in settings:
        for value in _numbers(setting):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DogeRMConfigError(f"lambda must be a number; got {value!r}")
            check_lambda(float(value), allow)
    LOG.debug("dogerm config: reward model %s, domain model %s", rm, domain)


def check_model_configs(rm_config: PretrainedConfig, domain_config: PretrainedConfig) -> None:
    """Refuse differing shapes; warn where the domain model would run under different settings."""
    for field in SHAPE_FIELDS:
        ours, theirs = getattr(rm_config, field, None), getattr(domain_config, field, None)
        if ours != theirs:
            raise DogeRMConfigError(
                f"config field {field!r} differs: reward model {ours}, domain model {theirs}. DogeRM needs two "
                "fine-tunes of the same pretrained base"
            )
    for field in BEHAVIOUR_FIELDS:
        ours, theirs = getattr(rm_config, field, None), getattr(domain_config, field, None)
        if ours != theirs:
            LOG.warning(
                "config field %r differs (reward model %r, domain model %r); the merged model uses the reward "
                "model's value, so large lambdas run domain weights under it",
                field,
                ours,
                theirs,
            )
    if rm_config.model_type != domain_config.model_type:
        LOG.warning(
            "model_type differs (reward model %s, domain model %s); merging by tensor name",
            rm_config.model_type,
            domain_config.model_type,
        )
