"""`dogerm-eval`: score reward models on RewardBench, RewardBench 2 and Auto-J, alone or as a lambda sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from dogerm_eval.benchmarks import BENCHMARKS, Task, run_model
from dogerm_eval.errors import BenchmarkError, EvalError
from dogerm_eval.formatting import FALLBACK_TEMPLATES, FormatSettings
from dogerm_eval.models import ResolvedModel, resolve_model
from dogerm_eval.push import check_pushable, push_results
from dogerm_eval.report import format_table, sweep_frame, write_report
from dogerm_eval.results import DEFAULT_CHUNK_SIZE, result_path
from dogerm_eval.scorer import RewardScorer
from dogerm_eval.sweep import discover_sweep, evaluate_sweep, resolve_members

DEFAULT_OUTPUT = "./dogerm-eval-results"
LAUNCHED_ENV = "DOGERM_EVAL_LAUNCHED"  # set in the processes started by --num-processes


def _split(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def common_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every scoring command."""
    options = [
        click.option("--subsets", help="Comma-separated subsets to keep (Auto-J: scenarios, or math/code/other)."),
        click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUTPUT,
                     show_default=True, help="Results go to OUT/<model-slug>/<benchmark>.json."),
        click.option("--system-prompt", help="System message for every conversation; 'llama2-default' = the default "
                     "Llama-2 system prompt (DogeRM's Llama-2 RMs). Default: none."),
        click.option("--fallback-template", type=click.Choice(sorted(FALLBACK_TEMPLATES)),
                     help="Chat template used only when the tokenizer has none."),
        click.option("--max-length", type=int, default=2048, show_default=True, help="Maximum tokens per text."),
        click.option("--truncation-side", type=click.Choice(["right", "left"]), default="right", show_default=True),
        click.option("--double-bos", type=click.Choice(["keep", "mask"]), default="keep", show_default=True,
                     help="A double BOS (template + tokenizer): keep it (as DogeRM) or mask the first "
                     "(as RewardBench)."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
                     show_default=True, help="auto = bf16/fp16 on GPU, fp32 on CPU."),
        click.option("--device", help="torch device (default: the accelerator of this process, else CPU)."),
        click.option("--batch-tokens", type=int,
                     help="Padded tokens per batch in fast mode (default: the scorer's, by device)."),
        click.option("--compat", type=click.Choice(["fast", "rewardbench"]), default="fast", show_default=True,
                     help="fast: length-sorted, de-duplicated batches; rewardbench: run_rm.py's batches of 64."),
        click.option("--num-processes", type=int, default=1, show_default=True,
                     help="Score with N processes (one per GPU) through `accelerate launch`."),
        click.option("--checkpoint-every", type=int, default=DEFAULT_CHUNK_SIZE, show_default=True,
                     help="Save scores every N conversations, so an interrupted run resumes."),
        click.option("--push-results", is_flag=True,
                     help="Write the scores into the model card's model-index of the evaluated Hub repo/branch."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _settings(options: dict[str, Any]) -> tuple[FormatSettings, dict[str, Any]]:
    """FormatSettings and the scoring settings that enter the cache key."""
    try:
        fmt = FormatSettings(system_prompt=options["system_prompt"], fallback_template=options["fallback_template"],
                             max_length=options["max_length"], truncation_side=options["truncation_side"],
                             double_bos=options["double_bos"])
    except ValueError as exc:
        raise BenchmarkError(f"invalid formatting settings: {exc}") from exc
    record = {"format": fmt.record(), "dtype": options["dtype"], "device": options["device"] or "auto",
              "token_budget": options["batch_tokens"] or "auto", "compat": options["compat"]}
    return fmt, record


def _scorer_factory(fmt: FormatSettings, options: dict[str, Any]) -> Callable[[ResolvedModel], RewardScorer]:
    return lambda model: RewardScorer(model, format=fmt, dtype=options["dtype"], device=options["device"],
                                      token_budget=options["batch_tokens"], compat=options["compat"])


def _relaunch_if_needed(num_processes: int) -> None:
    """Re-run this command under `accelerate launch --multi_gpu` with N processes, one per GPU.

    No-op for N = 1, and inside a launch (ours, or the user's own `accelerate launch -m dogerm_eval.cli ...`).
    Errors are reported as click errors (this runs before a command's own error handling).
    """
    if num_processes < 1:
        raise click.BadParameter("must be at least 1", param_hint="--num-processes")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get(LAUNCHED_ENV) or world > 1:
        if num_processes > 1 and world != num_processes:
            raise click.BadParameter(f"{num_processes}, but this launch has {world} processes",
                                     param_hint="--num-processes")
        return
    if num_processes == 1:
        return
    import torch

    if torch.cuda.device_count() < num_processes:
        raise click.BadParameter(f"{num_processes} processes need as many CUDA GPUs "
                                 f"({torch.cuda.device_count()} visible)", param_hint="--num-processes")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(num_processes), "-m", "dogerm_eval.cli", *sys.argv[1:]]
    raise SystemExit(subprocess.call(command, env={**os.environ, LAUNCHED_ENV: "1"}))


def _data_paths(data: Sequence[str], names: Sequence[str]) -> dict[str, str | None]:
    """`--data PATH` (one benchmark) or `--data NAME=PATH` (repeatable) -> benchmark -> path."""
    paths: dict[str, str | None] = dict.fromkeys(names)
    for item in data:
        name, sep, path = item.partition("=")
        if sep and name in BENCHMARKS:
            if name not in paths:
                raise BenchmarkError(f"--data {item}: {name} is not among the benchmarks {list(names)}")
            paths[name] = path
        elif len(names) == 1:
            paths[names[0]] = item
        else:
            raise BenchmarkError(f"--data {item}: with several benchmarks write --data NAME=PATH")
    return paths


