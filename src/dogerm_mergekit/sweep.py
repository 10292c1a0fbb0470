"""A lambda sweep in one pass: every input tensor is read once and merged into K checkpoints.

The K configurations are planned by the driver into one mergekit task graph: their load tasks and each
tensor's difference are equal and so shared, and mergekit's scheduler orders tasks by tensor name, so each input
tensor is loaded, differenced once, interpolated and written K times, and dropped. Checkpoints appear as
``OUT/lambda-X.XX`` when complete; ``OUT/sweep.json`` (see :mod:`dogerm_mergekit.contract`) records inputs,
lambdas and each finished checkpoint's file digests. A rerun finishes only what is missing and refuses changed
inputs or configuration unless asked to overwrite; a second run on the same OUT is refused while one runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration
from mergekit.io.tasks import LoaderCache
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import plan_merge
from dogerm_mergekit.contract import (
    MANIFEST,
    CheckpointRecord,
    SweepManifest,
    checkpoint_name,
    load_manifest,
    save_manifest,
)
from dogerm_mergekit.driver import Output, check_options, run_outputs
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.files import fast_digest_file, output_lock, remove_leftovers
from dogerm_mergekit.method import check_lambda
from dogerm_mergekit.validation import check_output, split_models

SETTINGS = ("out_shard_size", "safe_serialization", "copy_tokenizer", "write_model_card")
"""Options that change the bytes of a checkpoint: part of the configuration a sweep is resumed under."""


def config_for_lambda(config: dict[str, Any], domain: str, lam: float | None) -> dict[str, Any]:
    """The configuration with ``lam`` as the domain model's only lambda (``None`` removes lambda everywhere)."""
    result = copy.deepcopy(config)
    (result.get("parameters") or {}).pop("lambda", None)
    for model in result["models"]:
        reference = str(ModelReference.model_validate(model["model"]))
        parameters = model.setdefault("parameters", {}) or {}
        parameters.pop("lambda", None)
        if reference == domain and lam is not None:
            parameters["lambda"] = lam
        model["parameters"] = parameters
        if not parameters:
            del model["parameters"]
    return result


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    manifest: SweepManifest


def input_fingerprint(model: ModelReference) -> dict[str, Any]:
    """Where mergekit reads ``model`` from, its revision, and each file's size and modification time."""
    folder = Path(LoaderCache().get(model).index.base_path)
    files = {
        str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }
    return {"path": str(folder), "revision": model.model.revision, "files": files}


def run_sweep(
    config_source: str,
    out_dir: Path,
    lambdas: Sequence[float],
    options: MergeOptions,
    overwrite: bool = False,
) -> SweepResult:
    """Write ``out_dir/lambda-X.XX`` for every lambda not already complete, reading each input tensor once."""
    from dogerm_mergekit import register

    register()
    check_options(options)
    raw = yaml.safe_load(config_source)
    if not isinstance(raw, dict) or raw.get("merge_method") != "dogerm":
        raise DogeRMConfigError("the sweep configuration must be a dogerm mergekit config (merge_method: dogerm)")
    _, domain = split_models(MergeConfiguration.model_validate(raw))
    check_output(Path(out_dir), "sweep")
    sources = {lam: yaml.safe_dump(config_for_lambda(raw, str(domain), lam), sort_keys=False) for lam in lambdas}
    configs = {lam: MergeConfiguration.model_validate(yaml.safe_load(text)) for lam, text in sources.items()}
    plan = plan_merge(configs[lambdas[0]], options)
    allow = bool((raw.get("parameters") or {}).get("allow_extrapolation", False))
    for lam in lambdas:
        check_lambda(lam, allow)

    out_dir = Path(out_dir).absolute()
    neutral = yaml.safe_dump(config_for_lambda(raw, str(domain), None), sort_keys=True)
    settings = json.dumps(options.model_dump(include=set(SETTINGS)), sort_keys=True)
    fresh = SweepManifest(
        reward_model=str(plan.reward_model),
        domain_model=str(plan.domain_model),
        inputs={role: input_fingerprint(m) for role, m in (("reward_model", plan.reward_model), ("domain_model", domain))},
        config_sha256=hashlib.sha256((neutral + settings).encode()).hexdigest(),
        config=neutral,
        lambdas=list(lambdas),
    )
    with output_lock(out_dir):
        previous = load_manifest(out_dir)
        if previous is not None and (previous.inputs, previous.config_sha256) != (fresh.inputs, fresh.config_sha256):
            if not overwrite:
                raise DogeRMConfigError(
                    f"{out_dir} holds a sweep of other inputs or another configuration; pass --overwrite to replace it"
                )
            for name in previous.checkpoints:
                shutil.rmtree(out_dir / name, ignore_errors=True)
            previous = None
        out_dir.mkdir(parents=True, exist_ok=True)
        names = {checkpoint_name(lam): lam for lam in lambdas}
        for leftover in (MANIFEST, *names, *(previous.checkpoints if previous else ())):  # of interrupted runs
            remove_leftovers(out_dir / leftover)
        manifest = fresh.model_copy(update={
            "checkpoints": dict(previous.checkpoints) if previous else {},
            "lambdas": sorted(set(lambdas) | set(previous.lambdas if previous else [])),
        })
        for name, lam in names.items():
            if name not in manifest.checkpoints and (out_dir / name).is_dir():  # renamed, killed before recording
                files = {p.name: fast_digest_file(p) for p in sorted((out_dir / name).iterdir()) if p.is_file()}
                manifest.checkpoints[name] = CheckpointRecord(lam=lam, files=files)
        done = {name for name in manifest.checkpoints if (out_dir / name).is_dir()}
        todo = [lam for name, lam in names.items() if name not in done]
        save_manifest(out_dir, manifest)
        if todo:
            def record(output: Output, digests: dict[str, str]) -> None:
                manifest.checkpoints[output.folder.name] = CheckpointRecord(lam=lams[output.folder], files=digests)
                save_manifest(out_dir, manifest)

            lams = {out_dir / checkpoint_name(lam): lam for lam in todo}
            outputs = [Output(configs[lam], sources[lam], out_dir / checkpoint_name(lam)) for lam in todo]
            run_outputs(plan, outputs, options, on_complete=record, desc=f"Merging {len(todo)} lambdas")
    return SweepResult(
        out_dir=out_dir,
        written=tuple(checkpoint_name(lam) for lam in todo),
        skipped=tuple(name for name in names if name in done),
        manifest=manifest,
    )
