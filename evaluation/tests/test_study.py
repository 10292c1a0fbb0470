"""Searches as optuna studies: known optima, constraints, resume after kill -9, two workers sharing one storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dogerm_eval.criteria import Constraint, Objective, choose
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.study import StudySpec, collect, open_study, run_study
from evaluation.tests.synthetic import OPTIMUM, LoggedBump, bump, logged, two_domain_space

GOAL = Objective.parse("mean(t/a, t/b)")
REPO = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, sampler: str = "tpe", max_evals: int = 12, constraint: str | None = None,
          seed: int = 0) -> StudySpec:
    return StudySpec(str(tmp_path / "study.journal"), "s", sampler, seed, max_evals, GOAL,
                     Constraint.parse(constraint) if constraint else None, two_domain_space())


def _run(spec: StudySpec, make: LoggedBump, workers: int = 1):
    points, reference, new = run_study(spec, make(), make, workers)
    chosen, note = choose(points, reference, spec.objective, spec.constraint, spec.space.magnitude)
    return points, reference, new, chosen, note


@pytest.mark.parametrize("sampler", ["gp", "tpe", "cmaes"])
def test_a_known_optimum_in_two_dimensions_is_found(tmp_path: Path, sampler: str) -> None:
    points, reference, new, chosen, note = _run(_spec(tmp_path, sampler, max_evals=30), LoggedBump(tmp_path / "log"))
    starts = logged(tmp_path / "log", "start")
    assert starts[0] is None and len(starts) == new == 30 == len(points) + 1  # the reward model first, then 29
    assert starts[1:3] == [{"lambda[org/a]": 0.5, "lambda[org/b]": 0.0}, {"lambda[org/a]": 0.0, "lambda[org/b]": 0.5}]
    assert len({json.dumps(p, sort_keys=True) for p in starts[1:]}) == 29
    assert all(sum(p.values()) <= 1 + 1e-12 for p in starts[1:])  # dogerm lambdas summing past 1 are never tried
    best = GOAL.value(bump(OPTIMUM))
    assert note is None and GOAL.value(chosen.metrics) >= best - 0.02
    assert all(abs(chosen.params[k] - v) < 0.15 for k, v in OPTIMUM.items())
    assert reference.params == {"lambda[org/a]": 0.0, "lambda[org/b]": 0.0}


def test_a_constraint_nothing_meets_returns_the_reward_model_with_a_note(tmp_path: Path) -> None:
    spec = _spec(tmp_path, max_evals=6, constraint="t/general >= value_at_lambda0 + 0.05")
    points, reference, _, chosen, note = _run(spec, LoggedBump(tmp_path / "log"))
    assert len(points) == 5 and chosen is reference and not any(p.meets_constraint for p in points)
    assert note == "no evaluated point meets t/general >= 0.9500; the reward model alone is returned"


@pytest.mark.parametrize("sampler", ["gp", "tpe", "random"])
def test_the_constraint_steers_the_choice(tmp_path: Path, sampler: str) -> None:
    """general = 0.9 - 0.1 (a + b)^2 >= 0.88 allows a + b <= 0.447: the optimum (0.3, 0.5) is out of reach. gp and
    tpe model the constraint from each trial's stored excess; random sees it as a penalty."""
    spec = _spec(tmp_path, sampler, max_evals=25, constraint="t/general >= value_at_lambda0 - 0.02")
    points, _, _, chosen, _ = _run(spec, LoggedBump(tmp_path / "log"))
    assert chosen.meets_constraint and sum(chosen.params.values()) <= 0.4473
    assert any(not p.meets_constraint for p in points)
    assert GOAL.value(chosen.metrics) > GOAL.value(bump(None)) + 0.1
    trials = [t for t in open_study(spec).get_trials() if "metrics" in t.user_attrs]
    for trial in trials:  # the excess the samplers read: bound - general, <= 0 exactly where the constraint holds
        general = trial.user_attrs["metrics"]["t/general"]
        assert trial.user_attrs["excess"] == pytest.approx(0.88 - general)
        assert trial.value == pytest.approx(-GOAL.value(trial.user_attrs["metrics"]) + (
            0 if sampler != "random" or general >= 0.88 else 1 + 0.88 - general))


