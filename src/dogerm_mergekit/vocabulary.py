"""How the two vocabularies line up, and the mergekit tokenizer block that aligns embedding rows by string."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration
from mergekit.tokenizer.config import TokenizerConfig
from transformers import AutoTokenizer

from dogerm_mergekit.errors import DogeRMConfigError

LOG = logging.getLogger(__name__)

Relation = Literal["identical", "consistent", "conflicting", "unknown"]


@dataclass(frozen=True)
class VocabularyPlan:
    """The vocabularies' relation and the tokenizer block the merge runs with (None: rows already align)."""

    relation: Relation
    tokenizer: TokenizerConfig | None


def _vocab(model: ModelReference) -> dict[str, int] | None:
    try:
        return AutoTokenizer.from_pretrained(model.model.path, revision=model.model.revision).get_vocab()
    except (OSError, ValueError) as error:
        LOG.warning("no tokenizer for %s (%s)", model, error)
        return None


def relation(rm_vocab: dict[str, int], domain_vocab: dict[str, int]) -> Relation:
    """identical maps, consistent (shared strings share ids), or conflicting."""
    if rm_vocab == domain_vocab:
        return "identical"
    shared = rm_vocab.keys() & domain_vocab.keys()
    return "consistent" if all(rm_vocab[t] == domain_vocab[t] for t in shared) else "conflicting"


def plan_vocabulary(
    config: MergeConfiguration,
    rm: ModelReference,
    domains: Sequence[ModelReference],
    rm_rows: dict[str, int],
    domain_rows: Sequence[dict[str, int]],
) -> VocabularyPlan:
    """Decide how embedding rows are aligned (every domain model's to the reward model's, by token string);
    refuse what would silently mix different tokens."""
    rm_vocab = _vocab(rm)
    domain_vocabs = [_vocab(domain) for domain in domains]
    rows = max(rm_rows.values(), default=0)
    same_rows = all(rm_rows[n] == theirs.get(n, rm_rows[n]) for theirs in domain_rows for n in rm_rows)
    if rm_vocab is None or any(v is None for v in domain_vocabs):
        if same_rows and config.tokenizer is None and config.tokenizer_source is None:
            LOG.warning("cannot compare vocabularies without every tokenizer; merging embedding rows by id")
            return VocabularyPlan("unknown", None)
        raise DogeRMConfigError("aligning embedding rows needs the tokenizers of all models next to their weights")
    kinds = [relation(rm_vocab, vocab) for vocab in domain_vocabs]
    kind: Relation = next((k for k in ("conflicting", "consistent") if k in kinds), "identical")
    pad = rows if rows > len(rm_vocab) else None  # padded matrices keep their row count

    user = config.tokenizer
    if user is None and config.tokenizer_source is not None:
        user = TokenizerConfig(source=config.tokenizer_source)
    if user is not None:
        if user.source == "base" and user.pad_to_multiple_of is None:
            user = user.model_copy(update={"pad_to_multiple_of": pad})
        return VocabularyPlan(kind, user)
    if kind == "identical" and same_rows:
        return VocabularyPlan(kind, None)
    for domain, vocab, this in zip(domains, domain_vocabs, kinds):
        if this == "conflicting":
            moved = [t for t in sorted(rm_vocab.keys() & vocab.keys()) if rm_vocab[t] != vocab[t]]
            examples = ", ".join(f"{t!r} ({rm_vocab[t]} vs {vocab[t]})" for t in moved[:3])
            raise DogeRMConfigError(
                f"{len(moved)} tokens have different ids in the vocabularies of the reward model and {domain}, e.g. "
                f"{examples}; add `tokenizer: {{source: base}}` to align embedding rows by token string (or "
                "`source: union` to also carry the domain models' extra tokens)"
            )
    for domain, vocab in zip(domains, domain_vocabs):
        LOG.info(
            "aligning embedding rows of %s by token string: %d domain-only tokens dropped, %d reward-only tokens kept",
            domain, len(vocab.keys() - rm_vocab.keys()), len(rm_vocab.keys() - vocab.keys()),
        )
    return VocabularyPlan(kind, TokenizerConfig(source="base", pad_to_multiple_of=pad))
