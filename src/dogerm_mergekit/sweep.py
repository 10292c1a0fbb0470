"""A lambda sweep in one pass: every input tensor is read once and merged into K checkpoints.

The K configurations are planned by the driver into one mergekit task graph: their load tasks and each
tensor's difference are equal and so shared, and mergekit's scheduler orders tasks by tensor name, so each input
tensor is loaded, differenced once, interpolated and written K times, and dropped. Checkpoints appear as
``OUT/lambda-X.XX`` when complete; ``OUT/sweep.json`` (see :mod:`dogerm_mergekit.contract`) records inputs,
lambdas and each finished checkpoint's file digests. With several domain models, each point is a lambda vector
(``OUT/lambda-X.XX_Y.YY``, a product of per-domain grids from :func:`grid_points`). A ``dogerm_<kernel>``
configuration sweeps a grid of mergekit's parameters instead (:func:`kernel_grid_points`,
``OUT/density-0.50_weight.2-1.00``). A rerun finishes only what is missing and refuses changed
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from dogerm_mergekit.architecture import plan_merge
from dogerm_mergekit.checkpoint import model_folder
from dogerm_mergekit.contract import (
    MANIFEST,
    CheckpointRecord,
    Point,
    SweepManifest,
    checkpoint_change,
    file_stats,
    grid_checkpoint_name,
    grid_point_name,
    inside,
    lambda_vector,
    load_manifest,
    save_manifest,
)
from dogerm_mergekit.driver import Output, check_options, run_outputs
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.files import fast_digest_file, output_lock, remove_leftovers
from dogerm_mergekit.hubcache import cached_commit
from dogerm_mergekit.kernels import check_kernel_parameters, split_kernel_models
from dogerm_mergekit.methods import DOGERM, KERNEL_METHODS, is_kernel_method
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


def source_for_lambdas(source: str, raw: dict[str, Any], lams: dict[str, float]) -> str:
    """The configuration text of one sweep point: ``source`` itself with each domain model's own ``lambda:`` value
    replaced in place (comments and layout kept, so a checkpoint's ``mergekit_config.yml`` and card are what
    ``mergekit-yaml`` writes from the user's file with that lambda), or, where the file does not give every swept
    model a plain lambda of its own, the YAML of :func:`config_for_lambdas`."""
    expected = config_for_lambdas(raw, lams)
    normalised = yaml.safe_dump(expected, sort_keys=False)
    if "lambda" in (raw.get("parameters") or {}):
        return normalised
    spans = []
    entries = yaml.compose(source).value
    models = next((value for key, value in entries if key.value == "models"), None)
    for entry, node in zip(raw["models"], models.value if isinstance(models, yaml.SequenceNode) else []):
        reference = str(ModelReference.model_validate(entry["model"]))
        if reference not in lams or not isinstance(node, yaml.MappingNode):
            continue
        parameters = next((value for key, value in node.value if key.value == "parameters"), None)
        if isinstance(parameters, yaml.MappingNode):
            spans += [(value.start_mark.index, value.end_mark.index, repr(float(lams[reference])))
                      for key, value in parameters.value if key.value == "lambda" and isinstance(value, yaml.ScalarNode)]
    text = source
    for start, stop, value in sorted(spans, reverse=True):
        text = text[:start] + value + text[stop:]
    return text if len(spans) == len(lams) and yaml.safe_load(text) == expected else normalised


def config_for_lambda(config: dict[str, Any], domain: str, lam: float | None) -> dict[str, Any]:
    """The configuration with ``lam`` as the domain model's only lambda (``None`` removes lambda everywhere)."""
    return config_for_lambdas(config, None if lam is None else {domain: lam})


def _short(model: ModelReference) -> str:
    return str(model.model.path).rstrip("/").rsplit("/", 1)[-1]


def match_model(model: str, candidates: Sequence[ModelReference], what: str) -> ModelReference:
    """The one model ``model`` names: its reference as `models:` writes it, its path, or its last path component
    (``what``, e.g. ``--grid lambda[X]``, starts the error)."""
    match = [d for d in candidates if model in (str(d), str(d.model.path), _short(d))]
    if len(match) != 1:
        names = ", ".join(_short(d) for d in candidates)
        raise DogeRMConfigError(f"{what}: {'no' if not match else 'more than one'} model matches (they are: "
                                f"{names})")
    return match[0]


def grid_points(config_source: str, grids: Sequence[tuple[str, str | None, Sequence[float]]],
                keep: str = "allow_extrapolation: true keeps them") -> list[tuple[float, ...]]:
    """Every lambda vector (one lambda per domain model, ``models:`` order) of the product of ``grids``; ``keep``
    tells, in the log, how the caller's user keeps the vectors left out.

    ``grids``: (``lambda``, MODEL, values) as :func:`~dogerm_mergekit.contract.parse_grid` returns; MODEL is a domain model as
    ``models:`` names it or its last path component (None: the only domain model). A domain model no grid names
    keeps the plain lambda its configuration gives it. Vectors whose sum leaves [0, 1] are left out (logged)
    unless the configuration sets ``allow_extrapolation: true``.
    """
    raw = yaml.safe_load(config_source)
    config = MergeConfiguration.model_validate(raw)
    _, domains = split_models(config)
    values: dict[ModelReference, Sequence[float]] = {}
    for name, model, grid in grids:
        if name != "lambda":
            raise DogeRMConfigError(f"--grid {name}=...: merge_method: dogerm sweeps lambda only; {name} belongs to "
                                    "the dogerm_<kernel> methods (dogerm_ties, ...)")
        if model is None:
            if len(domains) != 1:
                raise DogeRMConfigError(f"--grid lambda=...: the configuration has {len(domains)} domain models; "
                                        "name one per grid as lambda[MODEL]=...")
            match = list(domains)
        else:
            match = [match_model(model, domains, f"--grid lambda[{model}]")]
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
        LOG.warning("--grid: %d of %d lambda vectors sum outside [0, 1] and are left out (%s)",
                    len(points) - len(kept), len(points), keep)
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
    folder = model_folder(model)
    files = {
        str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }
    return {"path": str(folder), "revision": model.model.revision, "files": files}


def input_record(model: ModelReference) -> dict[str, Any]:
    """What ``sweep.json`` records of an input: its :func:`input_fingerprint` and the commit read (a Hub id's
    snapshot in the Hugging Face cache; None for a local folder)."""
    fingerprint = input_fingerprint(model)
    return {**fingerprint, "commit": cached_commit(fingerprint["path"])}


def same_inputs(previous: dict[str, dict[str, Any]], fresh: dict[str, dict[str, Any]]) -> bool:
    """Whether two manifests' inputs are the same files (a manifest of an earlier version records no commit, which
    its path holds anyway)."""
    def files(inputs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {role: {k: v for k, v in entry.items() if k != "commit"} for role, entry in inputs.items()}

    return files(previous) == files(fresh)


KERNEL_GRID_PARAMETERS = ("weight", "density", "epsilon", "lambda", "gamma")
"""mergekit parameters a ``dogerm_<kernel>`` grid may sweep (numbers)."""


def kernel_grid_points(config_source: str,
                       grids: Sequence[tuple[str, str | None, Sequence[float]]]) -> list[dict[str, float]]:
    """The product of ``grids`` for a ``dogerm_<kernel>`` configuration: points ``{"density": 0.5,
    "weight[MODEL]": 0.7}`` (a top-level parameter, or one model's, MODEL as `models:` writes it)."""
    raw = yaml.safe_load(config_source)
    config = MergeConfiguration.model_validate(raw)
    _, models = split_kernel_models(config)
    if not grids:
        raise DogeRMConfigError(f"merge_method: {config.merge_method} sweeps need --grid PARAMETER[MODEL]=SPEC")
    axes: dict[str, Sequence[float]] = {}
    for name, model, values in grids:
        if name not in KERNEL_GRID_PARAMETERS:
            raise DogeRMConfigError(f"--grid {name}: a dogerm_<kernel> grid sweeps {', '.join(KERNEL_GRID_PARAMETERS)}")
        if model is None:
            key = name
            own = [m.model for m in config.models if name in (m.parameters or {}) and m.model in models]
            if own and name != "lambda":
                raise DogeRMConfigError(f"--grid {name}=...: {own[0]} sets its own {name}, which overrides the "
                                        f"top-level one: sweep {name}[MODEL] instead, or remove it from the model")
        else:
            key = f"{name}[{match_model(model, models, f'--grid {name}[{model}]')}]"
        if key in axes:
            raise DogeRMConfigError(f"--grid: two grids for {key}")
        axes[key] = values
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def config_for_point(config: dict[str, Any], point: dict[str, float] | None) -> dict[str, Any]:
    """The configuration with ``point``'s values set (``None``: every swept parameter removed, for the digest)."""
    result = copy.deepcopy(config)
    for key, value in (point or {}).items():
        name, _, model = key.partition("[")
        if not model:
            result["parameters"] = {**(result.get("parameters") or {}), name: value}
            continue
        for entry in result["models"]:
            if str(ModelReference.model_validate(entry["model"])) == model[:-1]:
                entry["parameters"] = {**(entry.get("parameters") or {}), name: value}
    return result


def _run_kernel_sweep(raw: dict[str, Any], out_dir: Path, points: Sequence[dict[str, float]], options: MergeOptions,
                      overwrite: bool) -> SweepResult:
    config = MergeConfiguration.model_validate(raw)
    base, models = split_kernel_models(config)
    check_output(Path(out_dir), "sweep")
    positions = {str(m): i for i, m in enumerate(models, start=1)}
    sources = {grid_point_name(p, positions): yaml.safe_dump(config_for_point(raw, p), sort_keys=False) for p in points}
    if len(sources) != len(points):
        raise DogeRMConfigError("the grid repeats a point")
    configs = {name: MergeConfiguration.model_validate(yaml.safe_load(text)) for name, text in sources.items()}
    for merged in configs.values():
        check_kernel_parameters(merged)  # every point's density in (0, 1], before anything is written
    plan = plan_merge(next(iter(configs.values())), options)
    out_dir = Path(out_dir).absolute()
    neutral_raw = copy.deepcopy(raw)
    for key in {k for p in points for k in p}:  # the swept values are the points', not the configuration's
        name, _, model = key.partition("[")
        holders = [neutral_raw] if not model else [e for e in neutral_raw["models"]
                                                    if str(ModelReference.model_validate(e["model"])) == model[:-1]]
        for holder in holders:
            (holder.get("parameters") or {}).pop(name, None)
    neutral = yaml.safe_dump(neutral_raw, sort_keys=True)
    settings = json.dumps(options.model_dump(include={*SETTINGS, "random_seed"}), sort_keys=True)
    roles = [("reward_model", plan.reward_model), *((f"model_{positions[str(m)]}", m) for m in models
                                                    if m != plan.reward_model),
             *([("pretrained", base)] if base is not None else [])]
    fresh = SweepManifest(
        reward_model=str(plan.reward_model),
        domain_model=", ".join(str(m) for m in plan.domain_models),
        inputs={role: input_record(m) for role, m in roles},
        config_sha256=hashlib.sha256((neutral + settings).encode()).hexdigest(),
        config=neutral,
        lambdas=[],
        domain_models=[str(m) for m in models],
        points=[dict(p) for p in points],
    )
    entries = {name: (configs[name], sources[name], point)
               for (name, point) in zip(sources, points)}
    random = KERNEL_METHODS[config.merge_method].random
    return _sweep(out_dir, fresh, entries, lambda point, files: CheckpointRecord(files=files, parameters=point),
                  plan, options, overwrite, "grid points", one_at_a_time=random)


def run_sweep(
    config_source: str,
    out_dir: Path,
    points: Sequence[Point | float | Sequence[float]],
    options: MergeOptions,
    overwrite: bool = False,
) -> SweepResult:
    """Write one checkpoint per point not already complete, reading each input tensor once.

    ``points`` (:data:`~dogerm_mergekit.contract.Point`): ``{"lambda": x}`` for a one-domain merge (written to
    ``out_dir/lambda-X.XX``), ``{"lambda[MODEL]": x, ...}`` for several domain models (``lambda-X.XX_Y.YY``, lambdas
    in ``models:`` order; a bare lambda or lambda vector is taken too, e.g. from :func:`grid_points`); for a
    ``dogerm_<kernel>`` configuration, parameter points from :func:`kernel_grid_points`
    (``out_dir/density-0.50_weight.2-0.70``). One pass over the inputs; one pass per point for the random kernels,
    each seeded as a single merge.
    """
    from dogerm_mergekit import register

    register()
    check_options(options)
    raw = yaml.safe_load(config_source)
    if isinstance(raw, dict) and is_kernel_method(str(raw.get("merge_method"))):
        if not all(isinstance(point, Mapping) for point in points):
            raise DogeRMConfigError("a dogerm_<kernel> sweep takes parameter points (kernel_grid_points), not lambdas")
        return _run_kernel_sweep(raw, out_dir, [dict(p) for p in points], options, overwrite)
    if not isinstance(raw, dict) or raw.get("merge_method") != DOGERM:
        raise DogeRMConfigError("the sweep configuration must be a dogerm mergekit config (merge_method: dogerm or "
                                "dogerm_<kernel>)")
    _, domains = split_models(MergeConfiguration.model_validate(raw))
    keys = [str(d) for d in domains]
    vectors = [lambda_vector(point, keys) for point in points]
    wrong = [p for p in vectors if len(p) != len(domains)]
    if wrong:
        raise DogeRMConfigError(f"{len(domains)} domain models but a lambda vector of {len(wrong[0])}: {wrong[0]}")
    check_output(Path(out_dir), "sweep")
    allow = bool((raw.get("parameters") or {}).get("allow_extrapolation", False))
    for point in vectors:
        check_lambdas(point, allow)
    sources = {p: source_for_lambdas(config_source, raw, dict(zip(keys, p))) for p in vectors}
    configs = {p: MergeConfiguration.model_validate(yaml.safe_load(text)) for p, text in sources.items()}
    plan = plan_merge(configs[vectors[0]], options)
    several = len(domains) > 1

    out_dir = Path(out_dir).absolute()
    neutral = yaml.safe_dump(config_for_lambdas(raw, None), sort_keys=True)
    settings = json.dumps(options.model_dump(include=set(SETTINGS)), sort_keys=True)
    roles = [("reward_model", plan.reward_model), ("domain_model", domains[0]),
             *((f"domain_model_{i}", d) for i, d in enumerate(domains[1:], start=2))]
    fresh = SweepManifest(
        reward_model=str(plan.reward_model),
        domain_model=str(plan.domain_model),
        inputs={role: input_record(m) for role, m in roles},
        config_sha256=hashlib.sha256((neutral + settings).encode()).hexdigest(),
        config=neutral,
        lambdas=sorted({math.fsum(p) for p in vectors}) if several else [p[0] for p in vectors],
        domain_models=keys if several else [],
        grid=[list(p) for p in vectors] if several else [],
    )

    def record_for(point: tuple[float, ...], files: dict[str, str]) -> CheckpointRecord:
        if not several:
            return CheckpointRecord(lam=point[0], files=files)
        return CheckpointRecord(lam=math.fsum(point), files=files, lambdas=dict(zip(keys, point)))

    entries = {grid_checkpoint_name(p): (configs[p], sources[p], p) for p in vectors}
    return _sweep(out_dir, fresh, entries, record_for, plan, options, overwrite, "lambdas")


def _sweep(out_dir: Path, fresh: SweepManifest, entries: dict[str, tuple[MergeConfiguration, str, Any]],
           record_for: Any, plan: Any, options: MergeOptions, overwrite: bool, what: str,
           one_at_a_time: bool = False) -> SweepResult:
    """Under the output lock: resume from the manifest, merge what is missing, record each checkpoint as it lands.

    ``entries``: checkpoint name -> (configuration, its YAML, the point ``record_for(point, digests)`` records).
    ``one_at_a_time``: one pass per checkpoint, each seeded as a single merge is (random kernels).
    """
    existed = out_dir.exists()
    with output_lock(out_dir):
        previous = load_manifest(out_dir)
        if previous is not None and (not same_inputs(previous.inputs, fresh.inputs)
                                     or previous.config_sha256 != fresh.config_sha256):
            if not overwrite:
                raise DogeRMConfigError(
                    f"{out_dir} holds a sweep of other inputs or another configuration; pass --overwrite to replace it"
                )
            for name in previous.checkpoints:
                shutil.rmtree(out_dir / name, ignore_errors=True)
            previous = None
        out_dir.mkdir(parents=True, exist_ok=True)
        for leftover in (MANIFEST, *entries, *(previous.checkpoints if previous else ())):  # of interrupted runs
            remove_leftovers(out_dir / leftover)
        union = lambda field: [*(getattr(previous, field) if previous else []),  # noqa: E731
                               *(x for x in getattr(fresh, field) if not previous or x not in getattr(previous, field))]
        manifest = fresh.model_copy(update={
            "checkpoints": dict(previous.checkpoints) if previous else {},
            "lambdas": sorted(set(fresh.lambdas) | set(previous.lambdas if previous else [])),
            "grid": union("grid"),
            "points": union("points"),
        })
        def stamped(name: str, digests: dict[str, str]) -> CheckpointRecord:
            record = record_for(entries[name][2], digests)
            return record.model_copy(update={"stats": file_stats(out_dir / name, list(digests))})

        for name in entries:
            if name not in manifest.checkpoints and (out_dir / name).is_dir():  # renamed, killed before recording
                files = {p.name: fast_digest_file(p) for p in sorted((out_dir / name).iterdir()) if p.is_file()}
                manifest.checkpoints[name] = stamped(name, files)
        done = set()
        for name in entries:
            folder = inside(out_dir, name, str(out_dir / MANIFEST))
            if name not in manifest.checkpoints or not folder.is_dir():
                continue
            record = manifest.checkpoints[name]
            change = checkpoint_change(folder, record)
            if change is None:  # the same bytes (hashed again where times changed: a copy): record today's times
                done.add(name)
                manifest.checkpoints[name] = record.model_copy(update={"stats": file_stats(folder, list(record.files))})
                continue
            LOG.warning("%s: merging %s again", change, name)
            del manifest.checkpoints[name]
            shutil.rmtree(folder)
        todo = [name for name in entries if name not in done]
        save_manifest(out_dir, manifest)
        if todo:
            def record(output: Output, digests: dict[str, str]) -> None:
                manifest.checkpoints[output.folder.name] = stamped(output.folder.name, digests)
                save_manifest(out_dir, manifest)

            outputs = [Output(entries[n][0], entries[n][1], out_dir / n) for n in todo]
            try:
                for batch in ([[o] for o in outputs] if one_at_a_time else [outputs]):
                    run_outputs(plan, batch, options, on_complete=record, desc=f"Merging {len(batch)} {what}")
            except BaseException:
                if not manifest.checkpoints:  # a first run that wrote nothing leaves nothing behind
                    (out_dir / MANIFEST).unlink(missing_ok=True)
                    if not existed and not any(out_dir.iterdir()):
                        out_dir.rmdir()
                raise
    return SweepResult(
        out_dir=out_dir,
        written=tuple(todo),
        skipped=tuple(name for name in entries if name in done),
        manifest=manifest,
    )
