"""In-memory merges of a search space scored on the dev or test rows of one benchmark, with bootstrap intervals.

The benchmark's rows are split once into dev and test by a hash of (seed, row id): deterministic, recorded,
disjoint (:func:`split_rows`). A point's merge is computed in memory (``dogerm``: the reward model and one fp32
difference per domain model held once, each point combined from them, per-tensor lambdas for depth schedules;
``dogerm_<kernel>``: mergekit's kernel on inputs read again per point) and loaded into one reward-model network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dogerm_eval import truncation
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.space import SearchSpace

LOG = logging.getLogger(__name__)
Metrics = dict[str, float]
Intervals = dict[str, tuple[float, float]]


def split_rows(ids: Sequence[Any], dev_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (dev, test): a row is dev when sha256(seed, id) falls below ``dev_fraction``."""
    if not 0 < dev_fraction < 1:
        raise BenchmarkError(f"--dev-fraction {dev_fraction}: give a fraction strictly between 0 and 1")
    unit = np.array([int.from_bytes(hashlib.sha256(f"{seed}\0{i}".encode()).digest()[:8], "big") / 2**64 for i in ids])
    dev = unit < dev_fraction
    if dev.all() or not dev.any():
        raise BenchmarkError(f"--dev-fraction {dev_fraction} leaves no rows for dev or for test ({len(ids)} rows)")
    return dev, ~dev


def _percentiles(draws: Mapping[str, list[float]]) -> Intervals:
    return {name: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) for name, v in draws.items()
            if not all(math.isnan(x) for x in v)}


def bootstrap_intervals(compute: Callable[[np.ndarray], Metrics], rows: int, samples: int = 200,
                        seed: int = 0) -> Intervals:
    """Percentile 95% intervals of ``compute(row indices)`` over ``samples`` resamples of the rows (any benchmark)."""
    generator = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        for name, value in compute(generator.integers(0, rows, rows)).items():
            draws.setdefault(name, []).append(value)
    return _percentiles(draws)


