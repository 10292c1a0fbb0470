"""``dogerm-eval search``: a good lambda in a few in-memory evaluations on a dev split, then one test evaluation.

The protocol, so that lambda is not chosen on the data it is reported on:

1. The benchmark's rows are split once into dev and test by a hash of (seed, row id): deterministic, recorded,
   disjoint (:func:`split_rows`).
2. lambda = 0 (the reward model alone) is always evaluated first: the reference of the constraint and the
   answer when nothing beats it; lambda = 1 next, since the bounded method below never evaluates a bound and
   curves that rise to the end of [0, 1] are common (the miniature world's peak is at 1).
3. scipy's bounded scalar minimisation (Brent's method: golden-section steps, parabolic ones where the curve
   allows) proposes the next lambdas in [0, 1], on the objective negated and penalised where the constraint
   fails, until ``max_evals`` evaluations are spent (then it is stopped). A DogeRM curve is one bump or flat
   in practice; Brent needs no gradient, spends few evaluations on a bump and, with ``xatol`` 0.05, does not
   chase differences finer than a 21-point grid resolves. A second peak it does not bracket can be missed.
4. The chosen lambda is the best dev objective among the points that meet the constraint, the smallest lambda
   among points whose objective ties within ``tie`` (a flat curve keeps the reward model); then it is evaluated
   once on test. Dev points carry bootstrap 95% intervals (rows resampled).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dogerm_eval.errors import BenchmarkError

LOG = logging.getLogger(__name__)
SEARCH_JSON = "search.json"
_CONSTRAINT = re.compile(
    r"^\s*(?P<metric>[\w./@-]+)\s*(?P<op>>=|<=)\s*(?:(?P<ref>value_at_lambda0)\s*(?:(?P<sign>[+-])\s*"
    r"(?P<offset>[\d.eE+-]+))?|(?P<value>[-+]?[\d.eE+-]+))\s*$"
)


@dataclass(frozen=True)
class Constraint:
    """``METRIC >= value_at_lambda0 - 0.02`` (relative to the reward model alone) or ``METRIC >= 0.9``."""

    metric: str
    op: str
    offset: float | None = None
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        if not match:
            raise BenchmarkError(
                f"--constraint {text!r}: write METRIC >= value_at_lambda0 - 0.02, or METRIC >= 0.9 (>= or <=)"
            )
        if match["ref"]:
            offset = float(match["offset"] or 0) * (-1 if match["sign"] == "-" else 1)
            return cls(match["metric"], match["op"], offset=offset)
        return cls(match["metric"], match["op"], value=float(match["value"]))

    def bound(self, reference: Mapping[str, float]) -> float:
        if self.value is not None:
            return self.value
        return reference[self.metric] + (self.offset or 0.0)

    def violation(self, metrics: Mapping[str, float], reference: Mapping[str, float]) -> float:
        """How far ``metrics`` miss the constraint (0 when met)."""
        if self.metric not in metrics:
            raise BenchmarkError(f"--constraint names {self.metric!r}, which the benchmark does not report; "
                                 f"choose one of {sorted(metrics)}")
        bound, value = self.bound(reference), metrics[self.metric]
        compare = operator.ge if self.op == ">=" else operator.le
        return 0.0 if compare(value, bound) or math.isclose(value, bound, abs_tol=1e-12) else abs(value - bound)


def split_rows(ids: Sequence[Any], dev_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (dev, test): a row is dev when sha256(seed, id) falls below ``dev_fraction``."""
    if not 0 < dev_fraction < 1:
        raise BenchmarkError(f"--dev-fraction {dev_fraction}: give a fraction strictly between 0 and 1")
    unit = np.array([int.from_bytes(hashlib.sha256(f"{seed}\0{i}".encode()).digest()[:8], "big") / 2**64 for i in ids])
    dev = unit < dev_fraction
    if dev.all() or not dev.any():
        raise BenchmarkError(f"--dev-fraction {dev_fraction} leaves no rows for dev or for test ({len(ids)} rows)")
    return dev, ~dev


@dataclass
class Evaluated:
    """One evaluated lambda: its dev metrics and their bootstrap 95% intervals."""

    lam: float
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    meets_constraint: bool = True


class _BudgetSpent(Exception):
    pass


