"""dogerm-eval search: Brent's proposals within the budget, lambda = 0 always, honest dev/test protocol."""

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mergekit.options import MergeOptions

from dogerm_eval.criteria import Constraint, Objective, choose
from dogerm_eval.errors import BenchmarkError
from dogerm_eval.line_search import line_search
from dogerm_eval.search import command, run_search
from dogerm_eval.space import dogerm_source, parse_space
from dogerm_eval.split_eval import split_rows
from dogerm_mergekit import testing as tiny


def search(evaluate, objective, rule, max_evals, known=None):
    """Brent's line search and the choice, as ``dogerm-eval search`` runs them for one lambda."""
    goal = Objective.parse(objective)
    points, reference = line_search(lambda point: evaluate(point["lambda"]), goal, rule, max_evals, known)
    chosen, note = choose(points, reference, goal, rule, lambda params: params.get("lambda", 0.0))
    return points, chosen, note


def _curve(objective, general=lambda lam: 0.9):
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return {"x/objective": objective(lam), "x/general": general(lam)}, {}

    return evaluate, calls


def test_a_bump_is_found_within_the_budget():
    evaluate, calls = _curve(lambda lam: 0.5 + 0.3 * np.exp(-((lam - 0.62) ** 2) / 0.05))
    points, chosen, note = search(evaluate, "x/objective", None, max_evals=5)
    assert len(calls) <= 5 and calls[0] == 0.0 and note is None
    assert abs(chosen.params["lambda"] - 0.62) < 0.12
    grid = max(np.linspace(0, 1, 11), key=lambda lam: 0.5 + 0.3 * np.exp(-((lam - 0.62) ** 2) / 0.05))
    assert chosen.metrics["x/objective"] >= 0.5 + 0.3 * np.exp(-((grid - 0.62) ** 2) / 0.05) - 0.01


def test_a_flat_curve_keeps_the_reward_model():
    evaluate, calls = _curve(lambda lam: 0.7)
    _, chosen, _ = search(evaluate, "x/objective", None, max_evals=5)
    assert chosen.params["lambda"] == 0.0 and len(calls) <= 5


def test_an_optimum_at_lambda_zero_is_returned():
    evaluate, _ = _curve(lambda lam: 0.8 - 0.3 * lam)
    _, chosen, _ = search(evaluate, "x/objective", None, max_evals=5)
    assert chosen.params["lambda"] == 0.0


def test_the_constraint_excludes_lambdas_that_cost_general_accuracy():
    evaluate, _ = _curve(lambda lam: lam, general=lambda lam: 0.9 - 0.1 * lam)  # general falls 2 points at 0.2
    rule = Constraint.parse("x/general >= value_at_lambda0 - 0.02")
    points, chosen, _ = search(evaluate, "x/objective", rule, max_evals=5)
    assert chosen.params["lambda"] <= 0.2 + 1e-9 and chosen.meets_constraint
    assert any(not p.meets_constraint for p in points)  # something beyond 0.2 was tried and refused


def test_a_constraint_no_lambda_meets_returns_lambda_zero_with_a_note():
    evaluate, _ = _curve(lambda lam: lam)
    _, chosen, note = search(evaluate, "x/objective", Constraint.parse("x/general >= 0.99"), max_evals=4)
    assert chosen.params["lambda"] == 0.0 and "no evaluated point meets x/general >= 0.9900" in note


def test_a_rerun_with_known_points_evaluates_nothing():
    evaluate, first = _curve(lambda lam: 0.5 + 0.3 * np.exp(-((lam - 0.62) ** 2) / 0.05))
    points, chosen, _ = search(evaluate, "x/objective", None, max_evals=5)
    evaluate_again, again = _curve(lambda lam: 0.5 + 0.3 * np.exp(-((lam - 0.62) ** 2) / 0.05))
    points2, chosen2, _ = search(evaluate_again, "x/objective", None, max_evals=5, known={p.params["lambda"]: p for p in points})
    assert again == [] and chosen2.params["lambda"] == chosen.params["lambda"]


