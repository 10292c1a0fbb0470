"""Click commands for Best-of-N: `generate` (sample candidates), `bon-gsm8k`, `bon-mbpp` and `bon-humaneval` (rerank
them with a RM).

`dogerm_eval.cli` adds :data:`COMMANDS` to the `dogerm-eval` group; they share the scoring options of
`dogerm_eval.options`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dogerm_eval.errors import BenchmarkError
from dogerm_eval.formatting import FALLBACK_TEMPLATES
from dogerm_eval.options import (
    SCORING_DTYPES,
    TRUST_REMOTE_CODE,
    common_options,
    evaluate_model,
    relaunch_if_needed,
)
from dogerm_eval.sandbox import REFERENCE_TIMEOUT_S, SandboxLimits, active_defences

if TYPE_CHECKING:
    from dogerm_eval.benchmarks import Task

LOG = logging.getLogger(__name__)
BON_BENCHMARKS = ("gsm8k", "mbpp", "humaneval")
"""`generate --benchmark` names (their modules are imported when a command runs)."""
NS_HELP = "Reports, for N in 1, 2, 4, 8, 16 (up to the candidates per problem): the exact expected accuracy over all "
NS_HELP += "N-subsets, the authors' first-N accuracy, oracle pass@N and majority vote."


@click.command(name="generate")
@click.option("--policy", required=True, help="Policy LM: a local folder or org/name[@revision].")
@click.option("--benchmark", type=click.Choice(BON_BENCHMARKS), required=True)
@click.option("--samples", type=int, default=16, show_default=True, help="Candidates per problem.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Candidate file (JSON lines); appended to, problems already there are skipped.")
@click.option("--data", help="Local copy of the dataset in its Hub schema: parquet, JSON array or JSON lines "
              "(default: download).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=float, help="Default: the paper's (GSM8K 1.0, MBPP 0.1, HumanEval 0.2).")
@click.option("--top-p", type=float, help="Default: the paper's (GSM8K 1.0, MBPP and HumanEval 0.95).")
@click.option("--max-new-tokens", type=int, help="Default: 512.")
@click.option("--system-prompt", help="Policy system prompt (default: the paper's for the benchmark; '' for none).")
@click.option("--fallback-template", type=click.Choice(sorted(FALLBACK_TEMPLATES)),
              help="Chat template used only when the policy's tokenizer has none.")
@click.option("--dtype", type=click.Choice(["auto", *SCORING_DTYPES]), default="auto",
              show_default=True)
@click.option("--backend", type=click.Choice(["auto", "transformers", "vllm"]), default="auto", show_default=True,
              help="auto = vLLM when installed and a GPU is present, else transformers.")
@click.option("--limit", type=int, help="Only the first N problems (smoke tests).")
@TRUST_REMOTE_CODE
def generate(policy: str, benchmark: str, samples: int, out: Path, data: str | None, seed: int,
             temperature: float | None, top_p: float | None, max_new_tokens: int | None, system_prompt: str | None,
             fallback_template: str | None, dtype: str, backend: str, limit: int | None,
             trust_remote_code: bool) -> None:
    """Sample Best-of-N candidates from a policy LM with the paper's prompts and sampling settings."""
    from dogerm_eval.benchmarks import gsm8k, humaneval, mbpp
    from dogerm_eval.generate import GenerationSettings, generate_candidates

    module = {"gsm8k": gsm8k, "mbpp": mbpp, "humaneval": humaneval}[benchmark]
    from pydantic import ValidationError

    problems = module.problems(module.load(data).frame)[:limit]
    try:
        settings = GenerationSettings(
            policy=policy, benchmark=benchmark, samples=samples, seed=seed, stop=list(module.STOP),
            temperature=module.SAMPLING["temperature"] if temperature is None else temperature,
            top_p=module.SAMPLING["top_p"] if top_p is None else top_p,
            max_new_tokens=module.SAMPLING["max_new_tokens"] if max_new_tokens is None else max_new_tokens,
            system_prompt=module.SYSTEM_PROMPT if system_prompt is None else (system_prompt or None),
            response_prefix=module.RESPONSE_PREFIX,
        )
    except ValidationError as exc:  # the sampling settings, named by option
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "a sampling setting"
        raise click.BadParameter(f"{first['msg']} (got {first.get('input')!r})", param_hint=option) from None
    done = generate_candidates(problems, settings, out, dtype=dtype, fallback_template=fallback_template,
                               backend=backend, trust_remote_code=trust_remote_code)
    click.echo(f"{out}: generated {done} problems")


def _report(result: dict[str, Any]) -> None:
    from dogerm_eval.nonfinite import note

    click.echo(f"{'N':>3} {'expected':>9} {'first_n':>8} {'oracle':>7} {'majority':>9}")
    for n, row in result["bon"].items():
        majority = "-" if row["majority"] is None else f"{row['majority']:.4f}"
        click.echo(f"{n:>3} {row['expected']:9.4f} {row['first_n']:8.4f} {row['oracle']:7.4f} {majority:>9}")
    if note(result):
        click.echo(f"{result['benchmark']}:{note(result)}")


