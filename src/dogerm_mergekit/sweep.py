"""A lambda sweep in one pass: every input tensor is read once and merged into K checkpoints.

One mergekit task graph holds the K merges; their load tasks are equal and so shared, and mergekit's scheduler
orders tasks by tensor name, so each input tensor is loaded, merged K times, written K times and dropped.
Each checkpoint is written by :class:`~dogerm_mergekit.writer.StreamingTensorWriter` (no shard buffering),
finished like a ``mergekit-yaml`` output, and renamed into ``OUT/lambda-X.XX`` when complete.
``OUT/sweep.json`` records inputs, lambdas and each finished checkpoint's file hashes; a rerun finishes only
what is missing and refuses changed inputs or configuration unless asked to overwrite.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mergekit.merge as mergekit_merge
import yaml
from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration
from mergekit.graph import Executor
from mergekit.io.tasks import FinalizeModel, LoaderCache, SaveTensor
from mergekit.options import MergeOptions
from mergekit.plan import MergePlanner
from mergekit.tokenizer import BuildTokenizer, TokenizerInfo
from pydantic import BaseModel

from dogerm_mergekit.architecture import DogeRMPlan, plan_merge
from dogerm_mergekit.atomic import TEMP_MARK
from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit.merge import finish_checkpoint, prepared_config
from dogerm_mergekit.method import check_lambda
from dogerm_mergekit.validation import split_models
from dogerm_mergekit.writer import DIGESTS_SUFFIX, StreamingWriterTask, TensorLayout

LOG = logging.getLogger(__name__)
MANIFEST = "sweep.json"


def parse_lambdas(spec: str) -> tuple[float, ...]:
    """``0:1:0.05`` (start:stop:step, stop included) or a comma list ``0,0.1,0.25``."""
    try:
        if ":" in spec:
            start, stop, step = (float(part) for part in spec.split(":"))
            if step <= 0:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            values = tuple(round(start + i * step, 10) for i in range(count) if start + i * step <= stop + 1e-9)
        else:
            values = tuple(float(part) for part in spec.split(","))
    except ValueError:
        raise DogeRMConfigError(f"--lambdas {spec!r}: use start:stop:step (e.g. 0:1:0.05) or a list (0,0.1,0.3)")
    if not values or len(set(map(checkpoint_name, values))) != len(values):
        raise DogeRMConfigError(f"--lambdas {spec!r} gives no lambdas or repeats one")
    return values


def checkpoint_name(lam: float) -> str:
    """Folder and branch name: ``lambda-0.30`` (more digits only where two decimals would round)."""
    text = f"{lam:.2f}"
    return f"lambda-{text if float(text) == lam else repr(lam)}"


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


class CheckpointRecord(BaseModel):
    lam: float
    files: dict[str, str]


class SweepManifest(BaseModel):
    """``sweep.json``: what was merged, with which settings, and which checkpoints are complete."""

    reward_model: str
    domain_model: str
    inputs: dict[str, dict[str, Any]]
    config_sha256: str
    config: str
    lambdas: list[float]
    checkpoints: dict[str, CheckpointRecord] = {}


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    manifest: SweepManifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def input_fingerprint(model: ModelReference) -> dict[str, Any]:
    """Where mergekit reads ``model`` from, its revision, and each file's size and modification time."""
    folder = Path(LoaderCache().get(model).index.base_path)
    files = {
        str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }
    return {"path": str(folder), "revision": model.model.revision, "files": files}


def _graph_for(
    config: MergeConfiguration, plan: DogeRMPlan, folder: Path, options: MergeOptions
) -> list[Any]:
    """mergekit's plan for one lambda, with the streaming writer in place of the buffering one."""
    planner = MergePlanner(
        config,
        plan.architecture,
        options=options,
        out_model_config=mergekit_merge._model_out_config(config, plan.architecture, options.trust_remote_code),
    )
    tasks = planner.plan_to_disk(out_path=str(folder))
    tokenizer = next((t for t in tasks if isinstance(t, BuildTokenizer)), None)
    layout = tuple(
        TensorLayout(name, config.out_dtype, plan.shapes[name], plan.vocabulary_axes.get(name))
        for name in sorted(t.tensor_name for t in tasks if isinstance(t, SaveTensor))
    )
    writer = StreamingWriterTask(
        out_path=str(folder),
        max_shard_size=options.out_shard_size,
        layout=layout,
        tokenizer_task=tokenizer,
        pad_to_multiple_of=config.tokenizer.pad_to_multiple_of if config.tokenizer else None,
    )
    saves = tuple(t.model_copy(update={"writer_task": writer}) for t in tasks if isinstance(t, SaveTensor))
    return [*saves, FinalizeModel(tensor_save_tasks=saves, writer_task=writer), *([tokenizer] if tokenizer else [])]


def _write_config_and_tokenizer(
    config: MergeConfiguration, plan: DogeRMPlan, folder: Path, tokenizer: TokenizerInfo | None, options: MergeOptions
) -> None:
    """What ``mergekit.merge.run_merge`` writes after the tensors, through mergekit's own helpers."""
    out_config = mergekit_merge._model_out_config(config, plan.architecture, options.trust_remote_code)
    if tokenizer is not None:
        pad = config.tokenizer.pad_to_multiple_of if config.tokenizer else None
        mergekit_merge._update_config_vocab(out_config, plan.architecture, tokenizer.tokenizer, pad)
    out_config.save_pretrained(str(folder))
    if tokenizer is not None:
        mergekit_merge._set_chat_template(tokenizer.tokenizer, config)
        tokenizer.tokenizer.save_pretrained(str(folder), safe_serialization=True)
    elif options.copy_tokenizer:
        try:
            mergekit_merge._copy_tokenizer(config, str(folder), options)
        except Exception as error:  # as mergekit-yaml does: the weights are still a valid checkpoint
            LOG.error("could not copy the tokenizer to %s: %s", folder, error)


