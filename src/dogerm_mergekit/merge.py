"""One DogeRM merge (what ``mergekit-yaml`` runs for ``merge_method: dogerm``): plan, then the driver."""

from __future__ import annotations

from pathlib import Path

from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import plan_merge
from dogerm_mergekit.plan import DogeRMPlan
from dogerm_mergekit.driver import Output, check_options, run_outputs
from dogerm_mergekit.files import output_lock, remove_leftovers
from dogerm_mergekit.validation import check_output


def run_dogerm_merge(
    config: MergeConfiguration, out_path: str | Path, options: MergeOptions, config_source: str | None = None
) -> DogeRMPlan:
    """Validate, merge into a hidden sibling folder, and rename it to ``out_path`` when complete."""
    from dogerm_mergekit import register

    register()
    check_options(options)
    check_output(Path(out_path), "model")
    plan = plan_merge(config, options)
    with output_lock(Path(out_path)):
        remove_leftovers(Path(out_path))
        run_outputs(plan, [Output(config, config_source or config.to_yaml(), Path(out_path))], options)
    return plan
