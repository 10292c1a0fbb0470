"""The merge plan: what a merge will do, derived from the reward model's own checkpoint (never from mergekit's
hash-ordered guess), and the builder both planners use (:mod:`~dogerm_mergekit.architecture` for dogerm,
:mod:`~dogerm_mergekit.kernels` for ``dogerm_<kernel>``).

Every RM tensor is planned: tensors every other input also has are merged, RM-only tensors (the value head,
whatever its name) are optional and pass through unchanged, and tensors only the other inputs have (``lm_head``)
are never planned, so they are dropped.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

from mergekit.architecture import ModelArchitecture, ModuleArchitecture, ModuleDefinition, WeightInfo
from mergekit.architecture.auto import get_transformers_info
from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions
from transformers import PretrainedConfig

from dogerm_mergekit import dtypes
from dogerm_mergekit.checkpoint import TensorSpec
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.vocabulary import VocabularyPlan, plan_vocabulary

LOG = logging.getLogger(__name__)
LAYER_INDEX = re.compile(r"\.(\d+)\.")
ROTARY_BUFFER = "rotary_emb.inv_freq"
"""A buffer older transformers versions saved in Llama-family checkpoints; today's compute it from the config."""


class CheckpointArchitecture(ModuleArchitecture):
    """A mergekit module architecture that lists exactly the reward model's tensors."""

    def __init__(self, pre: list[WeightInfo], layers: dict[int, list[WeightInfo]], post: list[WeightInfo]):
        self._pre, self._layers, self._post = pre, layers, post

    def pre_weights(self, config: PretrainedConfig) -> list[WeightInfo]:
        return list(self._pre)

    def post_weights(self, config: PretrainedConfig) -> list[WeightInfo]:
        return list(self._post)

    def layer_weights(self, index: int, config: PretrainedConfig) -> list[WeightInfo]:
        return list(self._layers.get(index, []))


@dataclass(frozen=True)
class DogeRMPlan:
    """What a dogerm merge will do, decided before anything is written (domain models in `models:` order)."""

    reward_model: ModelReference
    domain_models: tuple[ModelReference, ...]
    merged: tuple[str, ...]
    reward_only: tuple[str, ...]
    domain_only: tuple[str, ...]
    rm_dtype: str
    shapes: dict[str, tuple[int, ...]]
    vocabulary_axes: dict[str, int]
    vocabulary: VocabularyPlan
    architecture: ModelArchitecture = field(repr=False)
    kernel: str | None = None
    """None: dogerm's own interpolation; else the mergekit method whose kernel merges (see kernels.py)."""
    pretrained: ModelReference | None = None
    """The pretrained base of a task-vector merge (mergekit's base_model there)."""

    @property
    def domain_model(self) -> ModelReference:
        """The domain model of a one-domain merge (the first of several otherwise)."""
        return self.domain_models[0]


def _vocabulary_axes(model: ModelReference, options: MergeOptions, names: list[str]) -> dict[str, int]:
    axes = get_transformers_info(model, options)[2]
    if axes is None:  # transformers cannot build the class: fall back on the conventional name
        axes = {name: 0 for name in names if name.endswith("embed_tokens.weight")}
    return {name: axis for name, axis in axes.items() if name in names}


def _check_tensors(rm: dict[str, TensorSpec], domain: dict[str, TensorSpec], axes: dict[str, int]) -> None:
    not_float = [n for n, s in {**rm, **domain}.items() if not s.is_float]
    if not_float:
        raise DogeRMConfigError(f"non-floating-point tensors cannot be interpolated: {', '.join(not_float[:5])}")
    float8 = [f"{n} ({s.dtype})" for n, s in {**rm, **domain}.items() if not s.mergeable]
    if float8:
        raise DogeRMConfigError(
            f"float8 tensors are not merged: {', '.join(float8[:3])}; dequantize the checkpoint to bfloat16 first"
        )
    reward_layer_only = [n for n in rm if n not in domain and LAYER_INDEX.search(n)]
    buffers = [n for n in reward_layer_only if n.endswith(ROTARY_BUFFER)]
    if buffers:
        raise DogeRMConfigError(
            f"the reward model's checkpoint holds {buffers[0]!r} (and {len(buffers) - 1} more {ROTARY_BUFFER} "
            "buffers), which transformers computes from the config and no longer saves; the domain model has none. "
            "Re-save the reward model without them: AutoModelForSequenceClassification.from_pretrained(RM)"
            ".save_pretrained(NEW_FOLDER) with a current transformers, then merge NEW_FOLDER"
        )
    if reward_layer_only:
        raise DogeRMConfigError(
            f"layer tensor {reward_layer_only[0]!r} (and {len(reward_layer_only) - 1} more) is in the reward model "
            "only, so lambda would be silently ignored for it; both checkpoints must name their backbone tensors "
            "alike (convert the one with a different prefix first)"
        )
    for name in rm.keys() & domain.keys():
        ours, theirs = rm[name].shape, domain[name].shape
        axis = axes.get(name)
        if axis is not None:
            ours, theirs = ours[:axis] + ours[axis + 1 :], theirs[:axis] + theirs[axis + 1 :]
        if ours != theirs:
            raise DogeRMConfigError(
                f"tensor {name!r} has shape {rm[name].shape} in the reward model and {domain[name].shape} in the "
                "domain model"
            )


