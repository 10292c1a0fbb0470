"""Tiny reward models and domain LMs that share a base, built in seconds for the tests."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedTokenizerFast,
)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}"
)
SPECIALS = ["<unk>", "<s>", "</s>"]
FAMILIES = {
    "llama": dict(model_type="llama"),
    "mistral": dict(model_type="mistral", sliding_window=None),
    "qwen2": dict(model_type="qwen2"),
}


def vocabulary(size: int, extra: tuple[str, ...] = (), shift: int = 0) -> list[str]:
    """Token strings in id order: specials, ``w<i>`` words (rotated by ``shift``), then ``extra``."""
    words = [f"w{i}" for i in range(size - len(SPECIALS))]
    words = words[shift:] + words[:shift]
    return SPECIALS + words + list(extra)


def tokenizer(tokens: list[str], special_extra: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    if special_extra:
        tok.add_special_tokens({"additional_special_tokens": list(special_extra)})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def config(family: str = "llama", vocab_size: int = 1000, tie: bool = False, **overrides):
    cfg = AutoConfig.for_model(
        **FAMILIES[family],
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
        pad_token_id=2,
        bos_token_id=1,
        eos_token_id=2,
        num_labels=1,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def build_pair(
    root: Path,
    family: str = "llama",
    rm_tokens: list[str] | None = None,
    lm_tokens: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    tie: bool = False,
    seed: int = 0,
    rm_rows: int | None = None,
    lm_config: dict | None = None,
) -> tuple[Path, Path]:
    """Save an RM (``*ForSequenceClassification``) and a domain LM fine-tuned (here: perturbed) from one base.

    Embedding rows of shared token strings start from the same base row, so alignment errors show up.
    """
    rm_tokens = rm_tokens or vocabulary(1000)
    lm_tokens = lm_tokens or rm_tokens
    torch.manual_seed(seed)
    all_tokens = sorted(set(rm_tokens) | set(lm_tokens))
    base_rows = {t: torch.randn(64) for t in all_tokens}
    lm = AutoModelForCausalLM.from_config(config(family, len(lm_tokens), tie, **(lm_config or {})))
    rm = AutoModelForSequenceClassification.from_config(config(family, rm_rows or len(rm_tokens), tie))
    with torch.no_grad():
        for name, param in rm.model.named_parameters():
            if "embed_tokens" not in name:
                param.copy_(lm.model.get_parameter(name) + 0.01 * torch.randn_like(param))
        rm.score.weight.normal_()
        for model, tokens in ((rm, rm_tokens), (lm, lm_tokens)):
            emb = model.get_input_embeddings().weight
            for i, t in enumerate(tokens):
                emb[i] = base_rows[t] + 0.01 * torch.randn(64)
    out = []
    for name, model, tokens in (("rm", rm, rm_tokens), ("lm", lm, lm_tokens)):
        path = root / name
        model.to(dtype).save_pretrained(path)
        extra = tuple(t for t in tokens if t.startswith("[") and t.endswith("]"))
        tokenizer([t for t in tokens if t not in extra], special_extra=extra).save_pretrained(path)
        out.append(path)
    return out[0], out[1]