def _run(name: str, model: str, options: dict[str, Any], make_task: Any) -> None:
    if options["subsets"]:
        raise click.BadParameter("Best-of-N benchmarks have no subsets", param_hint="--subsets")
    relaunch_if_needed(options["num_processes"])
    results = evaluate_model(model, lambda: [make_task()], options)
    _report(results[name])


@click.command(name="bon-gsm8k", help=f"Rerank GSM8K candidates with a reward model. {NS_HELP}\n\n"
               "MODEL: a local folder or org/name[@revision].")
@click.argument("model")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Candidate file from `dogerm-eval generate` (or your own in its schema).")
@click.option("--data", help="Local copy of openai/gsm8k (main, test) with question/answer (default: download).")
@common_options
def bon_gsm8k(model: str, candidates: Path, data: str | None, **options: Any) -> None:
    """Rerank GSM8K candidates."""
    from dogerm_eval.benchmarks import gsm8k

    _run(gsm8k.NAME, model, options, lambda: gsm8k.task(data, candidates))


def sandbox_options(function: Any) -> Any:
    """The sandbox options of the code benchmarks."""
    for option in reversed([
        click.option("--workers", type=int, default=4, show_default=True, help="Programs run in parallel."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=REFERENCE_TIMEOUT_S,
                     show_default=True,
                     help="Seconds each program may run, as the reference harness counts them (human-eval's and "
                     "bigcode-evaluation-harness's default: 3.0); the process is killed 1 s later."),
        click.option("--memory-mb", type=int, default=2048, show_default=True,
                     help="Address-space limit per program (an outer bound: the reference harnesses set none)."),
    ]):
        function = option(function)
    return function


def _run_code(module: Any, model: str, data: str | None, candidates: Path, workers: int, timeout: float,
              memory_mb: int, options: dict[str, Any]) -> None:
    if options["num_processes"] > 1:
        raise BenchmarkError(f"{module.NAME} runs in one process (the sandbox runs are not sharded); "
                             "use --num-processes 1")
    limits = SandboxLimits(timeout_s=timeout, memory_bytes=memory_mb * 1024**2)

    def make_task() -> Task:  # the data are checked before the sandbox is described
        task = module.task(data, candidates, limits, workers)
        LOG.info("programs ran in the sandbox (time limit %g s per program, %d MB; %d defences, listed under "
                 "`sandbox` in the result file)", timeout, memory_mb, len(active_defences(limits)))
        return task

    _run(module.NAME, model, options, make_task)


@click.command(name="bon-mbpp", help=f"Rerank MBPP candidates with a reward model; every candidate's program runs in "
               f"a sandbox. {NS_HELP} (majority: not applicable).\n\nMODEL: a local folder or org/name[@revision].")
@click.argument("model")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Candidate file from `dogerm-eval generate` (or your own in its schema).")
@click.option("--data", help="Local copy of google-research-datasets/mbpp (test) in its schema (default: download).")
@sandbox_options
@common_options
def bon_mbpp(model: str, candidates: Path, data: str | None, workers: int, timeout: float, memory_mb: int,
             **options: Any) -> None:
    """Rerank MBPP candidates."""
    from dogerm_eval.benchmarks import mbpp

    _run_code(mbpp, model, data, candidates, workers, timeout, memory_mb, options)


@click.command(name="bon-humaneval", help=f"Rerank HumanEval candidates with a reward model; every candidate's program "
               f"(prompt + completion + the task's check) runs in a sandbox. {NS_HELP} (majority: the same program "
               "up to formatting).\n\nMODEL: a local folder or org/name[@revision].")
@click.argument("model")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Candidate file from `dogerm-eval generate --benchmark humaneval` (or your own in its schema).")
@click.option("--data", help="Local copy of openai/openai_humaneval (test) in its schema, or bigcode/humanevalpack's "
              "python split (its instruction column is used) (default: download).")
@sandbox_options
@common_options
def bon_humaneval(model: str, candidates: Path, data: str | None, workers: int, timeout: float, memory_mb: int,
                  **options: Any) -> None:
    """Rerank HumanEval candidates."""
    from dogerm_eval.benchmarks import humaneval

    _run_code(humaneval, model, data, candidates, workers, timeout, memory_mb, options)


def sweep_task(name: str, data: str | None, candidates: str) -> Task:
    """The Best-of-N task ``name`` (bon-gsm8k, bon-mbpp, bon-humaneval) for ``dogerm-eval sweep --candidates
    NAME=PATH``.

    MBPP and HumanEval programs run once here, with the default sandbox limits, before any member is scored.
    """
    from dogerm_eval.benchmarks import gsm8k, humaneval, mbpp

    if name == gsm8k.NAME:
        return gsm8k.task(data, candidates)
    if name in (mbpp.NAME, humaneval.NAME):
        return (mbpp if name == mbpp.NAME else humaneval).task(data, candidates, SandboxLimits(), 4)
    raise BenchmarkError(f"--candidates {name}=...: only {gsm8k.NAME}, {mbpp.NAME} and {humaneval.NAME} take "
                         "candidates")


COMMANDS = (generate, bon_gsm8k, bon_mbpp, bon_humaneval)
