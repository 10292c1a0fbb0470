"""`dogerm-eval`: score reward models on RewardBench, RewardBench 2 and Auto-J, alone or as a lambda sweep."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dogerm_eval import bon_commands, judge, search
from dogerm_eval.errors import BenchmarkError, OptionError
from dogerm_eval.options import (
    check_options,
    common_options,
    configure_logging,
    evaluate_model,
    relaunch_if_needed,
    scorer_factory,
    scoring_settings,
    split_list,
)
from dogerm_eval.registry import ENTRIES, NAMES, SUITE
from dogerm_eval.results import result_path

if TYPE_CHECKING:
    from dogerm_eval.models import ResolvedModel

LOG = logging.getLogger(__name__)


def _data_paths(data: Sequence[str], names: Sequence[str]) -> dict[str, str | None]:
    """`--data PATH` (one benchmark) or `--data NAME=PATH` (repeatable) -> benchmark -> path."""
    paths: dict[str, str | None] = dict.fromkeys(names)
    for item in data:
        name, sep, path = item.partition("=")
        if sep and (name in NAMES or name in names):
            if name not in paths:
                raise BenchmarkError(f"--data {item}: {name} is not among the benchmarks {list(names)}")
            paths[name] = path
        elif len(names) == 1:
            paths[names[0]] = item
        else:
            raise BenchmarkError(f"--data {item}: with several benchmarks write --data NAME=PATH")
    return paths


def _prepare_named(names: Sequence[str], paths: dict[str, str | None], subsets: Sequence[str] | None) -> list[Any]:
    """Each benchmark's task; with several, a hint to give a local file says how: ``--data NAME=PATH``."""
    from dogerm_eval.benchmarks import prepare_task
    from dogerm_eval.errors import EvalError

    tasks = []
    for name in names:
        try:
            tasks.append(prepare_task(name, paths[name], subsets))
        except EvalError as exc:
            if len(names) == 1:
                raise
            hinted = exc.message.replace("--data PATH", f"--data {name}=PATH")
            raise type(exc)(hinted.replace(f"{name} needs --data:", f"{name} needs --data {name}=PATH:")) from exc
    return tasks


