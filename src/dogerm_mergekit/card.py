"""Model cards for merged reward models, written without any network access."""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

TAGS = ["mergekit", "merge", "dogerm", "reward-model"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_ids(models: list[str]) -> list[str]:
    """The references that are Hub repository ids (local paths cannot go into ``base_model``)."""
    return [m for m in models if _HUB_ID.match(m) and not Path(m).exists()]


def merge_card(
    reward_model: str,
    domain_model: str,
    lam: float | str,
    config_yaml: str,
    extra_markdown: str = "",
) -> ModelCard:
    """A card naming both parents (``base_model_relation: merge``), lambda and the mergekit configuration."""
    data = ModelCardData(
        base_model=hub_ids([reward_model, domain_model]) or None,
        base_model_relation="merge",
        tags=TAGS,
        library_name="transformers",
        pipeline_tag="text-classification",
    )
    body = f"""---
{data.to_yaml()}
---
# DogeRM merge

A reward model merged with a domain language model by [DogeRM](https://arxiv.org/abs/2407.01470),
made with [mergekit](https://github.com/arcee-ai/mergekit) and dogerm-mergekit:
theta = (1 - lambda) * theta_RM + lambda * theta_domain on the shared backbone; the reward model's value head,
tokenizer and chat template are kept, the domain model's `lm_head` is dropped.

| role | model |
|---|---|
| reward model (base) | `{reward_model}` |
| domain model | `{domain_model}` |
| lambda (domain weight) | {lam} |
{extra_markdown}
## Configuration

```yaml
{config_yaml.strip()}
```
"""
    return ModelCard(body)
