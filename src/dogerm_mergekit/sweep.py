"""A lambda sweep in one pass: every input tensor is read once and merged into K checkpoints.

The K configurations are planned by the driver into one mergekit task graph: their load tasks and each
tensor's difference are equal and so shared, and mergekit's scheduler orders tasks by tensor name, so each input
tensor is loaded, differenced once, interpolated and written K times, and dropped. Checkpoints appear as
``OUT/lambda-X.XX`` when complete; ``OUT/sweep.json`` (see :mod:`dogerm_mergekit.contract`) records inputs,
lambdas and each finished checkpoint's file digests. With several domain models, each point is a lambda vector
(``OUT/lambda-X.XX_Y.YY``, a product of per-domain grids from :func:`grid_points`). A rerun finishes only what is missing and refuses changed
inputs or configuration unless asked to overwrite; a second run on the same OUT is refused while one runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
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
    grid_checkpoint_name,
    load_manifest,
    save_manifest,
)
from dogerm_mergekit.driver import Output, check_options, run_outputs
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.files import fast_digest_file, output_lock, remove_leftovers
from dogerm_mergekit.method import check_lambdas
from dogerm_mergekit.validation import check_output, domain_lambda_settings, split_models

LOG = logging.getLogger(__name__)

SETTINGS = ("out_shard_size", "safe_serialization", "copy_tokenizer", "write_model_card")
"""Options that change the bytes of a checkpoint: part of the configuration a sweep is resumed under."""


def config_for_lambdas(config: dict[str, Any], lams: dict[str, float] | None) -> dict[str, Any]:
    """The configuration with ``lams[model]`` as each domain model's only lambda (``None`` removes lambda everywhere)."""
    result = copy.deepcopy(config)
    (result.get("parameters") or {}).pop("lambda", None)
    for model in result["models"]:
        reference = str(ModelReference.model_validate(model["model"]))
        parameters = model.setdefault("parameters", {}) or {}
        parameters.pop("lambda", None)
        if lams is not None and reference in lams:
            parameters["lambda"] = lams[reference]
        model["parameters"] = parameters
        if not parameters:
            del model["parameters"]
    return result


def config_for_lambda(config: dict[str, Any], domain: str, lam: float | None) -> dict[str, Any]:
    """The configuration with ``lam`` as the domain model's only lambda (``None`` removes lambda everywhere)."""
    return config_for_lambdas(config, None if lam is None else {domain: lam})


def _short(model: ModelReference) -> str:
    return str(model.model.path).rstrip("/").rsplit("/", 1)[-1]