def test_constraint_syntax():
    assert Constraint.parse("a/b >= value_at_lambda0 - 0.02") == Constraint("a/b", ">=", offset=-0.02)
    assert Constraint.parse("a/b<=0.5") == Constraint("a/b", "<=", value=0.5)
    with pytest.raises(BenchmarkError, match="value_at_lambda0"):
        Constraint.parse("a/b > 3")


def test_split_is_deterministic_disjoint_and_near_the_fraction():
    ids = list(range(2000))
    dev, test = split_rows(ids, 0.3, seed=1)
    assert not (dev & test).any() and (dev | test).all()
    assert abs(dev.mean() - 0.3) < 0.04
    assert (split_rows(ids, 0.3, seed=1)[0] == dev).all() and not (split_rows(ids, 0.3, seed=2)[0] == dev).all()
    with pytest.raises(BenchmarkError, match="between 0 and 1"):
        split_rows(ids, 1.0, 0)


def _pairs(path):
    rng = random.Random(0)
    rows = []
    for i in range(40):
        subset = "general" if i % 2 else "arithmetic"
        words = [f"w{rng.randrange(10, 900)}" for _ in range(6)]
        rows.append({"id": i, "subset": subset, "prompt": " ".join(words[:3]), "chosen": " ".join(words[3:]),
                     "rejected": " ".join(reversed(words[3:])), "chosen_model": "a", "rejected_model": "b"})
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