def test_a_rerun_resumes_and_evaluates_nothing_again(tmp_path: Path) -> None:
    spec = _spec(tmp_path, max_evals=8)
    first = _run(spec, LoggedBump(tmp_path / "log"))
    again = _run(spec, LoggedBump(tmp_path / "log"))
    assert first[2] == 8 and again[2] == 0 and len(logged(tmp_path / "log", "start")) == 8
    assert again[3] == first[3]
    more = _run(StudySpec(**{**spec.__dict__, "max_evals": 11}), LoggedBump(tmp_path / "log"))  # a larger budget
    assert more[2] == 3 and len(more[0]) == 10


_KILLED_RUN = """
from pathlib import Path
from dogerm_eval.criteria import Objective
from dogerm_eval.study import StudySpec, run_study
from evaluation.tests.synthetic import LoggedBump, two_domain_space
spec = StudySpec({storage!r}, "s", "tpe", 0, 10, Objective.parse("mean(t/a, t/b)"), None, two_domain_space())
make = LoggedBump(Path({log!r}), delay=0.4)
run_study(spec, make(), make, 1)
"""


def test_resume_after_kill_9_evaluates_only_what_was_missing(tmp_path: Path) -> None:
    spec, log = _spec(tmp_path, max_evals=10), tmp_path / "log"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_RUN.format(storage=spec.storage, log=str(log))], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 120
    def in_flight() -> bool:  # at least 4 evaluations done and the next one started (killed inside it)
        return len(logged(log, "done")) >= 4 and len(logged(log, "start")) > len(logged(log, "done"))

    while not in_flight() and time.time() < deadline and child.poll() is None:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done_before = logged(log, "done")
    assert 4 <= len(done_before) < 10, "the run was not killed mid-search"
    points, _, new, _, _ = _run(spec, LoggedBump(log))
    done = logged(log, "done")
    keys = [json.dumps(p, sort_keys=True) for p in done]
    assert len(keys) == len(set(keys)) == 10  # no finished point evaluated twice; the budget spent exactly
    trials = open_study(spec).get_trials()
    assert len(points) == 9 and new == 10 - len(done_before), [(t.number, t.state.name, t.user_attrs) for t in trials]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1  # the trial in flight at the kill failed, and its point was queued again:
    assert logged(log, "start").count(failed[0].user_attrs["point"]) == 2 and failed[0].user_attrs["point"] in done


def test_two_workers_share_one_storage_and_never_evaluate_a_point_twice(tmp_path: Path) -> None:
    spec, log = _spec(tmp_path, max_evals=12), tmp_path / "log"
    study = open_study(spec)
    twice = {"lambda[org/a]": 0.25, "lambda[org/b]": 0.25}
    study.enqueue_trial(twice)
    study.enqueue_trial(twice)  # the same point queued twice: the second is answered from the first
    points, _, new, _, _ = _run(spec, LoggedBump(log, delay=0.1, workers=2), workers=2)
    starts = [json.dumps(p, sort_keys=True) for p in logged(log, "start")]
    # the budget exactly (the reward model and 11 evaluated trials; the twin's answer costs none), no point twice
    assert len(starts) == len(set(starts)) == 12 == new, log.read_text()
    assert len(points) == 11 and json.dumps(twice, sort_keys=True) in starts
    assert len({r["pid"] for r in map(json.loads, log.read_text().splitlines()) if r.get("start")}) == 2
    trials = open_study(spec).get_trials()
    assert sum(1 for t in trials if t.user_attrs.get("copy_of") is not None) == 1
    assert sum(1 for t in trials if t.state.name == "COMPLETE") == 12


