"""``dogerm-demo``: the whole DogeRM job on a miniature world, on a CPU, in minutes.

Builds (or reuses from the cache) tiny trained Llama models (a base LM, two domain LMs fine-tuned on arithmetic and
on reversing word lists, a general reward model) and evaluation data, then runs the real pipeline: ``dogerm-sweep``
over lambda with the arithmetic LM, ``dogerm-eval`` on a mini benchmark in RewardBench's schema (subsets
``general``, ``arithmetic``, ``strings``) and on Best-of-N over candidates of a weaker policy; then both domain LMs
merged at once over a grid of per-domain lambdas, in memory (``demo.grid``). Prints the tables and writes
``sweep.csv``, ``grid.csv`` and plots.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dogerm_eval.demo import mathpath
from dogerm_eval.demo.grid import GENERAL_LOSS
from dogerm_eval.options import configure_logging, default_options, scorer_factory, scoring_settings
from dogerm_mergekit.contract import parse_lambdas

if TYPE_CHECKING:
    import pandas as pd

    from dogerm_eval.demo.world import World

LOG = logging.getLogger(__name__)


def demo_config(world: World) -> str:
    """The dogerm mergekit configuration of the world's reward model and domain model."""
    import yaml

    return yaml.safe_dump({
        "merge_method": "dogerm",
        "base_model": str(world.rm),
        "models": [{"model": str(world.domain), "parameters": {"lambda": 0.5}}],
    }, sort_keys=False)


def _link(link: Path, target: Path) -> None:
    """``link`` -> ``target``, replacing an older link (the world lives in the cache)."""
    if link.is_symlink():
        link.unlink()
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """``gc.freeze()`` for the duration: the sweep evaluator runs a full collection after every member (to free its
    weights), which scans every object the imported libraries hold (0.3 s each here, 10 of a cached rerun's 20 s);
    frozen, those are skipped and the members' own objects are still collected."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_demo(output_dir: Path, seed: int, size: str, lambdas: str, cache_dir: Path | None,
             grid_step: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build/reuse the world, sweep, evaluate, run the grid, report; return the sweep and grid tables (also written
    as ``sweep.csv`` and ``grid.csv``)."""
    from mergekit.options import MergeOptions

    from tqdm.auto import tqdm

    from dogerm_eval.benchmarks import gsm8k, prepare_task
    from dogerm_eval.demo import grid
    from dogerm_eval.demo.spec import SPECS
    from dogerm_eval.demo.training import torch_settings
    from dogerm_eval.demo.world import build_world
    from dogerm_eval.models import resolve_model
    from dogerm_eval.report import format_table, sweep_frame, write_report
    from dogerm_mergekit.files import atomic_file
    from dogerm_eval.sweep import discover_sweep, evaluate_sweep
    from dogerm_mergekit.sweep import run_sweep

    values = parse_lambdas(lambdas)
    output_dir.mkdir(parents=True, exist_ok=True)
    LOG.info("[1/4] the miniature world (seed %d, size %s)", seed, size)
    world = build_world(cache_dir, seed=seed, size=size)
    _link(output_dir / "world", world.root)
    threads = SPECS[size].solo_threads  # scoring runs alone: on the recipe's thread count, like the base's training
    settings = mathpath.in_use()
    if (why := mathpath.deviation(settings)) is not None:
        LOG.warning("the demo's scoring is not on the pinned math path (%s): its figures can differ from a fresh "
                    "`dogerm-demo` in the last digit", why)
    config = demo_config(world)
    (output_dir / "dogerm.yml").write_text(config)

    LOG.info("[2/4] dogerm-sweep over lambda = %s (RM + arithmetic LM)", ", ".join(f"{x:g}" for x in values))
    sweep = run_sweep(config, output_dir / "sweep", values, MergeOptions(), overwrite=True)
    LOG.info("      wrote %d checkpoints, %d already there", len(sweep.written), len(sweep.skipped))

    LOG.info("[3/4] dogerm-eval: pairwise (general, arithmetic, strings) and Best-of-N on the arithmetic problems")
    scoring = default_options(dtype="float32", device="cpu")  # dogerm-eval's defaults, fp32 on the CPU
    fmt, record = scoring_settings(scoring)
    tasks = [prepare_task("pairwise", str(world.rewardbench_data), None),
             gsm8k.task(str(world.gsm8k_data), world.candidates)]
    members = [(lam, resolve_model(ref)) for lam, ref in discover_sweep(str(output_dir / "sweep"))]
    members = tqdm(members, desc=f"evaluate {len(members)} checkpoints", leave=False)
    with frozen_heap(), torch_settings(threads):
        evaluated = evaluate_sweep(members, tasks, record, scorer_factory(fmt, scoring), output_dir / "eval",
                                   overwrite=True)  # the demo's folder is its own: a rerun replaces it, as its sweep
    frame = sweep_frame([(lam, results) for lam, _, results in evaluated])
    paths = write_report(frame, output_dir, overwrite=True)
    largest = max((c for c in frame.columns if c.startswith("bon-gsm8k/expected@")), key=lambda c: int(c.split("@")[1]))
    shown = ["lambda", "pairwise/general", "pairwise/arithmetic", largest, largest.replace("expected", "first_n"),
             largest.replace("expected", "oracle")]
    click.echo(f"seed {seed}: world {world.root.name}, weights sha256 {world.metadata['digest']}")
    click.echo(format_table(frame[shown]))
    click.echo(verdict(frame).line(seed))
    with torch_settings(threads):
        click.echo(explain(world, [lam for lam in (0.0, 0.5, 1.0) if lam in values], output_dir))

    LOG.info("[4/4] the grid: %s in memory, each 0:1:%g, sums <= 1",
             " and ".join(f"lambda[{d}]" for d in world.domains), grid_step)
    with frozen_heap(), torch_settings(threads):
        table = grid.evaluate_grid(world, grid_step, output_dir, record, scorer_factory(fmt, scoring), tasks[:1])
    with atomic_file(output_dir / grid.GRID_CSV) as tmp:
        table.to_csv(tmp, index=False)
    paths += [output_dir / grid.GRID_CSV, *grid.write_heatmaps(table, output_dir)]
    click.echo(format_table(table))
    click.echo(grid.best_pair(table).line())
    for path in paths:
        LOG.info("wrote %s", path)
    return frame, table


