"""``dogerm-eval search``: good merge parameters in a few in-memory evaluations on a dev split, then one test
evaluation.

The protocol, so that nothing is chosen on the data it is reported on:

1. The benchmark's rows are split once into dev and test (:func:`~dogerm_eval.split_eval.split_rows`).
2. The reward model alone (lambda = 0) is evaluated first: the constraint's reference and the answer when no
   point meets the constraint.
3. Points are proposed within ``--max-evals`` evaluations (the reward model alone included): one lambda by
   Brent's method (:mod:`~dogerm_eval.line_search`, the default for one domain model), anything else (several
   domain models' lambdas, depth schedules, a kernel's parameters) by an optuna sampler in a resumable study that
   several workers can share (:mod:`~dogerm_eval.study`).
4. The chosen point is the best dev objective among the points meeting the constraint, the one nearest the
   reward model among ties (:func:`~dogerm_eval.criteria.choose`); it is evaluated once on test. Dev points carry
   bootstrap 95% intervals (rows resampled).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dogerm_eval.criteria import Constraint, Evaluated, Objective, check_metrics, choose
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.space import SearchSpace, dogerm_source, parse_space
from dogerm_eval.split_eval import SplitEvaluator

LOG = logging.getLogger(__name__)
SEARCH_JSON = "search.json"
CHOSEN_YML = "chosen.yml"
SAMPLER_CHOICES = ("auto", "brent", "gp", "tpe", "cmaes", "random")


class PointStore:
    """``OUT/points.json`` (Brent's searches): the dev points and test metrics evaluated so far, under the
    evaluator's fingerprint of inputs, data, split and settings, so a rerun evaluates nothing twice."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self._saved = json.loads(path.read_text()) if path.is_file() else {}

    def dev_points(self) -> dict[float, Evaluated]:
        return {float(lam): Evaluated(**p) for lam, p in self._saved.get(self.key, {}).get("dev", {}).items()
                if "params" in p}

    def test_metrics(self, lam: float) -> dict[str, float] | None:
        return self._saved.get(self.key, {}).get("test", {}).get(str(lam))

    def save(self, points: Sequence[Evaluated], test: Mapping[float, Mapping[str, float]]) -> None:
        from dogerm_mergekit.files import atomic_write

        previous = self._saved.get(self.key, {})
        self._saved[self.key] = {
            "dev": {**previous.get("dev", {}), **{str(p.params["lambda"]): asdict(p) for p in points}},
            "test": {**previous.get("test", {}), **{str(lam): dict(m) for lam, m in test.items()}}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self._saved, indent=2))


@dataclass(frozen=True)
class DevEvaluator:
    """A picklable ``make_evaluate`` for study workers: each builds and loads its own :class:`SplitEvaluator`."""

    space: SearchSpace
    benchmark: str
    data: str | None
    subsets: tuple[str, ...] | None
    dev_fraction: float
    seed: int
    scoring: dict[str, Any]
    bootstrap: int
    objective: Objective

    def build(self) -> SplitEvaluator:
        return SplitEvaluator(self.space, self.benchmark, self.data, self.subsets, self.dev_fraction, self.seed,
                              self.scoring)

    def __call__(self, evaluator: SplitEvaluator | None = None):
        if evaluator is None:
            evaluator = self.build()
            evaluator.load()
        return lambda point: evaluator.evaluate(point, "dev", self.bootstrap, self.objective.with_value)


def _space(reward_model: str | None, domain_models: Sequence[str], config: Path | None,
           params: Sequence[str]) -> SearchSpace:
    if config is not None:
        if reward_model or domain_models:
            raise BenchmarkError("--config names the models: drop --rm and --domain (or drop --config)")
        try:
            source = Path(config).read_text()
        except OSError as exc:
            raise BenchmarkError(f"--config {config}: cannot read it ({exc.strerror or exc})") from None
        return parse_space(source, str(config), params)
    if not reward_model or not domain_models:
        raise BenchmarkError("give --rm RM and one --domain per domain model (or a mergekit --config)")
    return parse_space(dogerm_source(reward_model, domain_models), "--rm/--domain", params)


