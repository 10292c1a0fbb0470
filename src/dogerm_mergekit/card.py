"""Model cards for merged reward models and sweeps: huggingface_hub's ``ModelCard`` over a template, offline."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from dogerm_mergekit.contract import MetricsTable, point_label

TAGS = ["mergekit", "merge", "dogerm", "reward-model"]
TEMPLATE = Path(__file__).with_name("card_template.md")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_ids(models: list[str]) -> list[str]:
    """The references that are Hub repository ids (local paths cannot go into ``base_model``)."""
    ids = [m.partition("@")[0] for m in models if not Path(m).exists()]  # org/name@revision: the repo is org/name
    return [m for m in ids if _HUB_ID.match(m)]


def merge_card(
    reward_model: str,
    domain_model: str,
    lam: float | str,
    config_yaml: str,
    checkpoints: Sequence[tuple[float, str]] = (),
    metrics: MetricsTable | None = None,
    kernel: str | None = None,
    commits: Mapping[str, str] | None = None,
) -> ModelCard:
    """A card naming both parents (``base_model_relation: merge``), lambda and the mergekit configuration.

    A sweep's card also lists its ``checkpoints`` (lambda or name, ``from_pretrained`` arguments) and ``metrics``;
    ``kernel``: the mergekit method of a ``dogerm_<kernel>`` merge; ``commits``: the Hub commit each input given by
    Hub id was read at (model or role -> commit).
    """
    data = ModelCardData(
        base_model=hub_ids([reward_model, domain_model]) or None,
        base_model_relation="merge",
        tags=TAGS,
        library_name="transformers",
        pipeline_tag="text-classification",
    )
    names = metrics.metric_names() if metrics else []
    parameters = metrics.parameter_names() if metrics else []
    rows = [(row["lambda"] if parameters == ["lambda"] else point_label({k: row.get(k) for k in parameters}),
             ["" if row.get(n) is None else f"{row[n]:.4f}" for n in names])
            for row in (metrics.rows if metrics else [])]
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE), reward_model=reward_model, domain_model=domain_model, lam=lam,
        config_yaml=config_yaml.strip(), checkpoints=list(checkpoints), metric_names=names, metric_rows=rows,
        kernel=kernel, commits=sorted((commits or {}).items()),
    )
