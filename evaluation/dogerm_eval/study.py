"""A search as an optuna study: points proposed by a sampler, kept in a storage, resumable, shared by workers.

The study lives in ``--storage``: optuna's journal file (the default, ``OUT/study.journal``) or an RDB URL
(``sqlite:///study.db``, ``postgresql://...``); its name fingerprints the models, data, split, space, objective,
constraint, sampler and seed, so a rerun with the same settings resumes it and anything else starts afresh.

- The reward model alone (lambda = 0) is evaluated first, once per study (a study user attribute): the
  constraint's reference, and the answer when nothing meets it. It counts as one of ``max_evals``.
- The study starts from the space's own points (:meth:`SearchSpace.starts`: each domain model alone), then its
  sampler proposes. Each trial proposes a point (:meth:`SearchSpace.point`), claims it, evaluates it and stores its
  dev metrics and intervals as user attributes; its value is the objective negated, and the constraint's excess is
  stored beside it for the samplers that model the feasible region (gp, tpe: optuna's constrained GP and c-TPE)
  or added as a penalty for those that do not (cmaes, random; :func:`~dogerm_eval.criteria.penalised`).
  A point equal to a finished trial's is answered from it; one being evaluated by another worker is waited for.
  With a journal file the claim is taken under an exclusive lock on it, so no point is evaluated twice; with an
  RDB URL (workers on several machines) a check-then-claim race remains possible.
- The budget is counted in trial numbers, which the storage hands out atomically: a trial runs only while fewer
  than ``max_evals - 1`` live trials that evaluate precede it, so N workers never overshoot it.
- A trial left running by a process that died (kill -9) is failed when a worker on the same machine starts, and
  its point is queued again; the rest of the study is kept: a rerun evaluates only what was missing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogerm_eval.criteria import Constraint, Evaluated, Objective, penalised
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.space import SearchSpace
from dogerm_mergekit.noise import GREENLET, silenced

LOG = logging.getLogger(__name__)
SAMPLERS = ("tpe", "gp", "cmaes", "random")
Evaluate = Callable[[dict[str, float] | None], tuple[dict[str, float], dict[str, tuple[float, float]]]]
"""``evaluate(point)``: (dev metrics, intervals) of the merge at ``point``; ``None``: the reward model alone."""
_UNOWNED_GRACE_S = 60.0


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker needs to join the study (picklable: workers are spawned processes)."""

    storage: str
    name: str
    sampler: str
    seed: int
    max_evals: int
    objective: Objective
    constraint: Constraint | None
    space: SearchSpace

    @property
    def journal(self) -> Path | None:
        """The journal file, or None for an RDB URL."""
        return None if "://" in self.storage else Path(self.storage)


def check_spec(spec: StudySpec) -> None:
    """Refuse a study that cannot run, before any model loads."""
    if spec.sampler not in SAMPLERS:
        raise BenchmarkError(f"--sampler {spec.sampler!r}: choose one of brent, {', '.join(SAMPLERS)}")
    if spec.sampler == "cmaes" and len(spec.space.parameters) < 2:
        raise BenchmarkError("--sampler cmaes needs at least two parameters; use tpe (or brent) for one")
    if spec.max_evals < 1:
        raise BenchmarkError("--max-evals must be at least 1 (the reward model alone is always evaluated)")
    if spec.journal is not None and spec.journal.is_dir():
        raise BenchmarkError(f"--storage {spec.storage}: is a folder; give a journal file path or an RDB URL")


def _sampler(spec: StudySpec, worker: int) -> Any:
    import optuna

    seed = spec.seed + worker  # workers draw different random proposals
    startup = max(2, min(10, (spec.max_evals - 1) // 3))
    # tpe and gp model where the constraint holds (c-TPE, c-GP) from each trial's constraint (see _value)
    if spec.sampler == "gp":  # the metrics of a merge on the dev rows are a deterministic function of the point
        with silenced(GREENLET), contextlib.suppress(ImportError):  # same proposals, only sequential: said once
            importlib.import_module(GREENLET[0])  # (at import) by optuna's optimiser, which the sampler imports later
        with warnings.catch_warnings():  # chosen knowingly: optuna marks the option experimental on every search
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, deterministic_objective=True)
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=1, warn_independent_sampling=False)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=True)


