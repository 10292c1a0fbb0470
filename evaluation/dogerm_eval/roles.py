"""What kind of model a command was given, read from its config.json and tokenizer before any weights load.

A policy or a judge generates text: it must be a causal LM (a reward model's ``lm_head`` would be dropped and a
random one built) and its tokenizer needs a chat template unless ``--fallback-template`` names one. Reward models
are checked by :func:`dogerm_eval.models.validate_reward_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dogerm_eval.errors import ModelError
from dogerm_eval.formatting import FormatSettings, chat_template_for
from dogerm_eval.models import needs_remote_code, parse_hub_ref, remote_code_error

GENERATORS = ("ForCausalLM", "ForConditionalGeneration")
"""Class-name endings of generating models (remote-code ones included)."""


def is_generator(architecture: str) -> bool:
    """A class that generates text: named like one, or one of transformers' causal LMs (``GPT2LMHeadModel``)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {n for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for n in ((v,) if isinstance(v, str) else v)}
    return architecture.endswith(GENERATORS) or architecture in names


def split_ref(ref: str) -> tuple[str, str | None]:
    """A local folder, or a Hub id with an optional ``@revision``."""
    return (ref, None) if Path(ref).exists() else parse_hub_ref(ref)


def _read(ref: str, role: str, trust_remote_code: bool, what: str) -> Any:
    from transformers import AutoConfig, AutoTokenizer

    name, revision = split_ref(ref)
    load = AutoConfig if what == "config" else AutoTokenizer
    try:
        return load.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        if needs_remote_code(exc) and not trust_remote_code:
            raise remote_code_error(repr(ref), role) from exc
        raise ModelError(f"cannot read the {role}'s {what} ({ref}): {exc}") from exc


def check_causal_lm(ref: str, role: str, trust_remote_code: bool = False) -> Any:
    """The config of ``ref``; refused unless its ``architectures`` name a causal LM (e.g. a reward model)."""
    config = _read(ref, role, trust_remote_code, "config")
    architectures = list(config.architectures or [])
    if not any(is_generator(a) for a in architectures):
        kind = "a reward model" if any(a.endswith("ForSequenceClassification") for a in architectures) else \
            "not a causal LM"
        raise ModelError(f"the {role} {ref} is {kind} ({', '.join(architectures) or 'no architecture recorded'}); "
                         "give a chat LM (e.g. the domain model)")
    return config


def check_generator(ref: str, role: str, fallback_template: str | None, trust_remote_code: bool = False) -> None:
    """Refuse a ``role`` model (policy, judge) that is not a causal LM, or whose tokenizer has no chat template
    while no fallback template was chosen."""
    check_causal_lm(ref, role, trust_remote_code)
    chat_template_for(_read(ref, role, trust_remote_code, "tokenizer"), FormatSettings(fallback_template=fallback_template))