def grid_points(config_source: str, grids: Sequence[tuple[str | None, Sequence[float]]]) -> list[tuple[float, ...]]:
    """Every lambda vector (one lambda per domain model, ``models:`` order) of the product of ``grids``.

    ``grids``: (MODEL, values) as :func:`~dogerm_mergekit.contract.parse_grid` returns; MODEL is a domain model as
    ``models:`` names it or its last path component (None: the only domain model). A domain model no grid names
    keeps the plain lambda its configuration gives it. Vectors whose sum leaves [0, 1] are left out (logged)
    unless the configuration sets ``allow_extrapolation: true``.
    """
    raw = yaml.safe_load(config_source)
    config = MergeConfiguration.model_validate(raw)
    _, domains = split_models(config)
    values: dict[ModelReference, Sequence[float]] = {}
    for model, grid in grids:
        if model is None:
            if len(domains) != 1:
                raise DogeRMConfigError(f"--grid lambda=...: the configuration has {len(domains)} domain models; "
                                        "name one per grid as lambda[MODEL]=...")
            match = list(domains)
        else:
            match = [d for d in domains if model in (str(d), str(d.model.path), _short(d))]
        if len(match) != 1:
            names = ", ".join(_short(d) for d in domains)
            raise DogeRMConfigError(f"--grid lambda[{model}]: {'no' if not match else 'more than one'} domain model "
                                    f"matches (they are: {names})")
        if match[0] in values:
            raise DogeRMConfigError(f"--grid: two grids for {match[0]}")
        values[match[0]] = grid
    for domain in domains:
        if domain not in values:
            settings = domain_lambda_settings(config, domain)
            if not settings or not isinstance(settings[0], (int, float)) or isinstance(settings[0], bool):
                raise DogeRMConfigError(f"--grid: no grid for {domain} and its configuration gives no plain lambda: "
                                        f"add --grid lambda[{_short(domain)}]=...")
            values[domain] = (float(settings[0]),)
    allow = bool((raw.get("parameters") or {}).get("allow_extrapolation", False))
    points = [tuple(point) for point in itertools.product(*(values[d] for d in domains))]
    kept = [p for p in points if allow or len(p) == 1 or 0.0 <= math.fsum(p) <= 1.0 + 1e-12]
    if len(kept) < len(points):
        LOG.warning("--grid: %d of %d lambda vectors sum outside [0, 1] and are left out (allow_extrapolation: "
                    "true keeps them)", len(points) - len(kept), len(points))
    if not kept:
        raise DogeRMConfigError("--grid: every lambda vector sums outside [0, 1]; nothing to merge")
    return kept


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
    lambdas: Sequence[float | Sequence[float]],
    options: MergeOptions,
    overwrite: bool = False,
) -> SweepResult:
    """Write ``out_dir/lambda-X.XX`` for every lambda not already complete, reading each input tensor once.

    ``lambdas``: numbers for a one-domain merge, or lambda vectors (one per domain model, ``models:`` order,
    e.g. from :func:`grid_points`) written to ``out_dir/lambda-X.XX_Y.YY``.
    """
    from dogerm_mergekit import register

    register()
    check_options(options)
    raw = yaml.safe_load(config_source)
    if not isinstance(raw, dict) or raw.get("merge_method") != "dogerm":
        raise DogeRMConfigError("the sweep configuration must be a dogerm mergekit config (merge_method: dogerm)")
    _, domains = split_models(MergeConfiguration.model_validate(raw))
    keys = [str(d) for d in domains]
    points = [(float(p),) if isinstance(p, (int, float)) else tuple(map(float, p)) for p in lambdas]
    wrong = [p for p in points if len(p) != len(domains)]
    if wrong:
        raise DogeRMConfigError(f"{len(domains)} domain models but a lambda vector of {len(wrong[0])}: {wrong[0]}")
    check_output(Path(out_dir), "sweep")
    allow = bool((raw.get("parameters") or {}).get("allow_extrapolation", False))
    for point in points:
        check_lambdas(point, allow)
    sources = {p: yaml.safe_dump(config_for_lambdas(raw, dict(zip(keys, p))), sort_keys=False) for p in points}
    configs = {p: MergeConfiguration.model_validate(yaml.safe_load(text)) for p, text in sources.items()}
    plan = plan_merge(configs[points[0]], options)
    several = len(domains) > 1

    out_dir = Path(out_dir).absolute()
    neutral = yaml.safe_dump(config_for_lambdas(raw, None), sort_keys=True)
    settings = json.dumps(options.model_dump(include=set(SETTINGS)), sort_keys=True)
    roles = [("reward_model", plan.reward_model), ("domain_model", domains[0]),
             *((f"domain_model_{i}", d) for i, d in enumerate(domains[1:], start=2))]
    fresh = SweepManifest(
        reward_model=str(plan.reward_model),
        domain_model=str(plan.domain_model),
        inputs={role: input_fingerprint(m) for role, m in roles},
        config_sha256=hashlib.sha256((neutral + settings).encode()).hexdigest(),
        config=neutral,
        lambdas=sorted({math.fsum(p) for p in points}) if several else [p[0] for p in points],
        domain_models=keys if several else [],
        grid=[list(p) for p in points] if several else [],
    )

    def record_for(point: tuple[float, ...], files: dict[str, str]) -> CheckpointRecord:
        if not several:
            return CheckpointRecord(lam=point[0], files=files)
        return CheckpointRecord(lam=math.fsum(point), files=files, lambdas=dict(zip(keys, point)))

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
        names = {grid_checkpoint_name(p): p for p in points}
        for leftover in (MANIFEST, *names, *(previous.checkpoints if previous else ())):  # of interrupted runs
            remove_leftovers(out_dir / leftover)
        grid = [list(p) for p in dict.fromkeys(tuple(p) for p in [*(previous.grid if previous else []), *fresh.grid])]
        manifest = fresh.model_copy(update={
            "checkpoints": dict(previous.checkpoints) if previous else {},
            "lambdas": sorted(set(fresh.lambdas) | set(previous.lambdas if previous else [])),
            "grid": grid,
        })
        for name, point in names.items():
            if name not in manifest.checkpoints and (out_dir / name).is_dir():  # renamed, killed before recording
                files = {p.name: fast_digest_file(p) for p in sorted((out_dir / name).iterdir()) if p.is_file()}
                manifest.checkpoints[name] = record_for(point, files)
        done = {name for name in manifest.checkpoints if (out_dir / name).is_dir()}
        todo = [p for name, p in names.items() if name not in done]
        save_manifest(out_dir, manifest)
        if todo:
            def record(output: Output, digests: dict[str, str]) -> None:
                manifest.checkpoints[output.folder.name] = record_for(names[output.folder.name], digests)
                save_manifest(out_dir, manifest)

            outputs = [Output(configs[p], sources[p], out_dir / grid_checkpoint_name(p)) for p in todo]
            run_outputs(plan, outputs, options, on_complete=record, desc=f"Merging {len(todo)} lambdas")
    return SweepResult(
        out_dir=out_dir,
        written=tuple(grid_checkpoint_name(p) for p in todo),
        skipped=tuple(name for name in names if name in done),
        manifest=manifest,
    )