def _sampler(sampler: str, space: SearchSpace, storage: str | None, n_workers: int) -> str:
    """``auto``: Brent for one plain lambda without a shared study; else optuna's Gaussian process for one worker
    (the most from a budget of tens of evaluations), TPE with its constant liar for several (so concurrent
    proposals spread out)."""
    one_lambda = space.lambdas_only and len(space.parameters) == 1
    if sampler == "auto":
        if one_lambda and storage is None and n_workers == 1:
            return "brent"
        return "gp" if n_workers == 1 else "tpe"
    if sampler == "brent" and not one_lambda:
        raise BenchmarkError("--sampler brent searches one lambda; use gp, tpe or cmaes for several parameters")
    if sampler == "brent" and (storage is not None or n_workers != 1):
        raise BenchmarkError("--storage and --n-workers run an optuna study: use --sampler gp, tpe, cmaes or random")
    return sampler


def _check_publishing(space: SearchSpace, write: Path | None, push_to_hub: str | None) -> None:
    """Refuse a --write folder that cannot take the chosen checkpoint, or a --push-to-hub that is no repo id."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from dogerm_mergekit.errors import DogeRMError
    from dogerm_mergekit.validation import check_output

    if push_to_hub and write is None:
        raise BenchmarkError("--push-to-hub publishes the --write checkpoint: give --write DIR too")
    if write is not None and not space.writable:
        raise BenchmarkError(f"--write takes plain lambdas or kernel parameters, not depth schedules; the choice is "
                             f"written as OUT/{CHOSEN_YML}: merge it with mergekit-yaml OUT/{CHOSEN_YML} DIR")
    try:
        if write is not None:
            check_output(write, "sweep")
        if push_to_hub:
            validate_repo_id(push_to_hub)
    except HFValidationError as exc:
        raise BenchmarkError(f"--push-to-hub {push_to_hub!r} is not a Hub repo id ({exc}); use ORG/NAME") from None
    except DogeRMError as exc:
        raise BenchmarkError(f"--write: {exc.message}") from None


def publish(space: SearchSpace, point: Mapping[str, float], write: Path, push_to_hub: str | None,
            trust_remote_code: bool) -> None:
    """Write the merge at ``point`` as ``dogerm-sweep`` does into ``write`` (and push it as ``dogerm-push`` does),
    from the configuration with the models as the user named them (so the card names them so too)."""
    import yaml
    from mergekit.options import MergeOptions

    from dogerm_mergekit.sweep import run_sweep

    run_sweep(yaml.safe_dump(space.template, sort_keys=False), write, [space.sweep_point(point)],
              MergeOptions(quiet=True, trust_remote_code=trust_remote_code))
    LOG.info("wrote the chosen merge into %s", write)
    if push_to_hub:
        from dogerm_mergekit.hub import push_sweep

        push_sweep(write, push_to_hub)


def _line_search(evaluator: SplitEvaluator, make: DevEvaluator, objective: Objective, rule: Constraint | None,
                 max_evals: int, output_dir: Path) -> tuple[list[Evaluated], Evaluated, PointStore, int]:
    from dogerm_eval.line_search import line_search
    from dogerm_eval.split_eval import fingerprint

    # Under the objective too: a combined objective's value and interval are stored with each point.
    store = PointStore(output_dir / "points.json", fingerprint(evaluator.key, objective.name))
    known = store.dev_points()
    points, reference = line_search(make(evaluator), objective, rule, max_evals, known)
    return points, reference, store, len([p for p in points if p.params["lambda"] not in known])


def run_search(
    reward_model: str | None, domain_models: Sequence[str], benchmark: str, data: str | None,
    subsets: Sequence[str] | None, objective: str, constraint: str | None, max_evals: int, dev_fraction: float,
    seed: int, output_dir: Path, scoring: Mapping[str, Any], write: Path | None = None, push_to_hub: str | None = None,
    bootstrap: int = 200, config: Path | None = None, params: Sequence[str] = (), sampler: str = "auto",
    storage: str | None = None, n_workers: int = 1, grid_results: Path | None = None,
) -> dict[str, Any]:
    """Search the space on ``benchmark``'s dev split, evaluate the choice on test, report it (``search.json``,
    ``search.png``, ``chosen.yml``) and, if asked, publish it.

    Everything that can be refused is checked before a model is loaded; evaluated points are kept (Brent:
    ``OUT/points.json``; studies: their storage), so a rerun reuses them.
    """
    from dogerm_eval import study as studies
    from dogerm_eval.search_plot import check_grid, plot_search
    from dogerm_eval.split_eval import fingerprint

    goal, rule = Objective.parse(objective), Constraint.parse(constraint) if constraint else None
    space = _space(reward_model, domain_models, config, params)
    sampler = _sampler(sampler, space, storage, n_workers)
    if max_evals < 1:
        raise BenchmarkError("--max-evals must be at least 1 (the reward model alone is always evaluated)")
    _check_publishing(space, write, push_to_hub)  # before any scoring, not after the search
    if grid_results is not None:
        check_grid(grid_results, space, goal)
    make = DevEvaluator(space, benchmark, data, tuple(subsets) if subsets else None, dev_fraction, seed,
                        dict(scoring), bootstrap, goal)
    evaluator = make.build()
    check_metrics(goal, rule, evaluator.metric_names())
    spec = None
    if sampler != "brent":
        spec = studies.StudySpec(storage or str(output_dir / "study.journal"), "", sampler, seed, max_evals, goal,
                                 rule, space)
        studies.check_spec(spec)
    evaluator.load()
    if spec is None:
        points, reference, store, evaluated = _line_search(evaluator, make, goal, rule, max_evals, output_dir)
    else:
        name = fingerprint(evaluator.key, space.template, [asdict(p) for p in space.parameters], goal.name,
                           asdict(rule) if rule else None, sampler, seed)  # parsed: spacing opens no new study
        spec = replace(spec, name=f"dogerm-search-{name[:16]}")
        found, reference, evaluated = studies.run_study(spec, make(evaluator), make, n_workers)
        points = [reference, *found]
    chosen, note = choose(points, reference, goal, rule, space.magnitude)
    if note:
        LOG.warning("%s", note)
    test_point = chosen.params or None  # empty: a kernel search's reference, the reward model alone
    if spec is None:
        test_metrics = store.test_metrics(chosen.params["lambda"]) or evaluator.evaluate(test_point, "test", 0)[0]
        store.save(points, {chosen.params["lambda"]: test_metrics})
    else:
        test_metrics = studies.chosen_test_metrics(spec, chosen.params, lambda: evaluator.evaluate(test_point, "test", 0)[0])
    test_metrics = goal.with_value(test_metrics)
    task, dev, test = evaluator.task, evaluator.masks["dev"], evaluator.masks["test"]
    settings = {"reward_model": str(evaluator.reward.ref), "method": space.method,
                "domain_models": list(space.domains), "config": str(config) if config else None,
                "parameters": [asdict(p) for p in space.parameters], "benchmark": benchmark,
                "dataset": task.table.dataset, "dataset_revision": task.table.revision, "subsets": subsets,
                "objective": goal.name, "constraint": constraint, "constraint_metric": rule.metric if rule else None,
                "sampler": sampler, "storage": spec.storage if spec else str(output_dir / "points.json"),
                "study": spec.name if spec else None, "n_workers": n_workers, "max_evals": max_evals,
                "evaluated": evaluated, "dev_fraction": dev_fraction, "seed": seed, "dev_rows": int(dev.sum()),
                "test_rows": int(test.sum()),
                "split": "dev when sha256(f'{seed}\\0{id}')[:8] / 2**64 < dev_fraction", "scoring": evaluator.record}
    chosen_config = space.config(chosen.params) if chosen.params else None
    result = {"settings": settings, "points": [asdict(p) for p in points], "chosen": asdict(chosen),
              "chosen_config": chosen_config, "note": note, "test": dict(test_metrics)}
    write_search(output_dir, result, space)
    plot_search(output_dir / "search.png", result, space, grid_results)
    if write is not None and chosen.params:
        publish(space, chosen.params, write, push_to_hub, bool(scoring.get("trust_remote_code")))
    elif write is not None:
        LOG.warning("the reward model alone was chosen: nothing written to %s", write)
    return result


def write_search(output_dir: Path, record: Mapping[str, Any], space: SearchSpace) -> Path:
    """``OUT/search.json`` and ``OUT/chosen.yml`` (the chosen configuration, models as the user named them)."""
    import yaml

    from dogerm_mergekit.files import atomic_write

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / SEARCH_JSON
    atomic_write(path, json.dumps(record, indent=2, default=float))
    if record["chosen_config"] is not None:
        atomic_write(output_dir / CHOSEN_YML, yaml.safe_dump(record["chosen_config"], sort_keys=False))
    return path


def command():
    """The ``dogerm-eval search`` click command (built on first use, so ``--help`` of the group stays fast)."""
    import click

    from dogerm_eval.options import TRUST_REMOTE_CODE, split_list
    from dogerm_mergekit.dtypes import RUN_DTYPES

    @click.command("search")
    @click.option("--rm", "reward_model", help="The reward model (folder or org/name[@revision]).")
    @click.option("--domain", "domain_models", multiple=True,
                  help="A domain LM (folder or org/name[@revision]); repeat for several (one lambda each).")
    @click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
                  help="A dogerm or dogerm_<kernel> mergekit configuration to search instead of --rm/--domain.")
    @click.option("--param", "params", multiple=True,
                  help="A free parameter NAME[MODEL]=LOW:HIGH (repeatable); NAME[MODEL]@K=LOW:HIGH: K knots across "
                       "the layers (mergekit's gradient). Default: each domain model's lambda in [0, 1].")
    @click.option("--benchmark", required=True, help="A pairwise benchmark: pairwise, rewardbench, ...")
    @click.option("--data", help="The benchmark's data (required for pairwise; default: its Hub dataset).")
    @click.option("--subsets", help="Comma-separated subsets to keep.")
    @click.option("--objective", required=True,
                  help="The metric to maximise (pairwise/arithmetic) or mean(A, B) / min(A, B) of several.")
    @click.option("--constraint", help='e.g. "pairwise/general >= value_at_lambda0 - 0.02" or "X >= 0.9".')
    @click.option("--max-evals", type=int, default=5, show_default=True,
                  help="Dev evaluations, the reward model alone included.")
    @click.option("--sampler", type=click.Choice(SAMPLER_CHOICES), default="auto", show_default=True,
                  help="brent (one lambda), or an optuna sampler: gp, tpe, cmaes, random. auto: brent for one "
                       "lambda without --storage/--n-workers, else gp (one worker) or tpe (several).")
    @click.option("--storage", help="The study's optuna storage: a journal file or an RDB URL (sqlite:///s.db); "
                                    "default OUT/study.journal. A rerun resumes it; workers anywhere can share it.")
    @click.option("--n-workers", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Processes evaluating points at once (each loads the models; one per GPU).")
    @click.option("--dev-fraction", type=float, default=0.5, show_default=True, help="Share of rows in the dev split.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the dev/test split and sampler.")
    @click.option("--bootstrap", type=click.IntRange(min=0), default=200, show_default=True,
                  help="Resamples for each dev point's 95% intervals (0: none).")
    @click.option("--grid-results", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                  help="A sweep table (CSV) of the same two parameters: drawn under the evaluated points.")
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
        """Find good merge parameters in at most --max-evals in-memory evaluations on a dev split; report on test."""
        from dogerm_eval.options import configure_logging, default_options

        configure_logging()
        scoring = default_options(system_prompt=system_prompt, dtype=dtype, device=device,
                                  trust_remote_code=trust_remote_code)
        result = run_search(subsets=split_list(subsets), scoring=scoring, **arguments)
        chosen, objective = result["chosen"], result["settings"]["objective"]
        where = ", ".join(f"{k} {v:g}" for k, v in chosen["params"].items()) or "the reward model alone"
        click.echo(f"chosen {where}: dev {objective} {chosen['metrics'][objective]:.4f}, "
                   f"test {objective} {result['test'].get(objective, float('nan')):.4f} "
                   f"({result['settings']['evaluated']} evaluations)")
        if result["note"]:
            click.echo(result["note"])

    return search_command
