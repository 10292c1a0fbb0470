"""Run one DogeRM merge with mergekit's engine: plan first, write atomically, then the card."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mergekit.merge as mergekit_merge
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import DogeRMPlan, plan_merge
from dogerm_mergekit.atomic import atomic_directory
from dogerm_mergekit.card import merge_card

CONFIG_FILE = "mergekit_config.yml"


def prepared_config(config: MergeConfiguration, plan: DogeRMPlan) -> MergeConfiguration:
    """The configuration mergekit runs: the planned tokenizer block, and out_dtype defaulting to the RM's dtype."""
    return config.model_copy(
        update={
            "tokenizer": plan.vocabulary.tokenizer,
            "tokenizer_source": None,
            "out_dtype": config.out_dtype or plan.rm_dtype,
        }
    )


def lambda_summary(config: MergeConfiguration, plan: DogeRMPlan) -> float | str:
    """The lambda to show in cards: a number, or a pointer to the configuration for per-tensor settings."""
    domain = next(m for m in config.models or [] if m.model == plan.domain_model)
    setting = (domain.parameters or {}).get("lambda", (config.parameters or {}).get("lambda"))
    return float(setting) if isinstance(setting, (int, float)) else "per tensor (see configuration)"


@contextmanager
def _planned_architecture(plan: DogeRMPlan) -> Iterator[None]:
    """Make mergekit use the plan's architecture instead of guessing one from the configs."""
    original = mergekit_merge.get_architecture_info
    mergekit_merge.get_architecture_info = lambda *_args, **_kwargs: plan.architecture
    try:
        yield
    finally:
        mergekit_merge.get_architecture_info = original


def run_dogerm_merge(
    config: MergeConfiguration,
    out_path: str | Path,
    options: MergeOptions,
    config_source: str | None = None,
    mergekit_run_merge: Callable[..., Any] | None = None,
) -> DogeRMPlan:
    """Validate, merge into a temporary folder, add the card, and rename the folder to ``out_path``."""
    from dogerm_mergekit import register

    register()
    plan = plan_merge(config, options)
    run = mergekit_run_merge or getattr(mergekit_merge.run_merge, "__wrapped__", mergekit_merge.run_merge)
    source = config_source or config.to_yaml()
    with atomic_directory(Path(out_path)) as temporary, _planned_architecture(plan):
        run(
            prepared_config(config, plan),
            str(temporary),
            options=options.model_copy(update={"write_model_card": False}),
            config_source=source,
        )
        finish_checkpoint(config, plan, temporary, options, source)
    return plan


def finish_checkpoint(
    config: MergeConfiguration, plan: DogeRMPlan, folder: Path, options: MergeOptions, source: str
) -> None:
    """Add what mergekit does not write for dogerm: the RM's own tokenizer files, the configuration, the card."""
    if plan.vocabulary.tokenizer is not None and plan.vocabulary.tokenizer.source == "base":
        # mergekit re-serialises the tokenizer it aligned on; ship the reward model's files unchanged instead
        mergekit_merge._copy_tokenizer(config.model_copy(update={"tokenizer": None}), str(folder), options)
    (folder / CONFIG_FILE).write_text(source, encoding="utf-8")
    card = merge_card(str(plan.reward_model), str(plan.domain_model), lambda_summary(config, plan), source)
    card.save(folder / "README.md")
