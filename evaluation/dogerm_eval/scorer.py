"""One batched scorer for every benchmark: (prompt, response) pairs in, one float per pair out.

Fast path: format and tokenize every text once, score each distinct text once, sort by length and batch by a token
budget (so padding is minimal), then restore the input order. ``compat="rewardbench"`` instead reproduces the
batching of RewardBench's ``scripts/run_rm.py`` / ``run_v2.py`` (rewardbench 0.1.4): consecutive batches of 64 in the
given order, padded on the tokenizer's padding side, the first of a double BOS masked in the attention mask (its
``RewardBenchPipeline``). RewardBench scores chosen and rejected texts in separate passes: call ``score`` once per
side to get the same batches.

Fast mode gives every distinct formatted text ONE score per model (and truncation side) for the scorer's lifetime: a
text scored before (in an earlier call, pass, chunk or benchmark, or loaded from a checkpoint through ``remember``)
is not scored again, so an identical chosen and rejected text tie exactly (and count as wrong). Compat mode scores
every text where it appears, as rewardbench does, so its float-noise near-ties are reproduced too.

Under ``accelerate launch`` (or any torch.distributed launch) the batches are split across processes and the scores
gathered, so every process returns the full array; batches are formed identically whatever the process count, so
the scores do not depend on it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from dogerm_eval import __version__, truncation
from dogerm_eval.errors import BenchmarkError, ModelError
from dogerm_eval.formatting import (
    FormatSettings,
    chat_template_for,
    format_conversation,
)
from dogerm_eval.models import ResolvedModel, needs_remote_code, remote_code_error, resolve_model
from dogerm_eval.results import REWARDBENCH_BATCH_SIZE
from dogerm_mergekit import dtypes
from dogerm_mergekit.dtypes import RUN_DTYPES as SCORING_DTYPES

__all__ = ["REWARDBENCH_BATCH_SIZE", "RewardScorer", "plan_token_batches", "resolve_dtype"]
#: Padded tokens per batch when none is given: small batches stay in CPU caches; GPUs want large ones.
CPU_TOKEN_BUDGET = 4096
ACCELERATOR_TOKEN_BUDGET = 65536


def process_state(device: str | None = None) -> PartialState:
    """This process's place in a launch. ``cpu=True`` without CUDA (or for ``device="cpu"``), so that a torchrun/
    accelerate launch on a CPU machine joins a gloo group instead of staying single-process. Every caller must ask
    through here: the first ``PartialState`` of a process decides for all later ones."""
    return PartialState(cpu=device == "cpu" or not torch.cuda.is_available())


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map ``"auto"`` (bf16, else fp16, on CUDA; fp32 elsewhere) or a dtype name to a torch dtype."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in SCORING_DTYPES:
        raise BenchmarkError(f"unknown dtype {dtype!r}; choose 'auto' or one of {sorted(SCORING_DTYPES)}")
    return dtypes.by_name(dtype).torch


def plan_token_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group indices, longest first, so that each batch's ``size * longest`` stays within ``token_budget``.

    A text longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def collate(
    sequences: Sequence[list[int]], pad_id: int, padding_side: str, mask_bos_id: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists into ``(input_ids, attention_mask)``.

    With ``mask_bos_id``, a sequence whose first two tokens are both that id gets its first one masked, as
    RewardBench's pipeline does for a double BOS.
    """
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        start = width - len(ids) if padding_side == "left" else 0
        input_ids[row, start : start + len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, start : start + len(ids)] = 1
        if mask_bos_id is not None and len(ids) > 1 and ids[0] == ids[1] == mask_bos_id:
            attention_mask[row, start] = 0
    return input_ids, attention_mask


