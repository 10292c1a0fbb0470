"""`--push-results`: write scores into the `model-index` of the evaluated Hub repo/branch's model card."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from dogerm_eval.benchmarks import BENCHMARKS
from dogerm_eval.errors import ModelError
from dogerm_eval.models import ResolvedModel

LOG = logging.getLogger(__name__)
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
TASK_TYPE = "text-classification"
TASK_NAME = "Reward modeling"


def check_pushable(model: ResolvedModel) -> bool:
    """True for a Hub model on a branch; False (nothing to push) for a local folder; ModelError for a commit."""
    if model.repo_id is None:
        return False
    if model.revision and COMMIT_SHA.match(model.revision):
        raise ModelError(f"{model.ref}: results cannot be pushed to a commit; name a branch (org/name@branch)")
    return True


def eval_results(results: Mapping[str, Mapping[str, Any]]) -> list[EvalResult]:
    """One EvalResult per metric of every benchmark result (names as in the sweep CSV, e.g. `rewardbench/math`)."""
    entries = []
    for name, result in results.items():
        module = BENCHMARKS.get(name)
        for metric, value in result["metrics"].items():
            if value is None:
                continue
            entries.append(EvalResult(
                task_type=TASK_TYPE, task_name=TASK_NAME,
                dataset_type=getattr(module, "CARD_DATASET", name), dataset_name=name,
                dataset_split=getattr(module, "SPLIT", None), dataset_revision=result.get("dataset_revision"),
                metric_type="accuracy", metric_name=metric, metric_value=round(float(value), 6),
            ))
    return entries


def _load_card(repo_id: str, revision: str | None) -> ModelCard:
    try:
        return ModelCard.load(hf_hub_download(repo_id, "README.md", revision=revision))
    except EntryNotFoundError:
        return ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n\n# {repo_id}\n")


def push_results(model: ResolvedModel, results: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Merge `results` into the card's model-index on the model's branch and push it; return the commit URL.

    Entries with the same dataset and metric name are replaced, others are kept. Local folders: no-op (None).
    """
    if not check_pushable(model):
        LOG.info("--push-results: %s is a local folder, not a Hub repo; nothing pushed", model.ref)
        return None
    card = _load_card(model.repo_id, model.revision)
    new = eval_results(results)
    replaced = {(e.dataset_type, e.metric_name) for e in new}
    kept = [e for e in card.data.eval_results or [] if (e.dataset_type, e.metric_name) not in replaced]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or model.repo_id.split("/")[-1]
    commit = card.push_to_hub(
        model.repo_id, revision=model.revision,
        commit_message=f"dogerm-eval: results for {', '.join(results)}",
    )
    LOG.info("--push-results: %d scores written to the model card of %s", len(new), model.ref)
    return str(commit)
