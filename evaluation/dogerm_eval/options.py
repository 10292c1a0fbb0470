"""Options and helpers shared by every scoring command of ``dogerm-eval``.

Import-light (no torch, transformers, datasets, pandas): ``--help`` must not load them; commands import them when
they run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dogerm_eval.errors import BenchmarkError, OptionError
from dogerm_eval.formatting import FALLBACK_TEMPLATES, FormatSettings
from dogerm_eval.nonfinite import ALLOW, POLICY_KEY
from dogerm_mergekit.dtypes import RUN_DTYPES
from dogerm_eval.results import DEFAULT_CHUNK_SIZE

if TYPE_CHECKING:
    from dogerm_eval.benchmarks import Task
    from dogerm_eval.models import ResolvedModel
    from dogerm_eval.scorer import RewardScorer

DEFAULT_OUTPUT = "./dogerm-eval-results"
LAUNCHED_ENV = "DOGERM_EVAL_LAUNCHED"  # set in the processes started by --num-processes
SCORING_DTYPES = RUN_DTYPES
"""The dtypes ``--dtype`` accepts besides ``auto``."""


class _EchoHandler(logging.Handler):
    """Writes records through ``click.echo`` to the current stderr (which CliRunner may have swapped), each message
    once per command (a search plans the same merge at every point)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if text not in self.seen:
            self.seen.add(text)
            click.echo(text, err=True)


def configure_logging() -> None:
    """INFO messages of ``dogerm_eval`` and ``dogerm_mergekit`` to stderr, as plain lines; once per process.

    In a multi-process launch only rank 0 reports progress (the others show warnings and errors).
    """
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    for name in ("dogerm_eval", "dogerm_mergekit"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False  # printed here once, whatever handlers other libraries give the root logger
        echo = [h for h in logger.handlers if isinstance(h, _EchoHandler)]
        for handler in echo:
            handler.seen.clear()  # a new command (CliRunner runs several in one process)
        if not echo:
            handler = _EchoHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)


TRUST_REMOTE_CODE = click.option(
    "--trust-remote-code", is_flag=True,
    help="Run the Python code a model repository ships for its own architecture (e.g. a custom reward head); off by "
    "default: give it only for repositories whose code you trust.")


OVERWRITE = click.option(
    "--overwrite", is_flag=True,
    help="Replace results in OUT scored on other data or with other settings, and OUT/sweep.csv (default: refuse "
    "such a run before scoring; a sweep table whose numbers differ from OUT/sweep.csv's goes beside it).")


