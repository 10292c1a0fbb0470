"""Tiny random reward models for tests and benchmarks, built offline (no download).

The tokenizer is a byte-level BPE trained on a few sentences, wrapped like a Llama tokenizer: it adds BOS itself and
carries the Llama-2 chat template (which adds BOS too, so texts start with a double BOS as Llama-2 RMs do).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

from dogerm_eval.formatting import FALLBACK_TEMPLATES

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A reward model scores how good a response is for a prompt.",
    "Solve 12 + 30 = 42, then multiply by 2 to get 84.",
    "def add(a, b):\n    return a + b\n",
    "You are a helpful, respectful and honest assistant.",
    "Please explain why the sky is blue in simple words.",
    "[INST] <<SYS>> system <</SYS>> user [/INST] assistant",
]


def build_tiny_tokenizer(
    *, pad_token: bool = True, chat_template: bool = True, vocab_size: int = 400
) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer with ``<s>``/``</s>``/``<unk>`` (and ``<pad>``) special tokens."""
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
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>" if pad_token else None,
    )
    if chat_template:
        tokenizer.chat_template = FALLBACK_TEMPLATES["llama-2"]
    return tokenizer


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
    """Save a seeded random ``LlamaForSequenceClassification`` and its tokenizer to ``path``; return ``path``."""
    tokenizer = build_tiny_tokenizer(pad_token=pad_token, chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        num_labels=num_labels,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