def search(
    evaluate: Callable[[float], tuple[dict[str, float], dict[str, tuple[float, float]]]],
    objective: str,
    constraint: Constraint | None,
    max_evals: int,
    known: Mapping[float, Evaluated] | None = None,
    xatol: float = 0.05,
    tie: float = 1e-9,
) -> tuple[list[Evaluated], Evaluated, str | None]:
    """Evaluate lambda = 0, 1, then Brent's proposals, within ``max_evals`` evaluations; return (points, chosen, note).

    ``evaluate(lam)`` returns (metrics, intervals); ``known`` points (an earlier run's) are reused instead of
    evaluated (they still count as steps of the budget, so a rerun retraces the same search). ``note`` says why the reward model alone was chosen when no lambda meets the
    constraint.
    """
    from scipy.optimize import minimize_scalar

    if max_evals < 1:
        raise BenchmarkError("--max-evals must be at least 1 (lambda = 0 is always evaluated)")
    points: dict[float, Evaluated] = {}
    cache = dict(known or {})
    spent = 0

    def point(lam: float) -> Evaluated:
        nonlocal spent
        lam = round(float(lam), 4)
        if lam in points:
            return points[lam]
        if spent >= max_evals:
            raise _BudgetSpent
        spent += 1  # cached points count too: a rerun retraces the same steps without evaluating
        if lam not in cache:
            metrics, intervals = evaluate(lam)
            cache[lam] = Evaluated(lam, metrics, intervals)
        points[lam] = cache[lam]
        if objective not in points[lam].metrics:
            raise BenchmarkError(f"--objective {objective!r} is not a metric of this benchmark; "
                                 f"choose one of {sorted(points[lam].metrics)}")
        return points[lam]

    reference = point(0.0).metrics

    def loss(lam: float) -> float:
        found = point(lam)
        missed = constraint.violation(found.metrics, reference) if constraint else 0.0
        found.meets_constraint = missed == 0.0
        return -found.metrics[objective] + (1.0 + missed if missed else 0.0)

    try:
        loss(1.0)  # Brent's bounded method never evaluates a bound, and the best lambda is often 1 (or 0)
        minimize_scalar(loss, bounds=(0.0, 1.0), method="bounded", options={"xatol": xatol, "maxiter": 100})
    except _BudgetSpent:
        pass
    for found in points.values():
        found.meets_constraint = not constraint or constraint.violation(found.metrics, reference) == 0.0
    feasible = [p for p in points.values() if p.meets_constraint]
    note = None
    if not feasible:
        note = f"no evaluated lambda meets {constraint.metric} {constraint.op} {constraint.bound(reference):.4f}; " \
               "lambda = 0 (the reward model alone) is returned"
        chosen = points[0.0]
    else:
        best = max(p.metrics[objective] for p in feasible)
        chosen = min((p for p in feasible if p.metrics[objective] >= best - tie), key=lambda p: p.lam)
    return sorted(points.values(), key=lambda p: p.lam), chosen, note