def open_study(spec: StudySpec, worker: int = 0) -> Any:
    """The study in ``spec.storage`` (created on first use)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.journal is not None:
        spec.journal.parent.mkdir(parents=True, exist_ok=True)
    try:  # a journal someone else wrote may not be one: read it here, where its refusal is one line
        storage: Any = spec.storage if spec.journal is None else JournalStorage(JournalFileBackend(str(spec.journal)))
        study = optuna.create_study(study_name=spec.name, storage=storage, sampler=_sampler(spec, worker),
                                    direction="minimize", load_if_exists=True)
    except (ImportError, ValueError) as exc:
        raise BenchmarkError(f"--storage {spec.storage}: cannot open it ({exc}); give a journal file path or an "
                             "RDB URL such as sqlite:///study.db") from None
    if not study.get_trials(deepcopy=False):
        for point in spec.space.starts():  # the space's own starting points, queued once (a second worker skips)
            study.enqueue_trial(point, skip_if_exists=True)
    return study


@contextlib.contextmanager
def _claim_lock(spec: StudySpec) -> Iterator[None]:
    """An exclusive ``flock`` on the journal file while a worker looks for a twin and claims its point."""
    if spec.journal is None:
        yield
        return
    import fcntl

    handle = os.open(spec.journal, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _alive(trial: Any) -> bool:
    """Whether a running trial's process may still be working on it (unknown owners on other machines are)."""
    owner = trial.user_attrs.get("owner")
    if owner is None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        return time.time() - started < _UNOWNED_GRACE_S
    host, pid = owner
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale(study: Any) -> int:
    """Fail the trials a dead process left running (on this machine) and queue their points again."""
    from optuna.trial import TrialState

    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if not _alive(t)]
    for trial in stale:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except ValueError:  # another worker failed it first (and queued its point)
            continue
        if trial.params:
            study.enqueue_trial(trial.params)
        LOG.warning("trial %d was left running by a process that no longer exists; its point is queued again",
                    trial.number)
    return len(stale)


def ensure_reference(study: Any, evaluate: Evaluate, spec: StudySpec) -> Evaluated:
    """The reward model alone's dev metrics, evaluated once per study."""
    saved = study.user_attrs.get("reference")
    if saved is None:
        metrics, intervals = evaluate(None)
        saved = {"params": spec.space.zero(), "metrics": spec.objective.with_value(metrics),
                 "intervals": {k: list(v) for k, v in intervals.items()}}
        study.set_user_attr("reference", saved)
    return _evaluated(saved)


def _evaluated(saved: dict[str, Any]) -> Evaluated:
    return Evaluated(dict(saved["params"]), dict(saved["metrics"]),
                     {k: (float(v[0]), float(v[1])) for k, v in saved.get("intervals", {}).items()})


def _over_budget(study: Any, trial: Any, max_evals: int) -> bool:
    """Whether ``max_evals`` evaluations (the reward model alone included) are spent or promised to trials ahead of
    this one. A trial answered from a twin evaluates nothing and does not count, but at most ``2 * max_evals`` such
    answers are given, so a sampler that keeps proposing evaluated points ends too."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state in live]
    copies = sum(1 for t in ahead if "copy_of" in t.user_attrs)
    return 1 + len(ahead) - copies >= max_evals or copies >= 2 * max_evals


def _twin(study: Any, key: str, number: int) -> Any:
    """A finished or claimed trial of the same point, other than ``number``."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.RUNNING)
    return next((t for t in study.get_trials(deepcopy=False, states=states)
                 if t.number != number and t.user_attrs.get("key") == key), None)


def _value(trial: Any, spec: StudySpec, metrics: dict[str, float], reference: Evaluated) -> float:
    """What the sampler minimises: the objective negated, the constraint stored beside it for the samplers that
    model it (tpe, gp), and added as a penalty for those that do not (cmaes, random)."""
    if spec.constraint is not None:
        excess = spec.constraint.excess(metrics, reference.metrics)
        trial.set_user_attr("excess", excess)
        # What optuna's constrained samplers read (<= 0: met); a NaN metric counts as infeasible.
        trial.set_constraint("excess", math.inf if math.isnan(excess) else excess)
    if spec.sampler in ("tpe", "gp"):
        return -spec.objective.value(metrics)
    return penalised(spec.objective, spec.constraint, metrics, reference.metrics)