def test_a_study_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from dataclasses import replace

    from evaluation.tests.synthetic import two_domain_space as space

    one = replace(_spec(tmp_path, "cmaes"), space=space(("lambda[org/a]=0:1",)))
    with pytest.raises(BenchmarkError, match="cmaes needs at least two parameters"):
        run_study(one, None, None)
    with pytest.raises(BenchmarkError, match="is a folder"):
        run_study(replace(_spec(tmp_path), storage=str(tmp_path)), None, None)
    with pytest.raises(BenchmarkError, match="no evaluated point yet"):
        collect(_spec(tmp_path / "empty"))
    (tmp_path / "foreign.journal").write_text("not a journal\n{broken")  # a file someone else wrote
    with pytest.raises(BenchmarkError, match="--storage .*foreign.journal: cannot open it") as caught:
        open_study(replace(_spec(tmp_path), storage=str(tmp_path / "foreign.journal")))
    assert "\n" not in str(caught.value)


def test_the_plot_draws_each_shape_of_space_and_a_grid_under_two_parameters(tmp_path: Path) -> None:
    """Two parameters over a grid table's heatmap (columns matched by the models' last path components), depth
    schedules as lambda against depth; a grid table without the parameters' or the objective's columns is refused
    in one line."""
    from dataclasses import asdict

    import pandas as pd

    from dogerm_eval.search_plot import check_grid, plot_search

    spaces = {"plane": two_domain_space(), "depth": two_domain_space(("lambda[a]@3=0:1", "lambda[b]@3=0:1"))}
    grid = tmp_path / "grid.csv"
    pd.DataFrame([{"lambda[a]": i / 4, "lambda[b]": j / 4, **bump({"lambda[org/a]": i / 4, "lambda[org/b]": j / 4})}
                  for i in range(5) for j in range(5 - i)]).to_csv(grid, index=False)
    for name, space in spaces.items():
        spec = StudySpec(str(tmp_path / f"{name}.journal"), name, "random", 0, 6, GOAL, None, space)
        points, reference, _, chosen, note = _run(spec, LoggedBump(tmp_path / f"{name}.log"))
        record = {"settings": {"objective": GOAL.name, "method": "dogerm", "constraint_metric": None},
                  "points": [asdict(p) for p in (reference, *points)], "chosen": asdict(chosen)}
        if name == "plane":
            check_grid(grid, space, GOAL)
        plot_search(tmp_path / f"{name}.png", record, space, grid if name == "plane" else None)
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    text = pd.read_csv(grid).astype({"t/a": object})
    text.loc[0, "t/a"] = "n/a (crashed)"  # a hand-edited table
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(BenchmarkError, match="holds a non-number"):
        check_grid(tmp_path / "text.csv", spaces["plane"], GOAL)
    pd.DataFrame([{"x": 0, "t/a": 1}]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BenchmarkError, match="no single column for lambda\\[org/a\\]") as caught:
        check_grid(tmp_path / "bad.csv", spaces["plane"], GOAL)
    assert "\n" not in str(caught.value)
    pd.read_csv(grid).drop(columns=[GOAL.metrics[0]]).to_csv(tmp_path / "other.csv", index=False)  # another benchmark
    with pytest.raises(BenchmarkError, match=f"no column for the objective's {GOAL.metrics[0]}") as caught:
        check_grid(tmp_path / "other.csv", spaces["plane"], GOAL)
    assert "\n" not in str(caught.value)


def test_the_gp_sampler_says_nothing_of_greenlet():
    """optuna warns at import of its optimiser when the optional greenlet package is missing (same proposals,
    computed one after the other): silenced, in a fresh interpreter where that import has not happened yet."""
    import subprocess
    import sys

    probe = ("import logging; logging.basicConfig(); from types import SimpleNamespace; from dogerm_eval import study;"
             "study._sampler(SimpleNamespace(seed=0, max_evals=9, sampler='gp'), 0);"
             "import optuna._gp.batched_lbfgsb")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "greenlet" not in done.stderr, done.stderr