def _fail(exc: EvalError) -> None:
    raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="dogerm-eval")
def main() -> None:
    """Evaluate reward models (and DogeRM merges) on RewardBench, RewardBench 2 and Auto-J.

    MODEL is a local folder or a Hub id with an optional revision (org/name@lambda-0.30). Data come from the Hub
    (or GitHub for Auto-J) unless --data names a local parquet/jsonl file; the dataset revision (commit, or the
    file's sha256) is recorded. Results: OUT/<model-slug>/<benchmark>.json and a per-example parquet beside it;
    a rerun with the same model, data and settings reuses them, an interrupted run resumes.
    """


def _benchmark_command(name: str, summary: str) -> click.Command:
    @main.command(name=name, help=f"{summary}\n\nMODEL: a local folder or org/name[@revision].")
    @click.argument("model")
    @click.option("--data", "data", help="Local .parquet/.jsonl file in the benchmark's schema (default: download).")
    @common_options
    def command(model: str, data: str | None, **options: Any) -> None:
        _relaunch_if_needed(options["num_processes"])
        try:
            fmt, record = _settings(options)
            task = Task.prepare(name, data, _split(options["subsets"]))
            resolved = resolve_model(model)
            if options["push_results"]:
                check_pushable(resolved)
            results = run_model([task], resolved, record, _scorer_factory(fmt, options), options["output_dir"],
                                options["checkpoint_every"], log=click.echo)
            if options["push_results"]:
                push_results(resolved, results, log=click.echo)
        except EvalError as exc:
            _fail(exc)
        result = results[name]
        click.echo(format_table(sweep_frame([(0.0, results)]).drop(columns="lambda")))
        click.echo(f"{name} score: {result['score']:.4f}")

    return command


_benchmark_command("rewardbench", "RewardBench v1 (allenai/reward-bench, filtered): subsets, the four sections, "
                                  "DogeRM's Math (math-prm) and Code (hep-*), and the overall score.")
_benchmark_command("rewardbench2", "RewardBench 2 (allenai/reward-bench-2, test): best-of-4 with tie credit, the Ties "
                                   "score, overall = mean of the six subsets.")
_benchmark_command("autoj", "Auto-J pairwise test set: DogeRM's tie-free Math/Code/Other accuracy and Auto-J's "
                            "agreement with a tie threshold tuned on the test set.")


@main.command()
@click.argument("sweep")
@click.option("--benchmark", "benchmarks", default="rewardbench", show_default=True,
              help="Comma-separated benchmarks. Run here: " + ", ".join(BENCHMARKS) + "; any other name (e.g. "
                   "bon-gsm8k) is read from each member's existing OUT/<slug>/<name>.json.")
@click.option("--data", "data", multiple=True,
              help="Local data file: PATH with one benchmark, NAME=PATH (repeatable) with several.")
@common_options
def sweep(sweep: str, benchmarks: str, data: tuple[str, ...], **options: Any) -> None:
    """Evaluate every member of a lambda sweep with identical settings; write OUT/sweep.csv and plots.

    SWEEP is a folder with lambda-0.00/, lambda-0.05/, ... sub-folders (full RM checkpoints; an optional sweep.json
    lists the lambdas) or a Hub repo with lambda-* branches. Writes OUT/sweep.csv (lambda, then one column per metric,
    e.g. rewardbench/math), OUT/sweep-<benchmark>.png (metrics vs lambda, lambda = 0 dashed) and prints the table.
    """
    _relaunch_if_needed(options["num_processes"])
    names = _split(benchmarks) or []
    try:
        fmt, record = _settings(options)
        runnable = [n for n in names if n in BENCHMARKS]
        paths = _data_paths(data, runnable)
        tasks = [Task.prepare(n, paths[n], _split(options["subsets"])) for n in runnable]
        members = discover_sweep(sweep, log=click.echo)
        local = Path(sweep).expanduser().is_dir()
        resolved = [(lam, resolve_model(ref)) for lam, ref in members] if local else resolve_members(members)
        if local:
            for _, model in resolved:
                _read_existing(model, [n for n in names if n not in BENCHMARKS], options["output_dir"])
        evaluated = evaluate_sweep(resolved, tasks, record, _scorer_factory(fmt, options), options["output_dir"],
                                   options["checkpoint_every"], log=click.echo)
        rows = []
        for lam, model, results in evaluated:
            results.update(_read_existing(model, [n for n in names if n not in BENCHMARKS], options["output_dir"]))
            rows.append((lam, {n: results[n] for n in names}))
            if options["push_results"]:
                push_results(model, results, log=click.echo)
    except EvalError as exc:
        _fail(exc)
    frame = sweep_frame(rows)
    for path in write_report(frame, options["output_dir"]):
        click.echo(f"wrote {path}")
    click.echo(format_table(frame))


def _read_existing(model: ResolvedModel, names: Sequence[str], output_dir: Path) -> dict[str, dict[str, Any]]:
    """Results of benchmarks `sweep` does not run itself (e.g. Best-of-N), which must already exist."""
    found = {}
    for name in names:
        path = result_path(output_dir, model, name)
        if not path.is_file():
            raise BenchmarkError(f"unknown benchmark {name!r}: `sweep` runs {', '.join(BENCHMARKS)}; for others it "
                                 f"reads existing results, and {path} does not exist")
        found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


if __name__ == "__main__":
    main()