def split_list(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def common_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every scoring command."""
    options = [
        click.option("--subsets", help="Comma-separated subsets to keep (autoj: scenarios, or math/code/other; "
                     "Best-of-N benchmarks have none)."),
        click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUTPUT,
                     show_default=True, help="Results go to OUT/<model-slug>/<benchmark>.json."),
        click.option("--system-prompt", help="System message for every conversation; 'llama2-default' = the default "
                     "Llama-2 system prompt (DogeRM's Llama-2 RMs). Default: none."),
        click.option("--fallback-template", type=click.Choice(sorted(FALLBACK_TEMPLATES)),
                     help="Chat template used only when the tokenizer has none."),
        click.option("--max-length", type=click.IntRange(min=2), default=2048, show_default=True,
                     help="Maximum tokens per text."),
        click.option("--truncation-side", type=click.Choice(["right", "left", "tokenizer"]),
                     help="Which end of a text longer than --max-length is cut; tokenizer = the side the tokenizer was "
                     "saved with. Default: right; with --compat rewardbench, what rewardbench's script does for the "
                     "benchmark (run_rm.py for rewardbench/pairwise: left; run_v2.py for rewardbench2: tokenizer)."),
        click.option("--double-bos", type=click.Choice(["keep", "mask"]), default="keep", show_default=True,
                     help="A double BOS (template + tokenizer): keep it (as DogeRM) or mask the first "
                     "(as RewardBench)."),
        click.option("--dtype", type=click.Choice(["auto", *SCORING_DTYPES]), default="auto",
                     show_default=True, help="auto = bf16/fp16 on GPU, fp32 on CPU."),
        click.option("--device", help="torch device (default: the accelerator of this process, else CPU)."),
        click.option("--batch-tokens", type=click.IntRange(min=1),
                     help="Padded tokens per batch in fast mode (default: the scorer's, by device)."),
        click.option("--compat", type=click.Choice(["fast", "rewardbench"]), default="fast", show_default=True,
                     help="fast: length-sorted batches, one score per distinct text; rewardbench: run_rm.py's / "
                     "run_v2.py's batches of 64 in dataset order and their truncation side (reproduces rewardbench, "
                     "including its float-noise ties)."),
        click.option("--num-processes", type=int, default=1, show_default=True,
                     help="Score with N processes (one per GPU) through `accelerate launch`."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), default=DEFAULT_CHUNK_SIZE, show_default=True,
                     help="Save scores every N texts, so an interrupted run resumes (with --compat rewardbench "
                     "rounded up to a multiple of 64, so that its batches stay the same)."),
        click.option("--push-results", is_flag=True,
                     help="Write the scores into the model card's model-index of the evaluated Hub repo/branch."),
        click.option("--allow-nonfinite-scores", is_flag=True,
                     help="Report results although the model scored NaN or inf (counted as never winning; results "
                     "marked with the count). Default: such a model fails with the count, nothing written."),
        TRUST_REMOTE_CODE,
        OVERWRITE,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def scoring_settings(options: dict[str, Any]) -> tuple[FormatSettings, dict[str, Any]]:
    """FormatSettings and the scoring settings that enter the cache key."""
    try:
        fmt = FormatSettings(system_prompt=options["system_prompt"], fallback_template=options["fallback_template"],
                             max_length=options["max_length"], truncation_side=options["truncation_side"] or "right",
                             double_bos=options["double_bos"])
    except ValueError as exc:
        raise BenchmarkError(f"invalid formatting settings: {exc}") from exc
    record = {"format": fmt.record(), "dtype": options["dtype"], "device": options["device"] or "auto",
              "token_budget": options["batch_tokens"] or "auto", "compat": options["compat"],
              "truncation": "given" if options["truncation_side"] else "default"}
    if options.get("allow_nonfinite_scores"):
        record[POLICY_KEY] = ALLOW  # taken out again before cache keys (dogerm_eval.nonfinite)
    return fmt, record


def scorer_factory(fmt: FormatSettings, options: dict[str, Any]) -> Callable[[ResolvedModel], RewardScorer]:
    from dogerm_eval.scorer import RewardScorer

    return lambda model: RewardScorer(model, format=fmt, dtype=options["dtype"], device=options["device"],
                                      token_budget=options["batch_tokens"], compat=options["compat"],
                                      trust_remote_code=options.get("trust_remote_code", False))


def relaunch_if_needed(num_processes: int) -> None:
    """Re-run this command under `accelerate launch --multi_gpu` with N processes: one per GPU, or N CPU processes
    (gloo) on a machine without CUDA.

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

    if torch.cuda.is_available() and torch.cuda.device_count() < num_processes:
        raise click.BadParameter(f"{num_processes} processes need as many CUDA GPUs "
                                 f"({torch.cuda.device_count()} visible)", param_hint="--num-processes")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(num_processes), "-m", "dogerm_eval.cli", *sys.argv[1:]]
    raise SystemExit(subprocess.call(command, env={**os.environ, LAUNCHED_ENV: "1"}))



def check_output_dir(path: Path) -> None:
    """OptionError unless ``path`` is, or can be created as, a folder: no part of it may be an existing file."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"cannot be created: {candidate} is a file"
                raise OptionError(f"--output-dir {path} {where}; choose a folder path")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise OptionError(f"--output-dir {path}: {candidate} is not writable; choose another folder")
            return


def check_options(options: dict[str, Any]) -> None:
    """Refuse option values and combinations that cannot work, before any model is loaded or file written."""
    check_output_dir(options["output_dir"])
    if options.get("allow_nonfinite_scores") and options.get("push_results"):
        raise OptionError("--allow-nonfinite-scores cannot be used with --push-results: a model card's model-index "
                          "has no place for the mark; fix the model (or evaluate without --push-results)")
    device = options.get("device")
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise OptionError(f"--device {device}: no CUDA device is available here; use --device cpu or leave "
                              "--device out")


def evaluate_model(
    model: str | ResolvedModel, make_tasks: Callable[[], Sequence[Task]], options: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The single-model commands' flow: settings, model (a reference, or already resolved), tasks (all checked
    before scoring), run, optional push."""
    from dogerm_eval.benchmarks import run_model
    from dogerm_eval.models import resolve_model
    from dogerm_eval.push import check_pushable, push_results

    check_options(options)
    fmt, record = scoring_settings(options)
    tasks = make_tasks()  # the data are read and checked before a model is downloaded or loaded
    resolved = resolve_model(model, options["trust_remote_code"]) if isinstance(model, str) else model
    if options["push_results"]:
        check_pushable(resolved)
    results = run_model(tasks, resolved, record, scorer_factory(fmt, options), options["output_dir"],
                        options["checkpoint_every"], options.get("overwrite", False))
    if options["push_results"]:
        push_results(resolved, results)
    return results


def default_options(**overrides: Any) -> dict[str, Any]:
    """The scoring commands' option defaults (as the CLI would pass them), with ``overrides``; for library callers."""
    command = click.command()(common_options(lambda **_: None))
    return {**command.make_context("defaults", []).params, **overrides}
