"""Training the miniature world's models: the base's pretraining, the domain SFTs, the reward model (Bradley-Terry),
the Best-of-N policy's candidates, and the verdict accuracy that checks each model."""

from __future__ import annotations

import contextlib
import multiprocessing
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)

from dogerm_eval.demo import corpus
from dogerm_eval.demo.data import DOMAIN_PAD_TOKEN, chat
from dogerm_eval.demo.spec import WorldBuildError, WorldSpec


@contextlib.contextmanager
def torch_settings(threads: int) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count, restored afterwards."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def pad_batch(ids: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return input_ids, mask


def _train(
    model: torch.nn.Module,
    n_items: int,
    loss_of: Callable[[list[int]], torch.Tensor],
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    desc: str,
    bar: bool | None = None,
) -> list[float]:
    """AdamW with linear warm-up and decay over random mini-batches of item indices; returns the losses.
    ``bar``: show a progress bar (default: in the builder's own process only, as workers side by side would garble
    each other's)."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    losses = []
    if bar is None:
        bar = multiprocessing.parent_process() is None
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not bar):
        idx = torch.randint(n_items, (batch_size,), generator=generator).tolist()
        loss = loss_of(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _lm_loss(model: LlamaForCausalLM, seqs: list[list[int]], starts: list[int], pad_id: int) -> torch.Tensor:
    """Next-token loss on every token from ``starts[i]`` on (earlier tokens are context only)."""
    input_ids, mask = pad_batch(seqs, pad_id)
    labels = input_ids.clone()
    labels[mask == 0] = -100
    for i, s in enumerate(starts):
        labels[i, :s] = -100
    return model(input_ids=input_ids, attention_mask=mask, labels=labels).loss


def pretrain_base(texts: list[str], tokenizer: PreTrainedTokenizerFast, spec: WorldSpec, seed: int) -> LlamaForCausalLM:
    """A fresh tiny Llama pretrained on ``texts``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=spec.tie_embeddings,
    )
    model = LlamaForCausalLM(config)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    gen = torch.Generator().manual_seed(seed)
    _train(
        model,
        len(ids),
        lambda idx: _lm_loss(model, [ids[i] for i in idx], [0] * len(idx), tokenizer.pad_token_id),
        spec.pretrain_steps,
        spec.batch_size,
        spec.pretrain_lr,
        gen,
        "pretrain base",
        bar=True,  # it trains alone, in a worker process too
    )
    return model


def finetune_domain(
    base_dir: Path, examples: list[tuple[str, str]], tokenizer: PreTrainedTokenizerFast, spec: WorldSpec, seed: int
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Base + ``[PAD]`` token + SFT on the response tokens of chat-formatted arithmetic examples."""
    torch.manual_seed(seed + 1)
    tok = PreTrainedTokenizerFast.from_pretrained(base_dir)
    tok.add_special_tokens({"pad_token": DOMAIN_PAD_TOKEN})
    if tok.pad_token_id != len(tokenizer):
        raise WorldBuildError(f"[PAD] got id {tok.pad_token_id}, expected {len(tokenizer)}")
    model = LlamaForCausalLM.from_pretrained(base_dir)
    model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    seqs, starts = [], []
    for context, text in examples:
        starts.append(len(tok(context)["input_ids"]))
        seqs.append(tok(text)["input_ids"])
    gen = torch.Generator().manual_seed(seed + 1)
    _train(
        model,
        len(seqs),
        lambda idx: _lm_loss(model, [seqs[i] for i in idx], [starts[i] for i in idx], tok.pad_token_id),
        spec.sft_steps,
        spec.batch_size,
        spec.sft_lr,
        gen,
        "SFT domain",
    )
    return model, tok


def train_rm(
    base_dir: Path, pairs: list[tuple[str, str, str]], tokenizer: PreTrainedTokenizerFast, spec: WorldSpec, seed: int
) -> LlamaForSequenceClassification:
    """Base + ``score`` head, fully fine-tuned with the Bradley-Terry loss ``-logsigmoid(r_chosen - r_rejected)``."""
    torch.manual_seed(seed + 2)
    base = LlamaForCausalLM.from_pretrained(base_dir)
    config = LlamaConfig.from_pretrained(base_dir, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config)  # fresh `score` head; backbone copied from the base
    model.model.load_state_dict(base.model.state_dict())
    chosen = [tokenizer(chat(tokenizer, p, c))["input_ids"] for p, c, _ in pairs]
    rejected = [tokenizer(chat(tokenizer, p, r))["input_ids"] for p, _, r in pairs]

    def loss_of(idx: list[int]) -> torch.Tensor:
        input_ids, mask = pad_batch([chosen[i] for i in idx] + [rejected[i] for i in idx], tokenizer.pad_token_id)
        scores = model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1)
        return -F.logsigmoid(scores[: len(idx)] - scores[len(idx) :]).mean()

    gen = torch.Generator().manual_seed(seed + 2)
    if spec.rm_head_steps:
        model.model.requires_grad_(False)
        _train(model, len(pairs), loss_of, spec.rm_head_steps, spec.batch_size, spec.rm_head_lr, gen, "train RM head")
        model.model.requires_grad_(True)
    _train(model, len(pairs), loss_of, spec.rm_steps, spec.batch_size, spec.rm_lr, gen, "train RM")
    return model


@torch.no_grad()
def sample_candidates(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str], spec: WorldSpec, seed: int
) -> list[list[str]]:
    """``spec.candidates_per_problem`` sampled responses per prompt (temperature ``spec.temperature``).

    A response ends at ``</s>`` or at a verdict word: the domain SFT also judges answers ("... . true"), and a
    verdict after the answer is the model switching to judging, so it is cut off like a stop word.
    """
    torch.manual_seed(seed + 3)
    stop = [tokenizer.eos_token_id, *tokenizer.convert_tokens_to_ids([corpus.TRUE, corpus.FALSE])]
    verdict = re.compile(rf" ?\b({corpus.TRUE}|{corpus.FALSE})$")
    out = []
    in_worker = multiprocessing.parent_process() is not None
    for prompt in tqdm(prompts, desc="sample candidates", leave=False, disable=in_worker):
        input_ids = tokenizer(chat(tokenizer, prompt), return_tensors="pt")["input_ids"]
        generated = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=spec.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=spec.max_new_tokens,
            num_return_sequences=spec.candidates_per_problem,
            eos_token_id=stop,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(generated[:, input_ids.shape[1] :], skip_special_tokens=True)
        out.append([verdict.sub("", t.strip()) for t in texts])
    return out


@torch.no_grad()
def verdict_accuracy(lm: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, rows: Sequence[dict[str, Any]]) -> float:
    """Share of pair ``rows`` where ``lm`` judges the chosen answer more ``true`` (vs ``false``) than the rejected.

    The judged text is the chat text without its closing ``</s>``, as in the judged answers of the corpus; the
    verdict is read at its final ``.``, the position the RM's ``score`` head reads.
    """
    sides = ("chosen", "rejected")
    texts = [chat(tokenizer, r["prompt"], r[side]).removesuffix(" </s>") for side in sides for r in rows]
    ids, mask = pad_batch([tokenizer(t)["input_ids"] for t in texts], tokenizer.pad_token_id)
    logits = lm(input_ids=ids, attention_mask=mask).logits[torch.arange(len(texts)), mask.sum(1) - 1].float()
    true, false = tokenizer.convert_tokens_to_ids([corpus.TRUE, corpus.FALSE])
    margin = logits[:, true] - logits[:, false]
    return float((margin[: len(rows)] > margin[len(rows) :]).float().mean())


# ------------------------------------------------------------------------------------------------- build


