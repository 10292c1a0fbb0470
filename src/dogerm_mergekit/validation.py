"""Checks of a dogerm merge configuration that need no tensor data; each error names the field and the fix."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mergekit.common import ModelReference
from mergekit.config import ConditionalParameter, MergeConfiguration
from mergekit.options import MergeOptions
from transformers import PretrainedConfig

from dogerm_mergekit.checkpoint import TensorSpec, check_model_folder
from dogerm_mergekit.errors import CheckpointError, DogeRMConfigError, DogeRMError, OutputError
from dogerm_mergekit.method import check_lambda, check_lambdas
from dogerm_mergekit.tables import looks_like_path, parse_hub_ref

LOG = logging.getLogger(__name__)
LM_HEAD = "lm_head.weight"

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


def split_models(config: MergeConfiguration) -> tuple[ModelReference, tuple[ModelReference, ...]]:
    """Return (reward model, domain models), refusing anything but one RM as base_model plus domain models."""
    if config.slices or config.modules:
        raise DogeRMConfigError("merge_method: dogerm takes a `models:` list, not `slices:` or `modules:`")
    if config.base_model is None:
        raise DogeRMConfigError(
            "merge_method: dogerm needs `base_model:` set to the reward model (the sequence-classification checkpoint)"
        )
    domains = [m.model for m in config.models or [] if m.model != config.base_model]
    if not domains:
        raise DogeRMConfigError(
            "merge_method: dogerm merges one or more domain models into the reward model; `models:` names none "
            "besides base_model"
        )
    repeated = sorted({str(m) for m in domains if domains.count(m) > 1})
    if repeated:
        raise DogeRMConfigError(f"`models:` names {repeated[0]} twice: give each domain model once, with its lambda")
    return config.base_model, tuple(domains)


def domain_lambda_settings(config: MergeConfiguration, domain: ModelReference) -> list[Any]:
    """The lambda settings that apply to ``domain``: its own, else the global one (mergekit's precedence)."""
    own = next((m.parameters or {} for m in config.models if m.model == domain), {}).get("lambda")
    return [own] if own is not None else [s for s in [(config.parameters or {}).get("lambda")] if s is not None]


def check_config(config: MergeConfiguration, options: MergeOptions) -> None:
    """Validate the configuration itself: models, lambdas (and their sum) and options."""
    rm, domains = split_models(config)
    if options.unsafe_truncate_embeddings:
        raise DogeRMConfigError(
            "--unsafe-truncate-embeddings truncates embeddings by token id and can write an unloadable model; "
            "dogerm aligns rows by token string instead: drop the flag"
        )
    global_params = config.parameters or {}
    for flag in ("allow_extrapolation", "allow_nonfinite"):
        if not isinstance(global_params.get(flag, False), bool):
            raise DogeRMConfigError(f"`{flag}` must be true or false (a single value under `parameters:`)")
    allow = global_params.get("allow_extrapolation", False)
    plain: list[float] = []
    for domain in domains:
        settings = domain_lambda_settings(config, domain)
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
        if isinstance(settings[0], (int, float)):
            plain.append(float(settings[0]))
    if len(plain) == len(domains):
        check_lambdas(plain, allow)  # per-tensor settings are summed tensor by tensor when planned
    LOG.debug("dogerm config: reward model %s, domain models %s", rm, ", ".join(map(str, domains)))


def check_model_configs(rm_config: PretrainedConfig, domain_config: PretrainedConfig,
                        role: str = "domain model") -> None:
    """Refuse differing shapes; warn where the domain model would run under different settings."""
    for field in SHAPE_FIELDS:
        ours, theirs = getattr(rm_config, field, None), getattr(domain_config, field, None)
        if ours != theirs:
            raise DogeRMConfigError(
                f"config field {field!r} differs: reward model {ours}, {role} {theirs}. Every model merged must be a "
                "fine-tune of the same pretrained base"
            )
    for field in BEHAVIOUR_FIELDS:
        ours, theirs = getattr(rm_config, field, None), getattr(domain_config, field, None)
        if ours != theirs:
            LOG.warning(
                "config field %r differs (reward model %r, %s %r); the merged model uses the reward "
                "model's value, so large lambdas run domain weights under it",
                field,
                ours,
                role,
                theirs,
            )
    if rm_config.model_type != domain_config.model_type:
        LOG.warning(
            "model_type differs (reward model %s, domain model %s); merging by tensor name",
            rm_config.model_type,
            domain_config.model_type,
        )


def check_reference(role: str, model: ModelReference) -> None:
    """Refuse, in one line, a model value that mergekit would read otherwise than the pre-check: a folder whose name
    holds ``@`` or ``+`` (mergekit reads a Hub revision and a LoRA adapter there), a ``~`` path (mergekit and
    transformers do not expand it), and a value that is neither an existing path, nor one that looks like a path
    (``./``, ``/``, two slashes: "no such folder" follows), nor a Hub id ``org/name[@revision]``."""
    written, path = str(model), model.model.path
    if written != path and os.path.exists(written) and not os.path.exists(path):
        raise DogeRMConfigError(f"the {role} {written} is a folder, but mergekit reads '@' in a model value as a Hub "
                                "revision and '+' as a LoRA adapter: rename the folder (or link it) without them")
    if path.startswith("~"):
        raise DogeRMConfigError(f"the {role} {path}: mergekit does not expand '~' in a model value; write the full "
                                f"path ({os.path.expanduser(path)})")
    if not os.path.exists(path) and not looks_like_path(path):
        parse_hub_ref(str(model.model), DogeRMConfigError, f"the {role} ")


def locate_inputs(config: MergeConfiguration, options: MergeOptions) -> None:
    """Resolve every model (local folder, or Hub download) and check each folder's files before any tensor is read."""
    rm, domains = split_models(config)
    locate_models([("reward model (base_model)", rm), *(("domain model", d) for d in domains)], options)


def locate_models(roles: list[tuple[str, ModelReference]], options: MergeOptions) -> None:
    """Check how each (role, model) is written, then resolve it and check its folder's files; errors name the role."""
    for role, model in roles:
        check_reference(role, model)
    for role, model in roles:
        if model.lora is not None:
            continue  # mergekit merges the adapter into its own cache folder first
        reference = model.model.path
        if os.path.exists(reference) or looks_like_path(reference):
            check_model_folder(Path(reference), role)
            continue
        try:
            folder = model.local_path(cache_dir=options.transformers_cache)
        except DogeRMError:  # offline, not (fully) in the cache: the message names the download
            raise
        except Exception as error:  # huggingface_hub's errors: offline, not found, gated
            raise CheckpointError(
                f"the {role} {reference} is neither a folder here nor a Hub model that could be fetched "
                f"({error.__class__.__name__}); check the path, the id, the network or HF_TOKEN"
            ) from None
        check_model_folder(Path(folder), role)


def check_roles(rm: ModelReference, domain: ModelReference, rm_specs: dict[str, TensorSpec],
                domain_specs: dict[str, TensorSpec]) -> None:
    """The reward model is the one with a score head; say which is which when they are swapped."""
    rm_heads = [n for n in rm_specs if n not in domain_specs and n != LM_HEAD]
    if rm_heads:
        return
    domain_heads = [n for n in domain_specs if n not in rm_specs and n != LM_HEAD]
    if domain_heads:
        raise DogeRMConfigError(
            f"base_model {rm} has no score head (it is the language model) and {domain} under `models:` has one "
            f"({domain_heads[0]}): base_model must be the reward model; swap the two"
        )
    raise DogeRMConfigError(
        f"neither {rm} nor {domain} has a score head (a tensor only the reward model has, e.g. score.weight): "
        "base_model must be a reward model (*ForSequenceClassification)"
    )


def check_output(path: Path, kind: str) -> None:
    """Refuse an output that is a file, or a non-empty folder that holds no earlier ``kind`` output."""
    path = Path(path)
    marker = {"model": "config.json", "sweep": "sweep.json"}[kind]
    if path.exists() and not path.is_dir():
        raise OutputError(f"the output {path} is a file: give a folder path (nothing was written)")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise OutputError(
            f"the output {path} is a non-empty folder without a {marker}, so not an earlier {kind} output: give a "
            "new or empty folder (nothing was written)"
        )