def load_manifest(out_dir: Path) -> SweepManifest | None:
    """The sweep's ``sweep.json``, or None where there is none."""
    path = out_dir / MANIFEST
    return SweepManifest.model_validate_json(path.read_text()) if path.exists() else None


def _save_manifest(out_dir: Path, manifest: SweepManifest) -> None:
    temporary = out_dir / f".{MANIFEST}{TEMP_MARK}"
    temporary.write_text(manifest.model_dump_json(indent=2))
    os.replace(temporary, out_dir / MANIFEST)


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
    raw = yaml.safe_load(config_source)
    if not isinstance(raw, dict) or raw.get("merge_method") != "dogerm":
        raise DogeRMConfigError("the sweep configuration must be a dogerm mergekit config (merge_method: dogerm)")
    _, domain = split_models(MergeConfiguration.model_validate(raw))
    sources = {lam: yaml.safe_dump(config_for_lambda(raw, str(domain), lam), sort_keys=False) for lam in lambdas}
    configs = {lam: MergeConfiguration.model_validate(yaml.safe_load(text)) for lam, text in sources.items()}
    plan = plan_merge(configs[lambdas[0]], options)
    allow = bool((raw.get("parameters") or {}).get("allow_extrapolation", False))
    for lam in lambdas:
        check_lambda(lam, allow)

    out_dir = Path(out_dir).absolute()
    neutral = yaml.safe_dump(config_for_lambda(raw, str(domain), None), sort_keys=True)
    settings = json.dumps(options.model_dump(include={"out_shard_size", "safe_serialization"}), sort_keys=True)
    fresh = SweepManifest(
        reward_model=str(plan.reward_model),
        domain_model=str(plan.domain_model),
        inputs={role: input_fingerprint(m) for role, m in (("reward_model", plan.reward_model), ("domain_model", domain))},
        config_sha256=hashlib.sha256((neutral + settings).encode()).hexdigest(),
        config=neutral,
        lambdas=list(lambdas),
    )
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
    for stale in out_dir.glob(f".lambda-*{TEMP_MARK}*"):  # left by an interrupted run
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    manifest = fresh.model_copy(
        update={
            "checkpoints": dict(previous.checkpoints) if previous else {},
            "lambdas": sorted(set(lambdas) | set(previous.lambdas if previous else [])),
        }
    )
    done = {name for name in manifest.checkpoints if (out_dir / name).is_dir()}
    for name in {checkpoint_name(lam) for lam in lambdas} - done:
        if (out_dir / name).is_dir():  # renamed into place, killed before the manifest was saved
            manifest.checkpoints[name] = CheckpointRecord(lam=_lambda_of(name, lambdas), files=_file_hashes(out_dir / name))
            done.add(name)
    todo = [lam for lam in lambdas if checkpoint_name(lam) not in done]
    _save_manifest(out_dir, manifest)
    if todo:
        _merge_all(todo, configs, sources, plan, out_dir, options, manifest)
    return SweepResult(
        out_dir=out_dir,
        written=tuple(checkpoint_name(lam) for lam in todo),
        skipped=tuple(checkpoint_name(lam) for lam in lambdas if lam not in todo),
        manifest=manifest,
    )


def _lambda_of(name: str, lambdas: Sequence[float]) -> float:
    return next(lam for lam in lambdas if checkpoint_name(lam) == name)


def _file_hashes(folder: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    known = known or {}
    return {p.name: known.get(p.name) or _sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _merge_all(
    lambdas: Sequence[float],
    configs: dict[float, MergeConfiguration],
    sources: dict[float, str],
    plan: DogeRMPlan,
    out_dir: Path,
    options: MergeOptions,
    manifest: SweepManifest,
) -> None:
    folders = {lam: out_dir / f".{checkpoint_name(lam)}{TEMP_MARK}{os.getpid()}" for lam in lambdas}
    prepared = {lam: prepared_config(configs[lam], plan) for lam in lambdas}
    try:
        targets = []
        for lam in lambdas:
            folders[lam].mkdir()
            targets.extend(_graph_for(prepared[lam], plan, folders[lam], options))
        executor = Executor(targets=targets, math_device=options.device, storage_device="cpu")
        tokenizer = None
        for _task, value in executor.run(quiet=options.quiet, desc=f"Merging {len(lambdas)} lambdas"):
            if isinstance(value, TokenizerInfo):
                tokenizer = value
        for lam in lambdas:
            name = checkpoint_name(lam)
            _write_config_and_tokenizer(prepared[lam], plan, folders[lam], tokenizer, options)
            finish_checkpoint(configs[lam], plan, folders[lam], options, sources[lam])
            digests = Path(str(folders[lam]) + DIGESTS_SUFFIX)
            known = json.loads(digests.read_text())
            os.replace(folders[lam], out_dir / name)
            digests.unlink()
            manifest.checkpoints[name] = CheckpointRecord(lam=lam, files=_file_hashes(out_dir / name, known))
            _save_manifest(out_dir, manifest)
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
            Path(str(folder) + DIGESTS_SUFFIX).unlink(missing_ok=True)