def build_plan(
    config: MergeConfiguration,
    options: MergeOptions,
    rm: ModelReference,
    others: tuple[ModelReference, ...],
    specs: dict[ModelReference, dict[str, TensorSpec]],
    kernel: str | None = None,
    pretrained: ModelReference | None = None,
) -> DogeRMPlan:
    """The plan over the reward model's tensors, for dogerm (``kernel`` None) or a mergekit kernel.

    Merged: the RM's tensors every input has. Kept from the RM: the others (its head). A backbone tensor some
    inputs lack is refused, as its weight would be silently ignored: for dogerm, one some domain models lack;
    for a soup (no ``pretrained``), any tensor another RM lacks; against a ``pretrained`` base, any tensor of the
    base another model lacks.
    """
    rm_config = rm.config(trust_remote_code=options.trust_remote_code)
    rm_specs = specs[rm]
    inputs = (*others, *([pretrained] if pretrained is not None else []))
    axes = _vocabulary_axes(rm, options, list(rm_specs))
    for model in inputs:
        _check_tensors(rm_specs, specs[model], axes)
    for name in rm_specs:
        having = [m for m in inputs if name in specs[m]]
        if kernel is None:  # dogerm: every domain model or none (the head)
            needed = list(others) if having else []
        elif pretrained is None:  # a soup: every tensor, the head included
            needed = list(others)
        else:  # task vectors: every tensor of the base; the reward model's head is kept
            needed = list(others) if name in specs[pretrained] else []
        missing = [m for m in needed if name not in specs[m]]
        if missing:
            present = "the reward model" + (f" and {having[0]}" if having else "")
            raise DogeRMConfigError(
                f"tensor {name!r} is in {present} but not in {missing[0]}, so its weight would be silently ignored: "
                "every merged model must have the same backbone tensors"
                + (" (in a soup, the head too, under the same name)" if kernel is not None and pretrained is None else "")
            )
    vocabulary = plan_vocabulary(config, rm, inputs, {n: rm_specs[n].shape[a] for n, a in axes.items()},
                                 [{n: specs[m][n].shape[a] for n, a in axes.items() if n in specs[m]} for m in inputs])
    if kernel is not None and vocabulary.tokenizer is not None and vocabulary.tokenizer.source == "base":
        # dogerm's "base" is the reward model, whose vocabulary (and tokenizer) the merged model keeps
        vocabulary = VocabularyPlan(vocabulary.relation, vocabulary.tokenizer.model_copy(update={"source": rm}))
    everywhere = {name for name in rm_specs if all(name in specs[m] for m in inputs)}

    num_layers = rm_config.num_hidden_layers
    pre: list[WeightInfo] = []
    post: list[WeightInfo] = []
    layers: dict[int, list[WeightInfo]] = {}
    for name in rm_specs:
        weight = WeightInfo(name=name, vocabulary_axis=axes.get(name), optional=name not in everywhere)
        match = LAYER_INDEX.search(name)
        if match and int(match.group(1)) >= num_layers:
            raise DogeRMConfigError(f"tensor {name!r} belongs to a layer beyond num_hidden_layers={num_layers}")
        if match:
            layers.setdefault(int(match.group(1)), []).append(weight)
        else:
            (pre if name in axes else post).append(weight)
    architecture = ModelArchitecture(
        modules={"default": ModuleDefinition(architecture=CheckpointArchitecture(pre, layers, post))},
        architectures=list(rm_config.architectures or []),
        model_type=rm_config.model_type,
    )
    plan = DogeRMPlan(
        reward_model=rm,
        domain_models=others,
        merged=tuple(n for n in rm_specs if n in everywhere),
        reward_only=tuple(n for n in rm_specs if n not in everywhere),
        domain_only=tuple(dict.fromkeys(n for m in inputs for n in specs[m] if n not in rm_specs)),
        rm_dtype=_dominant_dtype(rm_specs),
        shapes={n: s.shape for n, s in rm_specs.items()},
        vocabulary_axes=axes,
        vocabulary=vocabulary,
        architecture=architecture,
        kernel=kernel,
        pretrained=pretrained,
    )
    LOG.info(
        "%s plan: %d merged, %d kept from the reward model (%s), %d dropped from the other models (%s)",
        kernel or "dogerm", len(plan.merged), len(plan.reward_only), ", ".join(plan.reward_only),
        len(plan.domain_only), ", ".join(plan.domain_only),
    )
    return plan


def _dominant_dtype(specs: dict[str, TensorSpec]) -> str:
    counts: dict[str, int] = {}
    for spec in specs.values():
        counts[spec.dtype] = counts.get(spec.dtype, 0) + math.prod(spec.shape)
    return dtypes.by_code(max(counts, key=counts.__getitem__)).name