def _objective(study: Any, spec: StudySpec, evaluate: Evaluate, reference: Evaluated) -> Callable[[Any], float]:
    import optuna
    from optuna.trial import TrialState

    def objective(trial: Any) -> float:
        trial.set_user_attr("owner", [socket.gethostname(), os.getpid()])
        if _over_budget(study, trial, spec.max_evals):
            study.stop()
            raise optuna.TrialPruned("the budget of evaluations is spent")
        point = spec.space.point({p.key: trial.suggest_float(p.key, p.low, p.high) for p in spec.space.parameters})
        key = json.dumps(point, sort_keys=True)
        trial.set_user_attr("point", point)
        if point == spec.space.zero():  # the reward model alone, evaluated first
            trial.set_user_attr("metrics", reference.metrics)
            trial.set_user_attr("intervals", {k: list(v) for k, v in reference.intervals.items()})
            trial.set_user_attr("copy_of", "reference")
            return _value(trial, spec, reference.metrics, reference)
        while True:
            with _claim_lock(spec):
                twin = _twin(study, key, trial.number)
                if twin is None:
                    trial.set_user_attr("key", key)  # the claim
            if twin is None:
                break
            if twin.state == TrialState.COMPLETE:
                for name in ("metrics", "intervals"):
                    trial.set_user_attr(name, twin.user_attrs[name])
                trial.set_user_attr("copy_of", twin.number)
                return _value(trial, spec, twin.user_attrs["metrics"], reference)
            time.sleep(0.2)  # another worker evaluates this point: wait for it (or for its death)
            fail_stale(study)
        metrics, intervals = evaluate(point)
        metrics = spec.objective.with_value(metrics)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("intervals", {k: list(v) for k, v in intervals.items()})
        return _value(trial, spec, metrics, reference)

    return objective


def work(spec: StudySpec, evaluate: Evaluate, worker: int = 0) -> None:
    """Join the study and evaluate proposals until the budget is spent."""
    study = open_study(spec, worker)
    fail_stale(study)
    reference = ensure_reference(study, evaluate, spec)
    study.optimize(_objective(study, spec, evaluate, reference), catch=())


def _spawned_worker(spec: StudySpec, make_evaluate: Callable[[], Evaluate], worker: int) -> None:
    """A worker process: a failure is one line on stderr and exit code 1."""
    import sys

    try:
        work(spec, make_evaluate(), worker)
    except Exception as exc:  # noqa: BLE001 - reported as one line, the parent names the worker
        print(f"search worker {worker}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


def run_study(spec: StudySpec, evaluate: Evaluate, make_evaluate: Callable[[], Evaluate], n_workers: int = 1
              ) -> tuple[list[Evaluated], Evaluated, int]:
    """Run (or resume) the study with ``n_workers``: this process (``evaluate``) and ``n_workers - 1`` spawned
    ones, each with its own ``make_evaluate()``; return (the distinct evaluated points in the order they were
    evaluated, the reference, how many evaluations this run made)."""
    import multiprocessing

    check_spec(spec)
    if n_workers < 1:
        raise BenchmarkError("--n-workers must be at least 1")
    study = open_study(spec)
    fail_stale(study)
    before = len(collect(spec, study)[0]) + 1 if "reference" in study.user_attrs else 0
    ensure_reference(study, evaluate, spec)  # before the workers: each of them reads it
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_spawned_worker, args=(spec, make_evaluate, i)) for i in range(1, n_workers)]
    for child in children:
        child.start()
    try:
        work(spec, evaluate)
    finally:
        for child in children:
            child.join()
    failed = [i for i, child in enumerate(children, start=1) if child.exitcode != 0]
    if failed:
        raise BenchmarkError(f"search worker {failed[0]} failed (exit code {children[failed[0] - 1].exitcode}); "
                             "what was evaluated is kept: rerun the command to resume")
    points, reference = collect(spec, study)
    return points, reference, len(points) + 1 - before


def collect(spec: StudySpec, study: Any = None) -> tuple[list[Evaluated], Evaluated]:
    """(every distinct evaluated point, in trial order; the reference) of the study (``study``: already open)."""
    from optuna.trial import TrialState

    study = study or open_study(spec)
    if "reference" not in study.user_attrs:
        raise BenchmarkError(f"study {spec.name} in {spec.storage} has no evaluated point yet")
    reference = _evaluated(study.user_attrs["reference"])
    points = [Evaluated(dict(t.user_attrs["point"]), dict(t.user_attrs["metrics"]),
                        {k: (float(v[0]), float(v[1])) for k, v in t.user_attrs["intervals"].items()})
              for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
              if "copy_of" not in t.user_attrs]
    return points, reference


def chosen_test_metrics(spec: StudySpec, point: dict[str, float], compute: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The chosen point's test metrics, computed once per study (a rerun reads them from the storage)."""
    study = open_study(spec)
    key = json.dumps(point, sort_keys=True)
    saved = dict(study.user_attrs.get("test", {}))
    if key not in saved:
        saved[key] = compute()
        study.set_user_attr("test", saved)
    return dict(saved[key])
