"""The registered benchmarks' modules and the loop that scores one model on them, with caching and resumable
checkpoints.

Which benchmarks exist is :mod:`dogerm_eval.registry`'s (import-light, for the command line). Each benchmark module
provides `NAME`, `load(data, subsets) -> LoadedTable` (schema checked, subsets selected),
`passes(frame) -> list[list[(prompt, response)]]` (scoring passes, e.g. chosen then rejected),
`evaluate(frame, scores) -> Evaluation` and
`metrics(result_json) -> dict[str, float]` (its flat `<benchmark>/<metric>` numbers, stored in every result JSON
under `metrics`, which the sweep report and `--push-results` read). Other benchmarks (Best-of-N) plug into
`run_task` with any object offering the same attributes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dogerm_eval import nonfinite, truncation
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.models import ResolvedModel
from dogerm_eval.registry import ENTRIES
from dogerm_eval.results import (
    DEFAULT_CHUNK_SIZE,
    DIGEST_MEMO,
    cache_key,
    check_replaceable,
    checkpoint_dir,
    load_cached_result,
    model_fingerprint,
    prepare_checkpoints,
    result_path,
    score_in_chunks,
    write_result,
)
from dogerm_eval.scorer import process_state
from dogerm_eval.task import Benchmark, Scorer, Task
from dogerm_mergekit.files import output_lock

LOG = logging.getLogger(__name__)


BENCHMARKS: dict[str, Benchmark] = {entry.name: entry.load() for entry in ENTRIES}


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark `name`; BenchmarkError when unknown."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def prepare_task(name: str, data: str | None, subsets: Sequence[str] | None) -> Task:
    """Resolve `name`, load and validate its data (all errors raised here, before scoring)."""
    benchmark = get_benchmark(name)
    return Task(benchmark, benchmark.load(data, subsets), tuple(subsets) if subsets else None)


def task_settings(benchmark: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings one benchmark is scored with: under ``compat: rewardbench`` without an explicit
    ``--truncation-side``, the truncation side rewardbench's own script uses for it (the benchmark module's
    ``REWARDBENCH_TRUNCATION``: run_rm.py cuts on the left, run_v2.py keeps the tokenizer's saved side)."""
    side = getattr(benchmark, "REWARDBENCH_TRUNCATION", None)
    if settings.get("compat") != "rewardbench" or settings.get("truncation") != "default" or side is None:
        return dict(settings)
    return {**settings, "format": {**settings.get("format", {}), "truncation_side": side}}


def configure_scorer(scorer: Any, settings: dict[str, Any]) -> None:
    """Make ``scorer`` truncate as ``settings`` (from ``task_settings``) say, when it can be told."""
    side = settings.get("format", {}).get("truncation_side")
    if side is not None and hasattr(scorer, "set_truncation_side"):
        scorer.set_truncation_side(side)