def explain(world: World, lambdas: list[float], output_dir: Path) -> str:
    """Why the merge helps, from ``demo.diagnostics`` (cached in ``OUT/diagnostics.json`` for this world)."""
    import json

    from dogerm_mergekit.files import atomic_write

    path = output_dir / "diagnostics.json"
    key = {"world": world.root.name, "lambdas": lambdas}
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("key") != key:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        from dogerm_eval.demo.diagnostics import diagnose
        from dogerm_mergekit.inmemory import InMemoryMerger

        LOG.info("diagnostics: correlation with the domain LM and a linear probe, lambda = %s", lambdas)
        rows = [json.loads(line) for line in world.rewardbench_data.read_text().splitlines() if line.strip()]
        table = diagnose(AutoModelForSequenceClassification.from_pretrained(world.rm).eval(),
                         AutoModelForCausalLM.from_pretrained(world.domain).eval(),
                         AutoTokenizer.from_pretrained(world.rm), rows, lambdas,
                         InMemoryMerger(str(world.rm), str(world.domain)).state_dict)
        saved = {"key": key, "rows": table}
        atomic_write(path, json.dumps(saved, indent=2))
    lines = ["why it helps (arithmetic pairs) and why lambda = 1 loses (pairs on facts only the RM was taught):",
             "  lambda | corr(RM margin, domain LM log-prob margin) | linear probe | RM-only pairs"]
    lines += [f"  {r['lambda']:g} | {r['margin_corr']:+.2f} | {r['probe'] * 100:.1f} | "
              + (f"{r['rm-only'] * 100:.1f}" if "rm-only" in r else "-") for r in saved["rows"]]
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """lambda = 0 against the best lambda that keeps general accuracy within GENERAL_LOSS of it."""

    best_lambda: float
    general: tuple[float, float]
    arithmetic: tuple[float, float]
    best_of_n: tuple[float, float]
    n: int

    @property
    def gain(self) -> float:
        return self.arithmetic[1] - self.arithmetic[0]

    def line(self, seed: int) -> str:
        return (
            f"seed {seed}: best lambda {self.best_lambda:g} (general within {GENERAL_LOSS * 100:g} points): "
            f"arithmetic {self.arithmetic[0] * 100:.1f} -> {self.arithmetic[1] * 100:.1f} ({self.gain * 100:+.1f}), "
            f"general {self.general[0] * 100:.1f} -> {self.general[1] * 100:.1f}, "
            f"Best-of-{self.n} {self.best_of_n[0] * 100:.1f} -> {self.best_of_n[1] * 100:.1f}"
        )