class DogeRMEvalGroup(click.Group):
    """Every error of a command is one line, exit 1: ours as they are, any other (from a library, a bug) as
    ``Error: dogerm-eval <command> failed: <type>: <message>`` (``DOGERM_DEBUG=1`` shows its traceback)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["dogerm_eval.command"] = name
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        from dogerm_mergekit.console import as_command_error

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            doing = f"dogerm-eval {ctx.meta.get('dogerm_eval.command') or ''}".strip()
            raise as_command_error(exc, doing) from exc


@click.group(cls=DogeRMEvalGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="dogerm-eval")
def main() -> None:
    """Evaluate reward models (and DogeRM merges) on the reward-model benchmarks below, alone or as a suite.

    MODEL is a local folder or a Hub id with an optional revision (org/name@lambda-0.30). Data come from the Hub
    (or GitHub for Auto-J) unless --data names a local file (parquet, JSON array or JSON lines, told apart by content:
    RM-Bench's total_dataset.json and RewardMATH_direct.json load as published); the dataset revision (commit, or the
    file's sha256) is recorded. Results: OUT/<model-slug>/<benchmark>.json and a per-example parquet beside it;
    a rerun with the same model, data and settings reuses them, an interrupted run resumes.
    """
    configure_logging()


def _benchmark_command(name: str, summary: str) -> click.Command:
    @main.command(name=name, help=f"{summary}\n\nMODEL: a local folder or org/name[@revision].")
    @click.argument("model")
    @click.option("--data", "data", help="Local data file in the benchmark's schema: parquet, JSON array or JSON lines (default: download).")
    @common_options
    def command(model: str, data: str | None, **options: Any) -> None:
        from dogerm_eval.benchmarks import prepare_task
        from dogerm_eval import truncation
        from dogerm_eval.nonfinite import note
        from dogerm_eval.report import format_table, sweep_frame

        relaunch_if_needed(options["num_processes"])
        results = evaluate_model(model, lambda: [prepare_task(name, data, split_list(options["subsets"]))],
                                 options)
        result = results[name]
        click.echo(format_table(sweep_frame([({}, results)])))
        partial = " (partial: see * above)" if result.get("complete") is False else ""
        click.echo(f"{name} score: {result['score']:.4f}{partial}{note(result)}{truncation.note(result)}")

    return command


for _entry in ENTRIES:
    _benchmark_command(_entry.name, _entry.summary)


@main.command(name="suite")
@click.argument("model")
@click.option("--data", "data", multiple=True,
              help="NAME=PATH (repeatable): a local file for one of the seven benchmarks (rmb needs one: the "
                   "RMB_dataset folder); the others download their data by default.")
@common_options
def suite_command(model: str, data: tuple[str, ...], **options: Any) -> None:
    """The seven benchmarks reward-model papers report (RewardBench v1 and v2, PPE Preference, PPE Correctness,
    RMB, RM-Bench, JudgeBench), each by its headline number, and their average: one table,
    OUT/<model-slug>/suite.json and this model's row of OUT/suite.csv (besides each benchmark's own result).

    MODEL: a local folder or org/name[@revision].
    """
    from dogerm_eval import suite
    from dogerm_eval.models import resolve_model

    if options["subsets"]:
        raise click.BadParameter("the suite scores every subset of its benchmarks", param_hint="--subsets")
    relaunch_if_needed(options["num_processes"])
    paths = _data_paths(data, SUITE)
    check_options(options)
    tasks = _prepare_named(SUITE, paths, None)  # the data are checked before the model is downloaded
    resolved = resolve_model(model, options["trust_remote_code"])
    results = evaluate_model(resolved, lambda: tasks, options)
    record = suite.summary(results)
    for path in suite.write(options["output_dir"], resolved, record):
        LOG.info("wrote %s", path)
    click.echo(suite.table(record))


@main.command()
@click.argument("sweep", required=False)
@click.option("--in-memory", is_flag=True,
              help="Merge --rm and --domain for each of --lambdas (or --grid) in memory instead of reading checkpoints.")
@click.option("--rm", "reward_model", help="With --in-memory: the reward model (folder or org/name[@revision]).")
@click.option("--domain", "domain_models", multiple=True,
              help="With --in-memory: a domain LM (folder or org/name[@revision]); repeat it for several.")
@click.option("--lambdas", "lambda_spec", default=None,
              help="With --in-memory and one --domain: start:stop:step (stop included) or a comma list "
                   "[default: 0:1:0.05].")
@click.option("--grid", "grids", multiple=True, metavar="lambda[MODEL]=SPEC",
              help="With --in-memory and several --domain: per-domain lambdas as dogerm-sweep --grid takes them "
                   "(repeat it; the product, sums outside [0, 1] left out; MODEL: the last path component).")
@click.option("--benchmark", "benchmarks", default="rewardbench", show_default=True,
              help="Comma-separated benchmarks. Run here: " + ", ".join(NAMES) + "; suite = the seven of `dogerm-eval "
                   "suite` and their average; any other name (e.g. "
                   "bon-gsm8k) is read from each member's existing OUT/<slug>/<name>.json.")
@click.option("--data", "data", multiple=True,
              help="Local data file: PATH with one benchmark, NAME=PATH (repeatable) with several.")
@click.option("--candidates", "candidate_files", multiple=True,
              help="bon-gsm8k=PATH, bon-mbpp=PATH or bon-humaneval=PATH (repeatable): run that Best-of-N benchmark "
                   "on these candidates for every member (MBPP and HumanEval with their default sandbox limits).")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A `dogerm-eval judge` result (OUT/<judge>/judge-<benchmark>.json) on the same data: a reference "
                   "row of the table (column baseline) and a dotted line in the plot (repeatable).")
@common_options
def sweep(sweep: str | None, benchmarks: str, data: tuple[str, ...], candidate_files: tuple[str, ...],
          baselines: tuple[Path, ...], in_memory: bool, reward_model: str | None, domain_models: tuple[str, ...],
          lambda_spec: str | None, grids: tuple[str, ...], **options: Any) -> None:
    """Evaluate every member of a lambda sweep with identical settings; write OUT/sweep.csv, metrics.json and plots.

    SWEEP is a dogerm-sweep output (lambda-0.00/, lambda-0.05/, ... full RM checkpoints; its sweep.json says which
    are finished) or a Hub repo with lambda-* branches. Writes OUT/sweep.csv (lambda, then one column per metric,
    e.g. rewardbench/math), the same table as OUT/metrics.json (for dogerm-push --results), OUT/sweep-<benchmark>.png
    (metrics vs lambda, lambda = 0 dashed) and prints the table. Each --baseline (a judge's result on the same data)
    adds a reference row (no lambda; its name in the column baseline) and a dotted line; metrics.json keeps the
    members only.
    With --in-memory, no SWEEP: the members are merged on the fly from --rm and --domain for each of --lambdas, or
    from several --domain models for each vector of --grid lambda[MODEL]=SPEC (one column per domain model).
    """
    from dogerm_eval.benchmarks import prepare_task
    from dogerm_eval.models import resolve_model
    from dogerm_eval.push import push_results
    from dogerm_eval.report import format_table, sweep_frame, write_report
    from dogerm_eval.sweep import discover_sweep, evaluate_sweep, resolve_members

    if in_memory == bool(sweep) or (in_memory and not (reward_model and domain_models)):
        raise click.UsageError("give SWEEP, or --in-memory with --rm, --domain (and --lambdas or --grid)")
    if grids and lambda_spec is not None:
        raise click.UsageError("give --lambdas (one --domain) or --grid (per-domain lambdas), not both")
    if not in_memory and (reward_model or domain_models or grids):
        raise OptionError("--rm and --domain are only used with --in-memory; give either SWEEP or --in-memory "
                          "--rm RM --domain LM")
    if in_memory and options["push_results"]:
        raise OptionError("--push-results cannot be used with --in-memory: its members are merged in memory and "
                          "exist on no Hub branch; drop --push-results, or write the checkpoints with dogerm-sweep, "
                          "push them with dogerm-push and evaluate the Hub sweep with --push-results")
    relaunch_if_needed(options["num_processes"])
    names = split_list(benchmarks) or []
    with_suite = "suite" in names
    if with_suite and options["subsets"]:
        raise click.BadParameter("the suite scores every subset of its benchmarks", param_hint="--subsets")
    if with_suite:
        names = [n for n in names if n != "suite"] + [n for n in SUITE if n not in names]
    check_options(options)
    fmt, record = scoring_settings(options)
    candidates = dict(item.partition("=")[::2] for item in candidate_files)
    runnable = [n for n in names if n in NAMES or n in candidates]
    paths = _data_paths(data, runnable)
    tasks = [bon_commands.sweep_task(n, paths[n], candidates[n]) if n in candidates
             else prepare_task(n, paths[n], split_list(options["subsets"])) for n in runnable]
    references = [judge.read_baseline(path, tasks) for path in baselines]  # refused before anything is scored
    make_scorer = scorer_factory(fmt, options)
    if in_memory:
        from dogerm_eval.inmemory import InMemorySweep

        merged = InMemorySweep(reward_model, domain_models, lambda_spec, options["trust_remote_code"], grids)
        resolved, make_scorer, local = merged.members, merged.scorer_factory(make_scorer), True
    else:
        members = discover_sweep(sweep)
        local = Path(sweep).expanduser().is_dir()
        trust = options["trust_remote_code"]
        resolved = [(lam, resolve_model(ref, trust)) for lam, ref in members] if local \
            else resolve_members(members, trust)
    if local:
        from dogerm_eval.benchmarks import check_outputs

        check_outputs(tasks, [model for _, model in resolved], record, options["output_dir"], options["overwrite"])
        for _, model in resolved:
            _read_existing(model, [n for n in names if n not in runnable], options["output_dir"])
    evaluated = evaluate_sweep(resolved, tasks, record, make_scorer, options["output_dir"],
                               options["checkpoint_every"], options["overwrite"])
    rows = []
    for point, model, results in evaluated:
        results.update(_read_existing(model, [n for n in names if n not in runnable], options["output_dir"]))
        chosen = {n: results[n] for n in names}
        if with_suite:
            from dogerm_eval import suite

            chosen[suite.NAME] = suite.summary(results)
            suite.write(options["output_dir"], model, chosen[suite.NAME])
        rows.append((point, chosen))
        if options["push_results"]:
            push_results(model, results)
    frame = sweep_frame(rows, references)
    for path in write_report(frame, options["output_dir"], split_list(options["subsets"]), options["overwrite"]):
        LOG.info("wrote %s", path)
    click.echo(format_table(frame))


def _read_existing(model: ResolvedModel, names: Sequence[str], output_dir: Path) -> dict[str, dict[str, Any]]:
    """Results of benchmarks `sweep` does not run itself (e.g. Best-of-N), which must already exist."""
    found = {}
    for name in names:
        path = result_path(output_dir, model, name)
        if not path.is_file():
            raise BenchmarkError(f"unknown benchmark {name!r}: `sweep` runs {', '.join(NAMES)}; for others it "
                                 f"reads existing results, and {path} does not exist")
        found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


for _command in bon_commands.COMMANDS:
    main.add_command(_command)
main.add_command(search.command())
main.add_command(judge.command)

if __name__ == "__main__":
    main()