def test_end_to_end_on_tiny_models_writes_search_json_reuses_points_and_the_checkpoint(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    data = _pairs(tmp_path / "pairs.jsonl")
    args = ["--rm", str(rm), "--domain", str(lm), "--benchmark", "pairwise", "--data", str(data),
            "--objective", "pairwise/arithmetic", "--constraint", "pairwise/general >= value_at_lambda0 - 0.02",
            "--max-evals", "4", "--output-dir", str(tmp_path / "out"), "--write", str(tmp_path / "best")]
    first = CliRunner().invoke(command(), args)
    assert first.exit_code == 0, first.output
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    assert record["points"][0]["params"] == {"lambda": 0.0} and 1 <= len(record["points"]) <= 4
    assert record["settings"]["dev_rows"] + record["settings"]["test_rows"] == 40
    assert set(record["test"]) >= {"pairwise/arithmetic", "pairwise/general"}
    assert (tmp_path / "out" / "search.png").stat().st_size > 1000
    lam = record["chosen"]["params"]["lambda"]
    from dogerm_mergekit.contract import checkpoint_name
    from dogerm_mergekit.sweep import run_sweep
    import yaml

    reference = run_sweep(yaml.safe_dump({"merge_method": "dogerm", "base_model": str(rm), "models": [
        {"model": str(lm), "parameters": {"lambda": lam}}]}), tmp_path / "ref", (lam,), MergeOptions(quiet=True))
    name = checkpoint_name(lam)
    assert (tmp_path / "best" / name / "model.safetensors").read_bytes() == \
        (reference.out_dir / name / "model.safetensors").read_bytes()
    again = CliRunner().invoke(command(), args)
    assert again.exit_code == 0 and "(0 evaluations)" in again.output
    # The same OUT with a combined objective: its points carry their own value and interval (evaluated again).
    combined = "mean(pairwise/arithmetic, pairwise/general)"
    at = args.index("--objective") + 1
    other = CliRunner().invoke(command(), [*args[:at], combined, *args[at + 1:]])
    assert other.exit_code == 0, other.output
    points = json.loads((tmp_path / "out" / "search.json").read_text())["points"]
    assert all(combined in p["metrics"] and combined in p["intervals"] for p in points[1:])


def test_a_constraint_typed_with_other_spacing_resumes_the_same_study(tmp_path):
    rm, lm = tiny.build_pair(tmp_path / "in")
    args = ["--rm", str(rm), "--domain", str(lm), "--benchmark", "pairwise", "--data",
            str(_pairs(tmp_path / "pairs.jsonl")), "--objective", "pairwise/arithmetic", "--sampler", "random",
            "--max-evals", "3", "--bootstrap", "20", "--output-dir", str(tmp_path / "out")]
    first = CliRunner().invoke(command(), [*args, "--constraint", "pairwise/general >= value_at_lambda0 - 0.02"])
    assert first.exit_code == 0 and "(3 evaluations)" in first.output, first.output
    again = CliRunner().invoke(command(), [*args, "--constraint", "pairwise/general>=value_at_lambda0-0.02"])
    assert again.exit_code == 0 and "(0 evaluations)" in again.output, again.output


def test_push_needs_write_and_bad_fractions_are_refused_before_loading(tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    with pytest.raises(BenchmarkError, match="--write"):
        run_search("missing-rm", ["missing-lm"], "pairwise", str(data), None, "pairwise/score", None, 5, 0.5, 0,
                   tmp_path / "out", {}, push_to_hub="org/name")
    with pytest.raises(BenchmarkError, match="dev-fraction"):
        run_search("missing-rm", ["missing-lm"], "pairwise", str(data), None, "pairwise/score", None, 5, 1.5, 0,
                   tmp_path / "out", {})


def test_each_lambda_is_scored_with_its_own_merge(tmp_path):
    """The in-memory evaluation at lambda equals scoring the written lambda checkpoint with a fresh scorer."""
    import yaml

    from dogerm_eval.benchmarks import pairwise
    from dogerm_eval.options import default_options, scorer_factory, scoring_settings
    from dogerm_eval.models import resolve_model
    from dogerm_eval.split_eval import SplitEvaluator
    from dogerm_mergekit.sweep import run_sweep

    rm, lm = tiny.build_pair(tmp_path / "in")
    data = _pairs(tmp_path / "pairs.jsonl")
    scoring = default_options(dtype="float32", device="cpu")
    space = parse_space(dogerm_source(str(rm), [str(lm)]), "test", ())
    evaluator = SplitEvaluator(space, "pairwise", str(data), None, 0.5, 0, scoring)
    run_sweep(yaml.safe_dump({"merge_method": "dogerm", "base_model": str(rm), "models": [
        {"model": str(lm), "parameters": {"lambda": 1.0}}]}), tmp_path / "sweep", (0.0, 1.0), MergeOptions(quiet=True))
    fmt, _ = scoring_settings(scoring)
    seen = []
    for lam, name in ((0.0, "lambda-0.00"), (1.0, "lambda-1.00"), (0.0, "lambda-0.00")):
        rows, in_memory = evaluator.scores({"lambda": lam}, "dev")
        fresh = scorer_factory(fmt, scoring)(resolve_model(str(tmp_path / "sweep" / name)))
        expected = np.concatenate([fresh.score(p) for p in pairwise.passes(rows)])
        np.testing.assert_allclose(in_memory, expected, rtol=0, atol=2e-6)  # the fp32 batch tolerance
        seen.append(in_memory)
    assert np.abs(seen[0] - seen[1]).max() > 1e-4  # the two merges do score differently


def test_publishing_options_are_refused_before_any_model_loads(tmp_path: Path) -> None:
    from dogerm_eval.errors import BenchmarkError
    from dogerm_eval.options import default_options
    from dogerm_eval.search import run_search

    (tmp_path / "taken").write_text("a file, not a folder")
    common = dict(reward_model=str(tmp_path / "no-rm"), domain_models=[str(tmp_path / "no-lm")], benchmark="pairwise",
                  data=None, subsets=None, objective="pairwise/x", constraint=None, max_evals=3, dev_fraction=0.5,
                  seed=0, output_dir=tmp_path / "out", scoring=default_options())
    with pytest.raises(BenchmarkError, match="--write: the output .*taken is a file"):
        run_search(**common, write=tmp_path / "taken")
    with pytest.raises(BenchmarkError, match="--push-to-hub 'not a repo!' is not a Hub repo id"):
        run_search(**common, write=tmp_path / "fresh", push_to_hub="not a repo!")
    assert not (tmp_path / "out").exists() and not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("benchmark", ["pairwise", "rewardbench"])
def test_the_vectorised_bootstrap_equals_resampling_row_by_row(benchmark):
    """Same resamples, same intervals: numpy counts of each row per resample vs the benchmark's own formula on each
    resampled frame (RewardBench's weighted sections included; NaN and ties count as wrong)."""
    from dogerm_eval.benchmarks import get_benchmark
    from dogerm_eval.benchmarks.rewardbench import EXAMPLE_COUNTS
    from dogerm_eval.split_eval import bootstrap_intervals, bootstrap_pairs

    module = get_benchmark(benchmark)
    rng = np.random.default_rng(3)
    names = sorted(EXAMPLE_COUNTS)[:7] if benchmark == "rewardbench" else ["general", "arithmetic", "strings"]
    n = 300
    frame = pd.DataFrame({"id": range(n), "subset": rng.choice(names, n, p=[0.5] + [0.5 / (len(names) - 1)] * (len(names) - 1))})
    chosen, rejected = rng.normal(size=n), rng.normal(size=n)
    rejected[:5] = chosen[:5]  # ties
    chosen[5:8] = np.nan

    def by_rows(index):
        return module.metrics(module.evaluate(frame.iloc[index].reset_index(drop=True),
                                              np.concatenate([chosen[index], rejected[index]])).summary())

    expected = bootstrap_intervals(by_rows, n, samples=150, seed=7)
    found = bootstrap_pairs(chosen > rejected, frame["subset"].tolist(),
                            lambda acc, pooled: module.metrics(module.summary_of(acc, pooled)), samples=150, seed=7)
    assert found.keys() == expected.keys() and len(found) >= 3
    for name in expected:
        np.testing.assert_allclose(found[name], expected[name], rtol=0, atol=1e-12, err_msg=name)


def test_several_domains_are_searched_jointly_and_resumed(tmp_path):
    """Two domain models, a combined objective, the study resumed by a rerun, the chosen configuration written."""
    import yaml

    rm, lm = tiny.build_pair(tmp_path / "in")
    _, other = tiny.build_pair(tmp_path / "other", seed=1)
    data = _pairs(tmp_path / "pairs.jsonl")
    args = ["--rm", str(rm), "--domain", str(lm), "--domain", str(other), "--benchmark", "pairwise", "--data",
            str(data), "--objective", "mean(pairwise/arithmetic, pairwise/general)", "--max-evals", "5",
            "--bootstrap", "20", "--output-dir", str(tmp_path / "out"), "--write", str(tmp_path / "best")]
    first = CliRunner().invoke(command(), args)
    assert first.exit_code == 0, first.output
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    keys = {f"lambda[{lm}]", f"lambda[{other}]"}
    assert record["settings"]["sampler"] == "gp" and record["settings"]["evaluated"] == 5
    assert len(record["points"]) == 5 and all(set(p["params"]) == keys for p in record["points"])
    assert all(sum(p["params"].values()) <= 1 for p in record["points"])
    objective = "mean(pairwise/arithmetic, pairwise/general)"
    assert all(p["metrics"][objective] == pytest.approx(
        (p["metrics"]["pairwise/arithmetic"] + p["metrics"]["pairwise/general"]) / 2) for p in record["points"])
    assert objective in record["points"][1]["intervals"] and objective in record["test"]
    chosen = yaml.safe_load((tmp_path / "out" / "chosen.yml").read_text())
    assert [m["parameters"]["lambda"] for m in chosen["models"]] == [
        record["chosen"]["params"][f"lambda[{lm}]"], record["chosen"]["params"][f"lambda[{other}]"]]
    assert (tmp_path / "out" / "study.journal").is_file() and (tmp_path / "out" / "search.png").stat().st_size > 1000
    from dogerm_mergekit.contract import finished_points

    [(written, _)] = finished_points(tmp_path / "best")  # the chosen merge, as dogerm-sweep writes it
    assert written == record["chosen"]["params"]
    again = CliRunner().invoke(command(), args)
    assert again.exit_code == 0 and "(0 evaluations)" in again.output, again.output
    assert json.loads((tmp_path / "out" / "search.json").read_text())["chosen"] == record["chosen"]


def test_two_worker_processes_share_an_rdb_study(tmp_path):
    """--n-workers 2 with an SQLite URL: the real evaluator pickled into a spawned process; every point evaluated
    once (that both workers take trials is shown in test_study, where a barrier makes them meet)."""
    from dogerm_eval.options import default_options

    rm, lm = tiny.build_pair(tmp_path / "in")
    _, other = tiny.build_pair(tmp_path / "other", seed=1)
    data = _pairs(tmp_path / "pairs.jsonl")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_search(str(rm), [str(lm), str(other)], "pairwise", str(data), None, "pairwise/score", None, 7, 0.5,
                        0, tmp_path / "out", default_options(dtype="float32", device="cpu"), bootstrap=0, storage=url,
                        n_workers=2, sampler="random")
    assert result["settings"]["evaluated"] == 7 and len(result["points"]) == 7
    trials = open_study_for(result, url)
    points = [json.dumps(t.user_attrs["point"], sort_keys=True) for t in trials if "metrics" in t.user_attrs]
    assert len(points) == len(set(points)) == 6


def open_study_for(result, url):
    import optuna

    return optuna.load_study(study_name=result["settings"]["study"], storage=url).get_trials()


def test_a_kernel_configuration_is_searched_and_its_choice_written(tmp_path):
    """--config dogerm_ties with a model's weight and the top-level density free; --write writes the chosen point
    as dogerm-sweep's kernel grid does; a depth schedule's --write is refused before any model loads."""
    import yaml

    from dogerm_mergekit.contract import finished_points

    rm, lm = tiny.build_pair(tmp_path / "in")
    _, base = tiny.build_pair(tmp_path / "base", seed=2)
    config = tmp_path / "ties.yml"
    config.write_text(yaml.safe_dump({"merge_method": "dogerm_ties", "base_model": str(base), "models": [
        {"model": str(rm), "parameters": {"weight": 1.0}}, {"model": str(lm), "parameters": {"weight": 0.5}}],
        "parameters": {"density": 0.5}}))
    data = _pairs(tmp_path / "pairs.jsonl")
    args = ["--config", str(config), "--param", "weight[lm]=0:1", "--param", "density=0.2:1", "--benchmark",
            "pairwise", "--data", str(data), "--objective", "pairwise/score", "--max-evals", "3", "--sampler", "random",
            "--bootstrap", "0", "--output-dir", str(tmp_path / "out"), "--write", str(tmp_path / "best")]
    done = CliRunner().invoke(command(), args)
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    assert record["settings"]["method"] == "dogerm_ties" and len(record["points"]) == 3
    assert record["points"][0]["params"] == {}  # the reward model alone
    assert all(set(p["params"]) == {f"weight[{lm}]", "density"} for p in record["points"][1:])
    chosen = record["points"][1]["params"] if not record["chosen"]["params"] else record["chosen"]["params"]
    if record["chosen"]["params"]:
        assert [p for p, _ in finished_points(tmp_path / "best")] == [chosen]
    from dogerm_eval.search import publish
    from dogerm_eval.space import parse_space

    publish(parse_space(config.read_text(), "ties.yml", ("weight[lm]=0:1", "density=0.2:1")), chosen,
            tmp_path / "direct", None, False)  # whatever was chosen, a kernel point is written as dogerm-sweep does
    [(written, folder)] = finished_points(tmp_path / "direct")
    assert written == chosen and (folder / "mergekit_config.yml").is_file()
    refused = CliRunner().invoke(command(), ["--rm", str(rm), "--domain", str(lm), "--param", "lambda@2=0:1",
                                             *args[6:12], "--output-dir", str(tmp_path / "o2"), "--write",
                                             str(tmp_path / "b2")])
    assert refused.exit_code != 0 and "--write takes plain lambdas or kernel parameters" in str(refused.exception)
    assert not (tmp_path / "o2").exists()


def test_a_search_says_each_message_once(tmp_path):
    """Every point plans its merge again: the plan is said once, and no line of the log repeats."""
    from dogerm_eval.cli import main

    rm, lm = tiny.build_pair(tmp_path / "in")
    args = ["search", "--rm", str(rm), "--domain", str(lm), "--benchmark", "pairwise", "--data",
            str(_pairs(tmp_path / "pairs.jsonl")), "--objective", "pairwise/arithmetic", "--max-evals", "3",
            "--output-dir", str(tmp_path / "out")]
    done = CliRunner().invoke(main, args)  # through the group, which sets up the log as the console script does
    assert done.exit_code == 0, done.output
    lines = [line for line in done.output.splitlines() if line.strip() and "%|" not in line]  # not progress bars
    assert sum("plan:" in line for line in lines) == 1, done.output
    assert len(lines) == len(set(lines)), done.output
