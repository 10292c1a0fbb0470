"""Texts longer than the model's window: cut to it on the stated side, and counted.

A model takes at most as many tokens as its position table has (``max_position_embeddings``; GPT-2's ``n_positions``)
and its tokenizer was saved for (``model_max_length``): past that, a learned position table ends in an index error
and a rotary one scores positions it never saw. So every scorer caps ``--max-length`` by the smaller of the two,
cuts longer texts to it on the truncation side, and ``run_task`` counts them: the result JSON holds
``truncated_texts`` (count, out of how many, the length and side, and the count per subset), the score line a note,
the sweep table a ``<benchmark>/truncated-texts`` column, and the log a one-line warning. Generation (policies,
judges) fits each prompt and its new tokens into the window (:func:`fit_generation`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

LOG = logging.getLogger(__name__)
KEY = "truncated_texts"
COLUMN = "truncated-texts"
"""Sweep-table column ``<benchmark>/truncated-texts``: how many scored texts were cut, where any were."""
#: transformers' ``model_max_length`` of a tokenizer saved without one (``VERY_LARGE_INTEGER``) and larger sentinels.
UNSET = 10**12


def model_window(config: Any, tokenizer: Any) -> tuple[int | None, str]:
    """The most tokens the model takes, and which setting says so (``max_position_embeddings`` of the config, or the
    tokenizer's ``model_max_length``, whichever is smaller); ``(None, "")`` when neither is set."""
    limits = {}
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits["max_position_embeddings"] = positions
    saved = getattr(tokenizer, "model_max_length", None)
    if isinstance(saved, int) and 0 < saved < UNSET:
        limits["model_max_length"] = saved
    if not limits:
        return None, ""
    name = min(limits, key=limits.__getitem__)
    return limits[name], name


def cap(asked: int, model: str, config: Any, tokenizer: Any) -> int:
    """``asked`` (``--max-length``) capped by the model's window, with a one-line warning when it is."""
    window, source = model_window(config, tokenizer)
    if window is None or asked <= window:
        return asked
    LOG.warning("--max-length %d is longer than %s takes (%s %d): texts are cut to %d tokens", asked, model, source,
                window, window)
    return window


def record(cut: np.ndarray, max_length: int, side: str, per_example: Any = None) -> dict[str, Any]:
    """The result JSON's ``truncated_texts``: how many of the scored texts were cut, to what length, on which side,
    and per subset (``per_example``: the benchmark's rows scored with NaN at every cut text and 0 elsewhere)."""
    entry: dict[str, Any] = {"texts": int(np.count_nonzero(cut)), "scored": int(np.size(cut)),
                             "max_length": max_length, "side": side}
    if entry["texts"] and per_example is not None and "subset" in per_example.columns:
        from dogerm_eval.nonfinite import row_counts

        by_subset = row_counts(per_example).groupby(per_example["subset"].astype(str)).sum()
        entry["by_subset"] = {str(name): int(value) for name, value in by_subset.items() if value}
    return entry


def describe(entry: Mapping[str, Any]) -> str:
    """``12 of 248 texts cut to 64 tokens (right)``."""
    return f"{entry['texts']} of {entry['scored']} texts cut to {entry['max_length']} tokens ({entry['side']})"


def note(result: Mapping[str, Any]) -> str:
    """`` [12 of 248 texts cut to 64 tokens (right)]`` or an empty string."""
    entry = result.get(KEY) or {}
    return f" [{describe(entry)}]" if entry.get("texts") else ""


def prompt_is_cut(length: int, max_new_tokens: int, window: int | None) -> bool:
    """Whether :func:`fit_generation` cuts a prompt of ``length`` tokens: it leaves fewer than
    ``min(max_new_tokens, window // 4)`` of the window for new tokens."""
    return window is not None and length + min(max_new_tokens, window // 4) > window


def fit_generation(ids: list[int], max_new_tokens: int, window: int | None, what: str,
                   quiet: bool = False) -> tuple[list[int], int]:
    """A prompt's token ids and its new-token budget within the model's window, with a one-line warning when either
    is cut (none if ``quiet``: a caller warns once for all its prompts): fewer new tokens first; a prompt leaving fewer
    than ``min(max_new_tokens, window // 4)`` is cut on the left (its end, the turn to answer, is kept)."""
    if window is None or len(ids) + max_new_tokens <= window:
        return ids, max_new_tokens
    room = min(max_new_tokens, window // 4)
    log = (lambda *args: None) if quiet else LOG.warning
    if prompt_is_cut(len(ids), max_new_tokens, window):
        log("%s: the prompt's %d tokens leave no room in the model's %d positions: its first %d tokens are cut (the "
            "same for any later prompt that does not fit)", what, len(ids), window, len(ids) + room - window)
        return ids[len(ids) + room - window:], room
    log("%s: the prompt's %d tokens leave %d of the model's %d positions: at most %d new tokens (the same for any "
        "later prompt that does not fit)", what, len(ids), window - len(ids), window, window - len(ids))
    return ids, window - len(ids)