class RewardScorer:
    """Scores (prompt, response) pairs with a one-label sequence-classification reward model.

    Args:
        model: a resolved model, or a reference for ``resolve_model`` (local folder or ``org/name@revision``).
        format: formatting and truncation settings (defaults: tokenizer template, 2048 tokens, right truncation).
        dtype: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device: torch device; default: this process's accelerate device.
        token_budget: padded tokens per batch in the fast path; default 4096 on CPU, 65536 on accelerators.
        compat: ``"fast"``, or ``"rewardbench"`` for RewardBench's batching (see the module docstring).
        trust_remote_code: let transformers run the code a model repository ships (``--trust-remote-code``).

    Model, tokenizer and template problems raise ModelError here, before anything is scored.
    """

    def __init__(
        self,
        model: ResolvedModel | str,
        format: FormatSettings | None = None,
        dtype: str = "auto",
        device: str | None = None,
        token_budget: int | None = None,
        compat: Literal["fast", "rewardbench"] = "fast",
        trust_remote_code: bool = False,
    ) -> None:
        if compat not in ("fast", "rewardbench"):
            raise BenchmarkError(f"unknown compat mode {compat!r}; choose 'fast' or 'rewardbench'")
        if token_budget is not None and token_budget < 1:
            raise BenchmarkError(f"token budget must be positive, got {token_budget}")
        self.trust_remote_code = trust_remote_code
        self.model = model if isinstance(model, ResolvedModel) else resolve_model(model, trust_remote_code)
        self.format = format or FormatSettings()
        self.compat = compat
        # cpu=True lets a torchrun/accelerate launch without CUDA use gloo (accelerate otherwise stays single-process).
        self.state = process_state(device)
        self.device = torch.device(device) if device else self.state.device
        self.dtype = resolve_dtype(dtype, self.device)
        self.token_budget = token_budget or (
            CPU_TOKEN_BUDGET if self.device.type == "cpu" else ACCELERATOR_TOKEN_BUDGET
        )
        self.tokenizer = self._load_tokenizer()
        self._memo: dict[tuple[Any, str], dict[str, float]] = {}
        self._formatted: dict[tuple[Any, ...], str] = {}
        self.template_name, _ = chat_template_for(self.tokenizer, self.format)
        self.pad_from_eos = self.tokenizer.pad_token_id is None
        if self.pad_from_eos:
            if self.tokenizer.eos_token is None:
                raise ModelError(f"the tokenizer of {self.model.ref!r} has neither a pad nor an EOS token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.network = self._load_network()
        #: ``--max-length`` capped by the model's own window (:mod:`dogerm_eval.truncation`).
        self.max_length = truncation.cap(self.format.max_length, self.model.ref, self.network.config, self.tokenizer)
        self._lengths: dict[str, int] = {}
        mask_double_bos = self.format.double_bos == "mask" or compat == "rewardbench"
        self._mask_bos_id = self.tokenizer.bos_token_id if mask_double_bos else None

    def _load_tokenizer(self) -> PreTrainedTokenizerBase:
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model.path, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as exc:
            if needs_remote_code(exc) and not self.trust_remote_code:
                raise remote_code_error(self.model.ref, "tokenizer") from exc
            raise ModelError(f"cannot load the tokenizer of {self.model.ref!r}: {exc}") from exc
        #: The side the tokenizer was saved with (``tokenizer_config.json``; transformers' default: right).
        self.saved_truncation_side = tokenizer.truncation_side
        if self.format.truncation_side != "tokenizer":
            tokenizer.truncation_side = self.format.truncation_side
        return tokenizer

    def set_truncation_side(self, side: str) -> None:
        """Truncate on ``side`` ("left", "right", or "tokenizer": the side the tokenizer was saved with) from now on.

        The benchmarks of one model may differ (``--compat rewardbench``: run_rm.py cuts on the left, run_v2.py keeps
        the tokenizer's side); texts scored on another side keep their own memo.
        """
        if side not in ("left", "right", "tokenizer"):
            raise BenchmarkError(f"unknown truncation side {side!r}; choose 'left', 'right' or 'tokenizer'")
        self.format = self.format.model_copy(update={"truncation_side": side})
        self.tokenizer.truncation_side = self.saved_truncation_side if side == "tokenizer" else side

    def _load_network(self) -> torch.nn.Module:
        try:
            network = AutoModelForSequenceClassification.from_pretrained(
                self.model.path, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as exc:
            if needs_remote_code(exc) and not self.trust_remote_code:
                raise remote_code_error(self.model.ref, "architecture") from exc
            raise ModelError(f"cannot load the reward model {self.model.ref!r}: {exc}") from exc
        # RewardBench's rule: no pad token -> pad = EOS on tokenizer and model; else fill a missing config value.
        if self.pad_from_eos or network.config.pad_token_id is None:
            network.config.pad_token_id = self.tokenizer.pad_token_id
        return network.to(self.device).eval()

    def format_texts(self, conversations: Sequence[tuple[str, str]]) -> list[str]:
        """Render each (prompt, response) pair with the chat template and format settings.

        Each distinct pair is rendered once per scorer and rendering settings (template, system prompt): a run renders
        its texts to plan its chunks and again to score them, and a pair repeats across subsets and sweep members
        (rendering is a jinja call per text)."""
        settings = (self.format.fallback_template, self.format.system_prompt_text)
        texts = []
        for prompt, resp in conversations:
            key = (settings, prompt if isinstance(prompt, str) else tuple(map(tuple, prompt)), resp)
            text = self._formatted.get(key)
            if text is None:
                text = self._formatted[key] = format_conversation(self.tokenizer, prompt, resp, self.format)
            texts.append(text)
        return texts

    def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray:
        """Score (prompt, response) pairs; float64 array in input order."""
        return self.score_texts(self.format_texts(conversations))

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Score already formatted texts; float64 array in input order."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        if self.compat == "rewardbench":
            encoded = self._encode(texts)
            batches = [
                list(range(start, min(start + REWARDBENCH_BATCH_SIZE, len(texts))))
                for start in range(0, len(texts), REWARDBENCH_BATCH_SIZE)
            ]
            return self._run(encoded, batches, self.tokenizer.padding_side)
        memo = self._current_memo()
        new = [text for text in dict.fromkeys(texts) if text not in memo]
        if new:
            memo.update(zip(new, self.score_distinct(new).tolist()))
        return np.array([memo[text] for text in texts], dtype=np.float64)

    def score_distinct(self, texts: Sequence[str]) -> np.ndarray:
        """Score distinct texts in length-sorted token-budget batches, bypassing (and not filling) the memo."""
        encoded = self._encode(texts)
        batches = plan_token_batches([len(ids) for ids in encoded], self.token_budget)
        return self._run(encoded, batches, "right")

    def remember(self, texts: Sequence[str], scores: Sequence[float]) -> None:
        """Take ``scores`` (e.g. from a checkpoint) as the scores of ``texts``: fast mode will not score them again."""
        if self.compat != "rewardbench":
            self._current_memo().update(zip(texts, np.asarray(scores, dtype=np.float64).tolist()))

    def load_weights(self, model: ResolvedModel, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Score ``model`` from now on: ``state_dict`` (its weights, e.g. an in-memory merge) loaded into this
        network, whose scores are remembered under ``model.content_key``, apart from every other model's."""
        if not model.content_key:
            raise ValueError("weights loaded into a scorer need the model's content_key: the key of their scores")
        try:
            self.network.load_state_dict(dict(state_dict), strict=True)
        except RuntimeError as exc:
            raise ModelError(f"the weights of {model.ref} do not fit the network of {self.model.ref}: {exc}") from exc
        self.model = model

    def _current_memo(self) -> dict[str, float]:
        """The memo of the current model (its content key where it has one) and truncation side."""
        key = (self.model.content_key or self.model, self.tokenizer.truncation_side)
        if key not in self._memo:  # a new member: the previous members' scores are not needed any more
            self._memo = {k: v for k, v in self._memo.items() if k[0] == key[0]}
        return self._memo.setdefault(key, {})

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of ``texts``, each longer one cut to ``max_length`` by the tokenizer on its truncation side; the
        uncut lengths are kept for :meth:`truncated`."""
        encoded = self._tokenize(texts)
        longer = [i for i, ids in enumerate(encoded) if len(ids) > self.max_length]
        if longer:
            cut = self.tokenizer([texts[i] for i in longer], truncation=True, max_length=self.max_length,
                                 return_attention_mask=False)["input_ids"]
            for i, ids in zip(longer, cut):
                encoded[i] = ids
        return encoded

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer(list(texts), return_attention_mask=False, verbose=False)["input_ids"]
        self._lengths.update((text, len(ids)) for text, ids in zip(texts, encoded))
        return encoded

    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """Whether each formatted text is longer than ``max_length`` (cut when scored); texts this scorer has not
        tokenized (scores read from a checkpoint) are tokenized here."""
        unseen = [text for text in dict.fromkeys(texts) if text not in self._lengths]
        if unseen:
            self._tokenize(unseen)
        return np.array([self._lengths[text] > self.max_length for text in texts], dtype=bool)

    def _run(self, encoded: list[list[int]], batches: list[list[int]], padding_side: str) -> np.ndarray:
        """Score the batches assigned to this process, gather all processes' scores, return them per text."""
        mine = batches[self.state.process_index :: self.state.num_processes]
        results: list[tuple[int, float]] = []
        bar = tqdm(mine, desc="scoring", unit="batch", disable=not self.state.is_main_process, leave=False)
        with torch.inference_mode():
            for batch in bar:
                input_ids, attention_mask = collate(
                    [encoded[i] for i in batch], self.tokenizer.pad_token_id, padding_side, self._mask_bos_id
                )
                logits = self.network(
                    input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
                ).logits
                results.extend(zip(batch, logits[:, 0].float().cpu().tolist()))
        if self.state.num_processes > 1:
            results = gather_object(results)
        scores = np.full(len(encoded), np.nan, dtype=np.float64)
        for index, value in results:
            scores[index] = value
        return scores

    def settings_record(self) -> dict[str, Any]:
        """Everything that determines the scores, for result files."""
        batching: dict[str, Any]
        if self.compat == "rewardbench":
            batching = {
                "mode": "rewardbench",
                "batch_size": REWARDBENCH_BATCH_SIZE,
                "order": "input",
                "padding_side": self.tokenizer.padding_side,
            }
        else:
            batching = {"mode": "fast", "token_budget": self.token_budget, "order": "length", "deduplicated": True,
                        "one_score_per_text": "per model and run, over every pass, subset, chunk and benchmark"}
        return {
            **self.format.record(),
            "max_length_used": self.max_length,
            "truncation_side_used": self.tokenizer.truncation_side,
            "chat_template": self.template_name,
            "double_bos": "mask" if self._mask_bos_id is not None else "keep",
            "pad_token_id": self.tokenizer.pad_token_id,
            "pad_from_eos": self.pad_from_eos,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            "attn_implementation": self.network.config._attn_implementation,
            "batching": batching,
            "num_processes": self.state.num_processes,
            "versions": {
                "dogerm-eval": __version__,
                **{
                    name: importlib.metadata.version(name)
                    for name in ("torch", "transformers", "huggingface_hub", "accelerate")
                },
            },
        }