def bootstrap_pairs(correct: np.ndarray, subsets: Sequence[str], summarise: Callable[[dict[str, float], float], Metrics],
                    samples: int = 200, seed: int = 0) -> Intervals:
    """:func:`bootstrap_intervals` for pair accuracies, vectorised: the same resamples (same generator draws),
    each resample's per-subset and pooled accuracy computed at once with numpy (counts of each row in each
    resample times its correctness), then ``summarise(subset accuracies, pooled accuracy)`` gives its metrics."""
    rows = len(correct)
    index = np.random.default_rng(seed).integers(0, rows, (samples, rows))
    counts = np.bincount((index + rows * np.arange(samples)[:, None]).ravel(), minlength=samples * rows)
    counts = counts.reshape(samples, rows).astype(np.float64)
    names, codes = np.unique(np.asarray(subsets, dtype=str), return_inverse=True)
    member = np.zeros((rows, len(names)))
    member[np.arange(rows), codes] = 1.0
    totals = counts @ member
    hits = counts @ (member * correct[:, None])
    pooled = counts @ correct.astype(np.float64) / rows
    draws: dict[str, list[float]] = {}
    for b in range(samples):
        accuracy = {str(name): hits[b, s] / totals[b, s] for s, name in enumerate(names) if totals[b, s]}
        for name, value in summarise(accuracy, float(pooled[b])).items():
            draws.setdefault(name, []).append(value)
    return _percentiles(draws)


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class SplitEvaluator:
    """Merges of ``space`` scored on the dev or test rows of one benchmark.

    Built before any model is read, where it can refuse; :meth:`load` reads the models; ``key`` fingerprints
    inputs, data, split and settings.
    """

    def __init__(self, space: SearchSpace, benchmark: str, data: str | None, subsets: Sequence[str] | None,
                 dev_fraction: float, seed: int, scoring: Mapping[str, Any]):
        from dogerm_eval.benchmarks import prepare_task
        from dogerm_eval.options import scoring_settings

        self.space = space
        self.task = prepare_task(benchmark, data, subsets)
        self.frame = self.task.table.frame.reset_index(drop=True)
        if any(len(p) != len(self.frame) for p in self.task.benchmark.passes(self.frame)):
            raise BenchmarkError(f"search scores one text per row and pass; {benchmark} has passes of other sizes: "
                                 "use a pairwise benchmark (pairwise, rewardbench)")
        self.masks = dict(zip(("dev", "test"), split_rows(self.frame["id"].tolist(), dev_fraction, seed)))
        self.seed = seed
        self.fmt, self.record = scoring_settings(dict(scoring))
        self._scoring = dict(scoring)
        self._fingerprint_parts = (benchmark, self.task.table.dataset, self.task.table.revision, subsets,
                                   dev_fraction, seed, self.record)
        self._loaded: tuple[Callable[[dict[str, Any] | None], dict[str, Any]], Any] | None = None
        #: Per split, the texts cut to the scoring length (:mod:`dogerm_eval.truncation`).
        self.truncated: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        """Locate every model, read what the merges share once, and build the scoring network (the reward model's)."""
        from mergekit.config import MergeConfiguration
        from mergekit.options import MergeOptions

        from dogerm_eval.models import locate_model, resolve_model
        from dogerm_eval.options import scorer_factory
        from dogerm_mergekit.architecture import plan_merge
        from dogerm_mergekit.sweep import input_fingerprint

        trust = bool(self._scoring.get("trust_remote_code"))
        options = MergeOptions(quiet=True, trust_remote_code=trust)
        template = self.space.template
        names = [template["base_model"], *(e["model"] for e in template["models"])] if template.get("base_model") \
            else [e["model"] for e in template["models"]]
        self.paths = {str(n): str(locate_model(str(n)).path) for n in dict.fromkeys(map(str, names))}
        lowest = self.space.point({p.key: p.low for p in self.space.parameters})
        plan = plan_merge(MergeConfiguration.model_validate(self.resolved(self.space.config(lowest))), options)
        rm_name = next(name for name, path in self.paths.items() if path == str(plan.reward_model.model.path))
        self.reward = resolve_model(rm_name, trust)
        merge = self._dogerm_merges(plan, options) if self.space.is_dogerm else self._kernel_merges(plan, options)
        self._loaded = (merge, scorer_factory(self.fmt, self._scoring)(self.reward))
        self.key = fingerprint([input_fingerprint(m) for m in (plan.reward_model, *plan.domain_models)],
                                *self._fingerprint_parts)

    def resolved(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with every model named by its located local folder (what mergekit reads)."""
        def local(name: Any) -> Any:
            return self.paths.get(str(name), name)

        return {**config, **({"base_model": local(config["base_model"])} if config.get("base_model") else {}),
                "models": [{**e, "model": local(e["model"])} for e in config["models"]]}

    def _dogerm_merges(self, plan: Any, options: Any) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
        from mergekit.config import MergeConfiguration

        from dogerm_mergekit.inmemory import InMemoryMerger

        merger = InMemoryMerger(str(plan.reward_model.model.path), [str(d.model.path) for d in plan.domain_models],
                                options)
        zero = [0.0] * len(plan.domain_models)

        def merge(point: dict[str, Any] | None) -> dict[str, Any]:
            if point is None:
                return merger.state_dict(zero)
            config = MergeConfiguration.model_validate(self.resolved(self.space.config(point)))
            return merger.state_dict(config)

        return merge

    def _kernel_merges(self, plan: Any, options: Any) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
        from mergekit.config import MergeConfiguration

        from dogerm_mergekit.inmemory import merged_state_dict

        alone = MergeConfiguration.model_validate({
            "merge_method": "dogerm", "base_model": str(plan.reward_model.model.path),
            "models": [{"model": str(plan.domain_models[0].model.path), "parameters": {"lambda": 0.0}}]})

        def merge(point: dict[str, Any] | None) -> dict[str, Any]:
            if point is None:  # the reward model alone (a dogerm merge at lambda 0 equals it bit for bit)
                return merged_state_dict(alone, options)
            return merged_state_dict(MergeConfiguration.model_validate(self.resolved(self.space.config(point))),
                                     options)

        return merge

    def merged(self, point: dict[str, float] | None) -> dict[str, Any]:
        """The merged tensors at ``point`` (``None``: the reward model alone), as mergekit-yaml would write them."""
        if self._loaded is None:
            self.load()
        return self._loaded[0](point)

    def scores(self, point: dict[str, float] | None, split: str) -> tuple[Any, np.ndarray]:
        """The rows of ``split`` ("dev" or "test") and their scores (passes concatenated) by the merge at ``point``
        (``None``: the reward model alone)."""
        from dataclasses import replace

        state = self.merged(point)
        scorer = self._loaded[1]
        label = "reward model alone" if point is None else json.dumps(point, sort_keys=True)
        # each point is a model of its own, whose scores the scorer keeps apart
        member = replace(self.reward, ref=f"{self.reward.ref}+search@{label}", revision=label,
                         content_key=f"merge:{self.key}:{label}")
        scorer.load_weights(member, state)
        rows = self.frame[self.masks[split]].reset_index(drop=True)
        passes = self.task.benchmark.passes(rows)
        scores = np.concatenate([np.asarray(scorer.score(p), dtype=np.float64) for p in passes])
        LOG.info("%s: scored %d %s rows", label, len(rows), split)
        if split not in self.truncated and hasattr(scorer, "truncated"):  # every point scores the same texts
            cut = scorer.truncated(scorer.format_texts([pair for p in passes for pair in p]))
            entry = self.truncated[split] = truncation.record(cut, scorer.max_length, scorer.tokenizer.truncation_side)
            if cut.any():
                LOG.warning("%s %s split: %s", self.task.benchmark.NAME, split, truncation.describe(entry))
        return rows, scores

    def metric_names(self) -> set[str]:
        """The metrics the dev split reports, found by scoring it with stand-in zeros (no model is loaded)."""
        rows = self.frame[self.masks["dev"]].reset_index(drop=True)
        return set(self.metrics(rows, np.zeros(len(rows) * len(self.task.benchmark.passes(rows)))))

    def metrics(self, rows: Any, scores: np.ndarray) -> Metrics:
        summary = self.task.benchmark.evaluate(rows, scores).summary()
        return {k: float(v) for k, v in self.task.benchmark.metrics(summary).items() if v is not None}

    def evaluate(self, point: dict[str, float] | None, split: str, bootstrap: int = 200,
                 derive: Callable[[Metrics], Metrics] = dict) -> tuple[Metrics, Intervals]:
        """Metrics of the merge at ``point`` on ``split`` (``derive`` adds derived ones, e.g. a combined objective)
        and their intervals from ``bootstrap`` resamples (0: none)."""
        rows, scores = self.scores(point, split)
        metrics = derive(self.metrics(rows, scores))
        if not bootstrap:
            return metrics, {}
        strict = derive

        def derive(resampled: Metrics) -> Metrics:  # a resample may miss a subset, hence a metric: no draw of it
            try:
                return strict(resampled)
            except BenchmarkError:
                return resampled

        benchmark = self.task.benchmark
        if hasattr(benchmark, "summary_of"):  # pair accuracies: vectorised
            chosen, rejected = scores[:len(rows)], scores[len(rows):]
            return metrics, bootstrap_pairs(chosen > rejected, rows["subset"].astype(str).tolist(),
                                            lambda acc, pooled: derive(benchmark.metrics(benchmark.summary_of(acc, pooled))),
                                            bootstrap, seed=self.seed)
        by_pass = scores.reshape(-1, len(rows))

        def resampled(index: np.ndarray) -> Metrics:
            return derive(self.metrics(rows.iloc[index].reset_index(drop=True), by_pass[:, index].reshape(-1)))

        return metrics, bootstrap_intervals(resampled, len(rows), bootstrap, seed=self.seed)
