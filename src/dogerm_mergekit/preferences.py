"""Preference data for reward-model training: load, check the schema, render and tokenize as DogeRM trained.

Schema (UltraFeedback-binarized, e.g. argilla/ultrafeedback-binarized-preferences-cleaned or
HuggingFaceH4/ultrafeedback_binarized): ``chosen`` and ``rejected`` are message lists ``[{"role", "content"}, ...]``
ending with the assistant's answer; other columns (``prompt``, ratings, models) are ignored, except that a message
list without the user turn gets ``prompt`` (a string, or a message list) in front of it.

Rendering follows the authors (MiuLab/DogeRM, src/utils.py ``format_chosen_rejected`` and src/rm_dataset.py): the
system prompt, then the conversation, through the chat template as text; the text is then tokenized with the
tokenizer's special tokens (so a Llama-2 template's BOS plus the tokenizer's gives the double BOS the authors trained
and dogerm-eval scores with ``--double-bos keep``); a pair whose two token sequences are identical is dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.tables import looks_like_path, native, parse_hub_ref, read_frame

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

LOG = logging.getLogger(__name__)
USED = ("prompt", "chosen", "rejected")
"""The columns read; the others (ratings, models, ids) are dropped, whatever their types."""
ROLES = {"system", "user", "assistant"}
SCHEMA = ("the UltraFeedback-binarized schema: chosen and rejected = message lists [{role, content}, ...] ending "
          "with the assistant turn (prompt optional)")


@dataclass(frozen=True)
class PreferenceData:
    """The loaded rows and where they came from (``revision``: Hub commit, or ``sha256:<hex>`` of a local file)."""

    rows: datasets.Dataset
    source: str
    revision: str


def load_preferences(ref: str, split: str = "train") -> PreferenceData:
    """A local file (parquet, a JSON array or JSON lines, maybe gzip-compressed: told apart by its content, whatever
    its name), a local dataset folder, or a Hub dataset ``org/name[@revision]`` (its commit recorded); the schema is
    checked row by row."""
    import datasets

    from dogerm_mergekit.files import sha256_file

    path = Path(ref).expanduser()
    if not path.exists() and looks_like_path(ref):
        raise DogeRMConfigError(f"--data {ref}: no such file or folder")
    try:
        if path.is_file():  # the reader's one-line errors name the file and the line or row
            frame = read_frame(path, DogeRMConfigError)
            used = [column for column in USED if column in frame.columns]
            rows = [{column: _value(row[column]) for column in used} for row in frame.to_dict("records")]
            check_schema(list(frame.columns), rows, ref)
            return PreferenceData(datasets.Dataset.from_list(rows), str(path.resolve()),
                                  f"sha256:{sha256_file(path)}")
        if path.is_dir():
            rows, source, revision = datasets.load_dataset(str(path), split=split), str(path.resolve()), "local"
        else:
            rows, source, revision = _load_hub(ref, split)
    except DogeRMConfigError:
        raise
    except Exception as exc:  # datasets raises many types (DatasetGenerationError, ArrowInvalid, ValueError)
        raise DogeRMConfigError(f"--data {ref}: cannot read it as a dataset ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}); give {SCHEMA}") from None
    check_schema(rows.column_names, rows, ref)
    return PreferenceData(rows, source, revision)


def _value(value: Any) -> Any:
    """A file's value as plain Python; a missing one (a row without the key, null, NaN) is None."""
    value = native(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def _load_hub(ref: str, split: str) -> tuple[datasets.Dataset, str, str]:
    import datasets
    from huggingface_hub import snapshot_download

    repo_id, revision = parse_hub_ref(ref, DogeRMConfigError)
    local = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
    return datasets.load_dataset(str(local), split=split), repo_id, local.name  # the cache folder is the commit


def _is_messages(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0 and all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in value))


def check_schema(columns: list[str], rows: Sequence[dict[str, Any]], ref: str) -> None:
    """DogeRMConfigError naming the missing column, or the first row and column that is not a usable conversation."""
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        raise DogeRMConfigError(f"--data {ref}: no column {' or '.join(missing)} (columns: {columns}); "
                                f"expected {SCHEMA}")
    if len(rows) == 0:
        raise DogeRMConfigError(f"--data {ref} has no rows")
    has_prompt = "prompt" in columns
    for index, row in enumerate(rows):
        for column in ("chosen", "rejected"):
            value = row[column]
            if not _is_messages(value) or value[-1]["role"] != "assistant":
                raise DogeRMConfigError(
                    f"--data {ref}: row {index}, column {column!r}: expected a message list ending with an assistant "
                    f"turn, got {type(value).__name__} {str(value)[:60]!r}; expected {SCHEMA}")
            if value[0]["role"] == "assistant" and not (has_prompt and _prompt_messages(row["prompt"])):
                raise DogeRMConfigError(f"--data {ref}: row {index}, column {column!r} has no user turn and the row "
                                        "no prompt; expected " + SCHEMA)


def _prompt_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str) and prompt:
        return [{"role": "user", "content": prompt}]
    return list(prompt) if _is_messages(prompt) else []


def conversation(row: dict[str, Any], column: str, system_prompt: str | None) -> list[dict[str, str]]:
    """``system_prompt`` (if any), the prompt when the message list lacks the user turn, then the messages."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row[column]]
    if messages[0]["role"] == "assistant":
        messages = _prompt_messages(row["prompt"]) + messages
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], template: str) -> str:
    """The conversation as text through ``template`` (no generation prompt)."""
    return str(tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False))


def check_template(tokenizer: PreTrainedTokenizerBase, template: str, row: dict[str, Any],
                   system_prompt: str | None, where: str) -> None:
    """Refuse a template that fails on, or drops the answer of, the first pair (before any model loads)."""
    messages = conversation(row, "chosen", system_prompt)
    try:
        text = render(tokenizer, messages, template)
    except Exception as exc:  # jinja2.TemplateError, or raise_exception() inside the template
        raise DogeRMConfigError(f"the chat template ({where}) does not render row 0: {type(exc).__name__}: {exc}; "
                                "choose --chat-template llama2 or a .jinja file") from None
    answer = messages[-1]["content"].strip()
    if answer and answer not in text:
        raise DogeRMConfigError(f"the chat template ({where}) drops the assistant answer of row 0; choose "
                                "--chat-template llama2 or a .jinja file")


def tokenize_pairs(rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, template: str,
                   system_prompt: str | None) -> datasets.Dataset:
    """``chosen_ids``/``rejected_ids`` (TRL's pre-tokenized columns) per row; identical pairs dropped."""

    def encode(row: dict[str, Any], index: int) -> dict[str, list[int]]:
        out = {}
        for column in ("chosen", "rejected"):
            try:
                text = render(tokenizer, conversation(row, column, system_prompt), template)
            except Exception as exc:
                raise DogeRMConfigError(f"the chat template does not render row {index}, column {column!r}: "
                                        f"{type(exc).__name__}: {exc}") from None
            out[f"{column}_ids"] = tokenizer(text)["input_ids"]
        return out

    tokenized = rows.map(encode, with_indices=True, remove_columns=rows.column_names, desc="rendering pairs")
    kept = tokenized.filter(lambda row: row["chosen_ids"] != row["rejected_ids"])
    if len(kept) < len(tokenized):
        LOG.info("dropped %d pairs whose chosen and rejected texts are identical", len(tokenized) - len(kept))
    if len(kept) == 0:
        raise DogeRMConfigError("every pair has identical chosen and rejected texts; nothing to train on")
    return kept
