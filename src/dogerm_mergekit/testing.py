"""Tiny random Llama-family models and tokenizers for tests and benchmarks, built offline in seconds.

Two kinds, each saved as ``save_pretrained`` folders:

- merge pairs (:func:`build_pair`): a reward model and a domain LM perturbed from one base, with word-level
  tokenizers over chosen token strings (:func:`vocabulary`), so that vocabulary alignment errors show up;
- scoring models (:func:`build_tiny_rm`): a reward model with a byte-level BPE tokenizer that reads any text
  (:func:`build_tiny_tokenizer`).

Every tokenizer carries the Llama-2 chat template of :mod:`dogerm_mergekit.chat_templates` unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

from dogerm_mergekit.chat_templates import LLAMA2_CHAT_TEMPLATE

SPECIALS = ["<unk>", "<s>", "</s>"]
FAMILIES = {
    "llama": {"model_type": "llama"},
    "mistral": {"model_type": "mistral", "sliding_window": None},
    "qwen2": {"model_type": "qwen2"},
}
#: Training text of the BPE tokenizer.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A reward model scores how good a response is for a prompt.",
    "Solve 12 + 30 = 42, then multiply by 2 to get 84.",
    "def add(a, b):\n    return a + b\n",
    "You are a helpful, respectful and honest assistant.",
    "Please explain why the sky is blue in simple words.",
    "[INST] <<SYS>> system <</SYS>> user [/INST] assistant",
]


# ---------------------------------------------------------------------------------------------- merge pairs
def vocabulary(size: int, extra: tuple[str, ...] = (), shift: int = 0) -> list[str]:
    """Token strings in id order: specials, ``w<i>`` words (rotated by ``shift``), then ``extra``."""
    words = [f"w{i}" for i in range(size - len(SPECIALS))]
    words = words[shift:] + words[:shift]
    return SPECIALS + words + list(extra)


def tokenizer(tokens: list[str], special_extra: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer with ids in ``tokens`` order (pad = EOS), plus special ``special_extra``."""
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    if special_extra:
        tok.add_special_tokens({"additional_special_tokens": list(special_extra)})
    tok.chat_template = LLAMA2_CHAT_TEMPLATE
    return tok


def config(family: str = "llama", vocab_size: int = 1000, tie: bool = False, **overrides) -> PretrainedConfig:
    """A 2-layer, hidden-64 config of ``family`` (a key of :data:`FAMILIES`), 1 label; ``overrides`` set after."""
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

    They go to ``root/rm`` and ``root/lm``. Embedding rows of shared token strings start from the same base row,
    so alignment errors show up; tokens written ``[...]`` become special tokens.
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


# ---------------------------------------------------------------------------------------------- scoring models
def build_tiny_tokenizer(
    *, pad_token: bool = True, chat_template: bool = True, vocab_size: int = 400
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on :data:`CORPUS`, with ``<s>``/``</s>``/``<unk>`` (and ``<pad>``).

    Like a Llama tokenizer it adds BOS itself, and its Llama-2 chat template adds BOS too, so templated texts
    start with a double BOS, as those of Llama-2 RMs do.
    """
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS, trainer=trainer)
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>" if pad_token else None,
    )
    if chat_template:
        tok.chat_template = LLAMA2_CHAT_TEMPLATE
    return tok


def build_tiny_lm(path: Path, *, seed: int = 0, noise_from: Path | None = None, noise: float = 0.02) -> Path:
    """Save a seeded random ``LlamaForCausalLM`` (a base to train a reward model from) and its BPE tokenizer.

    With ``noise_from``: that model's weights plus Gaussian noise of std ``noise`` (a "domain model" of that base).
    """
    from transformers import LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(seed)
    if noise_from is None:
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          initializer_range=0.1, architectures=["LlamaForCausalLM"])
        model = LlamaForCausalLM(cfg).eval()
    else:
        model = LlamaForCausalLM.from_pretrained(noise_from).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.add_(noise * torch.randn_like(param))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_rm(
    path: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_labels: int = 1,
    pad_token: bool = True,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Save a seeded random ``LlamaForSequenceClassification`` and its BPE tokenizer to ``path``; return ``path``."""
    tok = build_tiny_tokenizer(pad_token=pad_token, chat_template=chat_template)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        num_labels=num_labels,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(cfg).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