def _covers(task: Task, settings: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """What a result of `task` under `settings` covers besides the model (its data, revision and the settings that
    enter the cache key), and whether non-finite scores are allowed."""
    settings, allow_nonfinite = nonfinite.split_policy(settings)
    settings = task_settings(task.benchmark, dict(settings))  # --compat rewardbench: the script's truncation side
    return {"dataset": task.table.dataset, "dataset_revision": task.table.revision, "settings": settings}, \
        allow_nonfinite


def check_outputs(tasks: Sequence[Task], models: Sequence[ResolvedModel], settings: Mapping[str, Any],
                  output_dir: Path, overwrite: bool = False) -> None:
    """Refuse, before any model is scored, a run that would replace a stored result on other data or settings
    (``results.check_replaceable``), for every model and task."""
    for model in models:
        for task in tasks:
            path = result_path(output_dir, model, task.benchmark.NAME, task.subsets)
            check_replaceable(path, _covers(task, settings)[0], overwrite)


def truncated(scorer: Any, task: Task, passes: Sequence[Sequence[Any]], what: str) -> dict[str, Any] | None:
    """The result's ``truncated_texts`` (:mod:`dogerm_eval.truncation`) for a scorer that cuts texts to a length (a
    ``RewardScorer``), with a one-line warning when any was cut; None for other scorers."""
    if not hasattr(scorer, "truncated"):
        return None
    cut = scorer.truncated(scorer.format_texts([pair for conversations in passes for pair in conversations]))
    side = scorer.tokenizer.truncation_side
    if not cut.any():
        return truncation.record(cut, scorer.max_length, side)
    per_example = task.benchmark.evaluate(task.table.frame, np.where(cut, np.nan, 0.0)).per_example
    entry = truncation.record(cut, scorer.max_length, side, per_example)
    LOG.warning("%s: %s, longer than the model's window or --max-length (--truncation-side says which end is cut)",
                what, truncation.describe(entry))
    return entry


def run_task(
    task: Task,
    model: ResolvedModel,
    model_fp: str,
    settings: Mapping[str, Any],
    make_scorer: Callable[[], Scorer],
    output_dir: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score `model` on `task` and write its result; reuse a result with the same cache key; resume checkpoints.

    `settings` (everything that changes scores: formatting, dtype, batching, compat) is part of the cache key, except
    the non-finite policy (`dogerm_eval.nonfinite`: NaN/inf scores are refused before anything is written unless
    allowed, and then marked); `make_scorer` is called only when scoring is needed. The result goes to
    `OUT/<slug>/<benchmark>[@<subsets>].json`; one there on other data or settings is replaced only with `overwrite`.
    """
    name = task.benchmark.NAME
    state = process_state()
    covers, allow_nonfinite = _covers(task, settings)
    settings = covers["settings"]
    key = cache_key(model_fp, name, task.table.dataset, task.table.revision, task.subsets, settings)
    # two runs scoring the same model on the same benchmark into one OUT would interleave their checkpoints
    lock = output_lock(Path(output_dir) / ".locks" / f"{model.slug}--{name}") if state.is_main_process \
        else contextlib.nullcontext()
    with lock:
        path = result_path(output_dir, model, name, task.subsets)
        cached = load_cached_result(output_dir, model, name, key, task.subsets)
        if cached is not None:
            nonfinite.check_cached(cached, model.ref, allow_nonfinite)
            LOG.info("%s %s: reusing cached result (key %s)", model.slug, name, key[:12])
            return cached
        check_replaceable(path, covers, overwrite)
        scorer = make_scorer()
        configure_scorer(scorer, settings)
        passes = task.benchmark.passes(task.table.frame)
        chunks = checkpoint_dir(output_dir, model, name, key)
        if state.is_main_process:
            prepare_checkpoints(chunks, passes, chunk_size, scorer)
        state.wait_for_everyone()
        scores = score_in_chunks(
            scorer, passes, chunks, chunk_size, write=state.is_main_process,
            progress=lambda done, total: LOG.info("%s %s: scored %d/%d", model.slug, name, done, total),
        )
        state.wait_for_everyone()  # every process has read the chunks it reuses
        counts = nonfinite.count(scores)
        if counts["total"] and not allow_nonfinite:
            raise nonfinite.refusal(model.ref, name, counts)  # the checkpoints stay: a rerun with the option reuses them
        evaluation = task.benchmark.evaluate(task.table.frame, nonfinite.neutralise(scores))
        cut = truncated(scorer, task, passes, f"{model.slug} {name}")
        payload = {
            "benchmark": name,
            "dataset": task.table.dataset,
            "dataset_revision": task.table.revision,
            "settings": {**settings, "scorer": scorer.settings_record()},
            **evaluation.summary(),
            nonfinite.POLICY_KEY: nonfinite.record(counts, evaluation.per_example, allow_nonfinite),
            **({truncation.KEY: cut} if cut is not None else {}),
            "cache_key": key,
        }
        payload["metrics"] = task.benchmark.metrics(payload)
        if state.is_main_process:
            write_result(output_dir, model, name, payload, evaluation.per_example, task.subsets)
            shutil.rmtree(chunks)
            if not any(chunks.parent.iterdir()):
                chunks.parent.rmdir()
            LOG.info("%s %s: score %.4f%s%s -> %s", model.slug, name, evaluation.score, nonfinite.note(payload),
                     truncation.note(payload), path)
        state.wait_for_everyone()
        return json.loads(path.read_text(encoding="utf-8"))


def run_model(
    tasks: Sequence[Task],
    model: ResolvedModel,
    settings: Mapping[str, Any],
    make_scorer: Callable[[ResolvedModel], Scorer],
    output_dir: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run every task on one model (the scorer is built at most once); return benchmark name -> result JSON.
    Every task's output is checked (``check_outputs``) before the first is scored."""
    check_outputs(tasks, [model], settings, output_dir, overwrite)
    model_fp = model_fingerprint(model, Path(output_dir) / DIGEST_MEMO)
    scorer: list[Scorer] = []

    def lazy_scorer() -> Scorer:
        if not scorer:
            scorer.append(make_scorer(model))
        return scorer[0]

    return {
        task.benchmark.NAME: run_task(task, model, model_fp, settings, lazy_scorer, output_dir, chunk_size, overwrite)
        for task in tasks
    }