def bootstrap_intervals(compute: Callable[[np.ndarray], dict[str, float]], rows: int, samples: int = 200,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of ``compute(row indices)`` over ``samples`` resamples of the rows."""
    generator = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        for name, value in compute(generator.integers(0, rows, rows)).items():
            draws.setdefault(name, []).append(value)
    return {name: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) for name, v in draws.items()
            if not all(math.isnan(x) for x in v)}


def write_search(output_dir: Path, record: Mapping[str, Any]) -> Path:
    """``OUT/search.json`` and ``OUT/search.png`` (the evaluated dev points against lambda)."""
    from matplotlib.figure import Figure

    from dogerm_mergekit.files import atomic_write

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / SEARCH_JSON
    atomic_write(path, json.dumps(record, indent=2, default=float))
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    points = record["points"]
    objective = record["settings"]["objective"]
    for name in sorted({objective, *([record["settings"]["constraint_metric"]] if record["settings"].get(
            "constraint_metric") else [])}):
        ys = [p["metrics"][name] for p in points]
        bounds = [p["intervals"].get(name, (y, y)) for p, y in zip(points, ys)]
        axes.errorbar([p["lam"] for p in points], ys, yerr=[[y - b[0] for y, b in zip(ys, bounds)],
                                                            [b[1] - y for y, b in zip(ys, bounds)]],
                      fmt="o", capsize=3, label=f"{name} (dev)")
    axes.axvline(record["chosen"]["lam"], linestyle="--", color="gray", label=f"chosen lambda {record['chosen']['lam']:g}")
    axes.set_xlabel("lambda")
    axes.set_xlim(-0.05, 1.05)
    axes.legend(fontsize=8)
    figure.savefig(output_dir / "search.png", dpi=120, bbox_inches="tight")
    return path


def record_of(points: Sequence[Evaluated], chosen: Evaluated, note: str | None, test: Mapping[str, float],
              settings: Mapping[str, Any]) -> dict[str, Any]:
    """What ``search.json`` holds."""
    return {"settings": dict(settings), "points": [asdict(p) for p in points], "chosen": asdict(chosen),
            "note": note, "test": dict(test)}


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class SplitEvaluator:
    """In-memory merges of one RM/domain pair scored on the dev or test rows of one benchmark.

    Built before any model is loaded where it can refuse; ``key`` fingerprints inputs, data, split and settings.
    """

    def __init__(self, reward_model: str, domain_model: str, benchmark: str, data: str | None,
                 subsets: Sequence[str] | None, dev_fraction: float, seed: int, scoring: Mapping[str, Any]):
        from dogerm_eval.benchmarks import prepare_task
        from dogerm_eval.options import scoring_settings

        self.task = prepare_task(benchmark, data, subsets)
        self.frame = self.task.table.frame.reset_index(drop=True)
        if any(len(p) != len(self.frame) for p in self.task.benchmark.passes(self.frame)):
            raise BenchmarkError(f"search scores one text per row and pass; {benchmark} has passes of other sizes: "
                                 "use a pairwise benchmark (pairwise, rewardbench)")
        self.masks = dict(zip(("dev", "test"), split_rows(self.frame["id"].tolist(), dev_fraction, seed)))
        self.seed = seed
        self.fmt, self.record = scoring_settings(dict(scoring))
        self._scoring = dict(scoring)
        self._reward_model, self._domain_model = reward_model, domain_model
        self._fingerprint_parts = (benchmark, self.task.table.dataset, self.task.table.revision, subsets,
                                   dev_fraction, seed, self.record)
        self._loaded: tuple[Any, Any] | None = None

    def load(self) -> None:
        """Read and align both models once, and build the scoring network (the reward model's)."""
        from dogerm_eval.models import locate_model, resolve_model
        from dogerm_eval.options import scorer_factory
        from dogerm_mergekit.inmemory import InMemoryMerger
        from dogerm_mergekit.sweep import input_fingerprint

        from mergekit.options import MergeOptions

        trust = bool(self._scoring.get("trust_remote_code"))
        self.reward = resolve_model(self._reward_model, trust)
        merger = InMemoryMerger(str(self.reward.path), str(locate_model(self._domain_model).path),
                                MergeOptions(quiet=True, trust_remote_code=trust))
        self._loaded = (merger, scorer_factory(self.fmt, self._scoring)(self.reward))
        self.domain_path = str(merger.plan.domain_model)
        self.key = _fingerprint([input_fingerprint(m) for m in (merger.plan.reward_model, merger.plan.domain_model)],
                                *self._fingerprint_parts)

    def _metrics(self, rows: Any, scores: np.ndarray) -> dict[str, float]:
        summary = self.task.benchmark.evaluate(rows, scores).summary()
        return {k: float(v) for k, v in self.task.benchmark.metrics(summary).items() if v is not None}

    def scores(self, lam: float, split: str) -> tuple[Any, np.ndarray]:
        """The rows of ``split`` ("dev" or "test") and their scores (passes concatenated) by the merge at ``lam``."""
        from dataclasses import replace

        from dogerm_mergekit.contract import checkpoint_name

        if self._loaded is None:
            self.load()
        merger, scorer = self._loaded
        # each lambda is a model of its own, whose scores the scorer keeps apart
        member = replace(self.reward, ref=f"{self.reward.ref}+{self._domain_model}@{checkpoint_name(lam)}",
                         revision=checkpoint_name(lam), content_key=f"merge:{self.key}:{lam!r}")
        scorer.load_weights(member, merger.state_dict(lam))
        rows = self.frame[self.masks[split]].reset_index(drop=True)
        scores = np.concatenate([np.asarray(scorer.score(p), dtype=np.float64) for p in self.task.benchmark.passes(rows)])
        LOG.info("lambda=%g: scored %d %s rows", lam, len(rows), split)
        return rows, scores

    def evaluate(self, lam: float, split: str, bootstrap: int = 200
                 ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
        """Metrics of the merge at ``lam`` on ``split`` and their intervals from ``bootstrap`` resamples (0: none)."""
        rows, scores = self.scores(lam, split)
        if not bootstrap:
            return self._metrics(rows, scores), {}
        by_pass = scores.reshape(-1, len(rows))

        def resampled(index: np.ndarray) -> dict[str, float]:
            return self._metrics(rows.iloc[index].reset_index(drop=True), by_pass[:, index].reshape(-1))

        return self._metrics(rows, scores), bootstrap_intervals(resampled, len(rows), bootstrap, seed=self.seed)


class PointStore:
    """``OUT/points.json``: the dev points and test metrics evaluated so far, under the evaluator's fingerprint of
    inputs, data, split and settings, so a rerun evaluates nothing twice."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self._saved = json.loads(path.read_text()) if path.is_file() else {}

    def dev_points(self) -> dict[float, Evaluated]:
        return {float(lam): Evaluated(**p) for lam, p in self._saved.get(self.key, {}).get("dev", {}).items()}

    def test_metrics(self, lam: float) -> dict[str, float] | None:
        return self._saved.get(self.key, {}).get("test", {}).get(str(lam))

    def save(self, points: Sequence[Evaluated], test: Mapping[float, Mapping[str, float]]) -> None:
        from dogerm_mergekit.files import atomic_write

        previous = self._saved.get(self.key, {})
        self._saved[self.key] = {"dev": {**previous.get("dev", {}), **{str(p.lam): asdict(p) for p in points}},
                                 "test": {**previous.get("test", {}), **{str(lam): dict(m) for lam, m in test.items()}}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self._saved, indent=2))


def test_chosen(evaluator: SplitEvaluator, store: PointStore, lam: float) -> dict[str, float]:
    """The chosen point's metrics on the test split (evaluated once: a rerun reads them from the store)."""
    return store.test_metrics(lam) or evaluator.evaluate(lam, "test")[0]


def publish(evaluator: SplitEvaluator, lam: float, write: Path, push_to_hub: str | None, trust_remote_code: bool) -> None:
    """Write the merge at ``lam`` as ``dogerm-sweep`` does into ``write`` (and push it as ``dogerm-push`` does)."""
    import yaml
    from mergekit.options import MergeOptions

    from dogerm_mergekit.contract import checkpoint_name
    from dogerm_mergekit.sweep import run_sweep

    config = yaml.safe_dump({"merge_method": "dogerm", "base_model": str(evaluator.reward.path),
                             "models": [{"model": evaluator.domain_path, "parameters": {"lambda": lam}}]})
    run_sweep(config, write, (lam,), MergeOptions(quiet=True, trust_remote_code=trust_remote_code))
    LOG.info("wrote %s", write / checkpoint_name(lam))
    if push_to_hub:
        from dogerm_mergekit.hub import push_sweep

        push_sweep(write, push_to_hub)


def _check_publishing(write: Path | None, push_to_hub: str | None) -> None:
    """Refuse a --write folder that cannot take the chosen checkpoint, or a --push-to-hub that is no repo id."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from dogerm_mergekit.errors import DogeRMError
    from dogerm_mergekit.validation import check_output

    try:
        if write is not None:
            check_output(write, "sweep")
        if push_to_hub:
            validate_repo_id(push_to_hub)
    except HFValidationError as exc:
        raise BenchmarkError(f"--push-to-hub {push_to_hub!r} is not a Hub repo id ({exc}); use ORG/NAME") from None
    except DogeRMError as exc:
        raise BenchmarkError(f"--write: {exc.message}") from None


def run_search(
    reward_model: str, domain_model: str, benchmark: str, data: str | None, subsets: Sequence[str] | None,
    objective: str, constraint: str | None, max_evals: int, dev_fraction: float, seed: int, output_dir: Path,
    scoring: Mapping[str, Any], write: Path | None = None, push_to_hub: str | None = None, bootstrap: int = 200,
) -> dict[str, Any]:
    """Search lambda for ``reward_model`` + ``domain_model`` on ``benchmark``'s dev split, evaluate the choice on
    test, report it (``search.json``, the plot) and, if asked, publish it: four steps, each its own function.

    Everything that can be refused is checked before a model is loaded; evaluated points are kept in a
    :class:`PointStore`, so a rerun reuses them.
    """
    rule = Constraint.parse(constraint) if constraint else None
    if push_to_hub and write is None:
        raise BenchmarkError("--push-to-hub publishes the --write checkpoint: give --write DIR too")
    _check_publishing(write, push_to_hub)  # before any scoring, not after the search
    evaluator = SplitEvaluator(reward_model, domain_model, benchmark, data, subsets, dev_fraction, seed, scoring)
    evaluator.load()
    store = PointStore(output_dir / "points.json", evaluator.key)
    known = store.dev_points()
    points, chosen, note = search(lambda lam: evaluator.evaluate(lam, "dev", bootstrap), objective, rule, max_evals,
                                  known)
    if note:
        LOG.warning("%s", note)
    test_metrics = test_chosen(evaluator, store, chosen.lam)
    store.save(points, {chosen.lam: test_metrics})
    task, dev, test = evaluator.task, evaluator.masks["dev"], evaluator.masks["test"]
    settings = {"reward_model": reward_model, "domain_model": domain_model, "benchmark": benchmark,
                "dataset": task.table.dataset, "dataset_revision": task.table.revision, "subsets": subsets,
                "objective": objective, "constraint": constraint, "constraint_metric": rule.metric if rule else None,
                "max_evals": max_evals, "evaluated": len([p for p in points if p.lam not in known]),
                "dev_fraction": dev_fraction, "seed": seed, "dev_rows": int(dev.sum()), "test_rows": int(test.sum()),
                "split": "dev when sha256(f'{seed}\\0{id}')[:8] / 2**64 < dev_fraction", "scoring": evaluator.record}
    result = record_of(points, chosen, note, test_metrics, settings)
    write_search(output_dir, result)
    if write is not None:
        publish(evaluator, chosen.lam, write, push_to_hub, bool(scoring.get("trust_remote_code")))
    return result


def command():
    """The ``dogerm-eval search`` click command (built on first use, so ``--help`` of the group stays fast)."""
    import click

    from dogerm_eval.options import TRUST_REMOTE_CODE, split_list
    from dogerm_mergekit.dtypes import RUN_DTYPES

    @click.command("search")
    @click.option("--rm", "reward_model", required=True, help="The reward model (folder or org/name[@revision]).")
    @click.option("--domain", "domain_model", required=True, help="The domain LM (folder or org/name[@revision]).")
    @click.option("--benchmark", required=True, help="A pairwise benchmark: pairwise, rewardbench, ...")
    @click.option("--data", help="The benchmark's data (required for pairwise; default: its Hub dataset).")
    @click.option("--subsets", help="Comma-separated subsets to keep.")
    @click.option("--objective", required=True, help="The metric to maximise, e.g. pairwise/arithmetic.")
    @click.option("--constraint", help='e.g. "pairwise/general >= value_at_lambda0 - 0.02" or "X >= 0.9".')
    @click.option("--max-evals", type=int, default=5, show_default=True, help="Dev evaluations, lambda = 0 included.")
    @click.option("--dev-fraction", type=float, default=0.5, show_default=True, help="Share of rows in the dev split.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the dev/test split.")
    @click.option("--bootstrap", type=click.IntRange(min=0), default=200, show_default=True,
                  help="Resamples for each dev point's 95% intervals (0: none; they cost more than scoring tiny models).")
    @click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
    @click.option("--write", type=click.Path(file_okay=False, path_type=Path),
                  help="Write the chosen checkpoint (as dogerm-sweep does) into this sweep folder.")
    @click.option("--push-to-hub", help="Publish the --write checkpoint to ORG/NAME as dogerm-push does.")
    @click.option("--system-prompt", help="System message ('llama2-default' = the default Llama-2 prompt).")
    @click.option("--dtype", type=click.Choice(["auto", *RUN_DTYPES]), default="auto",
                  show_default=True)
    @click.option("--device", help="torch device (default: the accelerator, else CPU).")
    @TRUST_REMOTE_CODE
    def search_command(subsets: str | None, system_prompt: str | None, dtype: str, device: str | None,
                       trust_remote_code: bool, **arguments: Any) -> None:
        """Find a good lambda in at most --max-evals in-memory evaluations on a dev split; report it on test."""
        from dogerm_eval.options import configure_logging, default_options

        configure_logging()
        scoring = default_options(system_prompt=system_prompt, dtype=dtype, device=device,
                                  trust_remote_code=trust_remote_code)
        result = run_search(subsets=split_list(subsets), scoring=scoring, **arguments)
        chosen = result["chosen"]
        objective = result["settings"]["objective"]
        click.echo(f"chosen lambda {chosen['lam']:g}: dev {objective} {chosen['metrics'][objective]:.4f}, "
                   f"test {objective} {result['test'].get(objective, float('nan')):.4f} "
                   f"({result['settings']['evaluated']} evaluations)")
        if result["note"]:
            click.echo(result["note"])

    return search_command