def verdict(frame: pd.DataFrame) -> Verdict:
    """The demo's reading of a sweep table (the lambda = 0 row is the reward model alone)."""
    arithmetic, general = "pairwise/arithmetic", "pairwise/general"
    bon = max((c for c in frame.columns if c.startswith("bon-gsm8k/expected@")), key=lambda c: int(c.split("@")[1]))
    base = frame.loc[frame["lambda"] == 0.0].iloc[0] if (frame["lambda"] == 0.0).any() else frame.iloc[0]
    allowed = frame[frame[general] >= base[general] - GENERAL_LOSS - 1e-9]
    best = allowed.loc[allowed[arithmetic].idxmax()]
    return Verdict(float(best["lambda"]), (base[general], best[general]), (base[arithmetic], best[arithmetic]),
                   (base[bon], best[bon]), int(bon.split("@")[1]))


def spread(verdicts: dict[int, Verdict]) -> str:
    """The seeds' verdicts, one line each, and the spread of the arithmetic gain."""
    gains = [v.gain * 100 for v in verdicts.values()]
    lines = [v.line(seed) for seed, v in verdicts.items()]
    lines.append(f"arithmetic gain over {len(gains)} seeds: mean {sum(gains) / len(gains):+.1f}, "
                 f"min {min(gains):+.1f}, max {max(gains):+.1f} points")
    return "\n".join(lines)


@click.command("dogerm-demo")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("dogerm-demo"),
              show_default=True, help="Where the sweep, the results, sweep.csv and the plots go.")
@click.option("--seeds", "--seed", "seeds", default="0", show_default=True,
              help="Seed(s) of the miniature world, e.g. 0,1,2: one world, sweep and table per seed, then the spread.")
@click.option("--size", type=click.Choice(["demo", "test"]), default="demo", show_default=True,
              help="'test' builds a far smaller world in seconds (for CI).")
@click.option("--lambdas", default="0:1:0.1", show_default=True, help="start:stop:step or a comma list.")
@click.option("--grid-step", type=click.FloatRange(min=0.01, max=1.0), default=0.2, show_default=True,
              help="Step of each domain's lambda in the two-domain grid (0:1:STEP each, sums <= 1).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where worlds are cached (default: $DOGERM_CACHE or ~/.cache/dogerm).")
def main(output_dir: Path, seeds: str, size: str, lambdas: str, grid_step: float, cache_dir: Path | None) -> None:
    """Run DogeRM end to end on a miniature world: build, sweep lambda, evaluate, merge both domains over a grid."""
    if "torch" not in sys.modules:  # this process's scoring on the demo's math path (torch reads it when it loads)
        mathpath.pin_process()
    configure_logging()
    quiet()
    try:
        values = [int(seed) for seed in seeds.split(",")]
    except ValueError:
        raise click.BadParameter(f"{seeds!r}: give seeds as integers, e.g. 0 or 0,1,2", param_hint="--seeds") from None
    from dogerm_mergekit.console import one_line

    with one_line("dogerm-demo"):
        parse_lambdas(lambdas)  # refuse a bad list before a world is built
        if len(values) == 1:
            run_demo(output_dir, values[0], size, lambdas, cache_dir, grid_step)
            return
        results = {seed: run_demo(output_dir / f"seed-{seed}", seed, size, lambdas, cache_dir, grid_step)
                   for seed in values}
    from dogerm_eval.demo.grid import best_pair

    click.echo("\n" + spread({seed: verdict(frame) for seed, (frame, _) in results.items()}))
    for seed, (_, table) in results.items():
        click.echo(f"seed {seed}: {best_pair(table).line()}")


def quiet() -> None:
    """The demo's own stage lines only: the libraries' per-checkpoint logs, model-loading bars and transformers'
    warnings are silenced."""
    from dogerm_eval.demo.world import silence_transformers

    for name in ("dogerm_eval", "dogerm_mergekit"):
        logging.getLogger(name).setLevel(logging.WARNING)
    LOG.setLevel(logging.INFO)  # its records still reach the handler configure_logging gave "dogerm_eval"
    silence_transformers()
