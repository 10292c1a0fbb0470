"""Console scripts of dogerm-mergekit.

``--help`` must be instant: mergekit (torch, peft) is imported only when a command runs. mergekit's own merge
options (``--cuda``, ``--out-shard-size``, ...) are passed through and parsed by mergekit's own option set then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dogerm_mergekit.errors import one_line

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}
MERGEKIT_OPTIONS = "Every mergekit-yaml option (--cuda, --out-shard-size, --lazy-unpickle, ...) applies too."


def merge_options(args: list[str]) -> Any:
    """Parse mergekit-yaml's merge options from ``args`` with mergekit's own click options."""
    from mergekit.options import add_merge_options

    @click.command(add_help_option=False)
    @add_merge_options
    def parse(merge_options: Any) -> Any:
        return merge_options

    options = parse.main(args, standalone_mode=False)
    options.apply_global_options()
    return options


@click.command("dogerm-mergekit-yaml", context_settings=PASS_THROUGH)
@click.pass_context
def mergekit_yaml(ctx: click.Context) -> None:
    """mergekit's own ``mergekit-yaml CONFIG_FILE OUT_PATH [OPTIONS]``, with dogerm registered in-process.

    For environments that skip ``.pth`` files (``python -S``/``-I``, some embedded interpreters); plain
    ``mergekit-yaml`` runs dogerm merges too. ``mergekit-yaml --help`` lists the options.
    """
    from dogerm_mergekit import register

    register()
    from mergekit.scripts.run_yaml import main

    main.main(ctx.args, prog_name="dogerm-mergekit-yaml")


@click.command("dogerm-sweep", context_settings=PASS_THROUGH, epilog=MERGEKIT_OPTIONS)
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--lambdas", "lambda_spec", default=None,
              help="start:stop:step (stop included) or a comma list, e.g. 0,0.1,0.3  [default: 0:1:0.05]")
@click.option("--grid", "grids", multiple=True, metavar="PARAMETER[MODEL]=SPEC",
              help="Repeat it; the product is merged. merge_method: dogerm: per-domain lambdas (vectors summing "
                   "outside [0, 1] left out): --grid lambda[metamath]=0:1:0.25 --grid lambda[magicoder]=0,0.5. "
                   "dogerm_<kernel>: mergekit's weight, density, epsilon, lambda, gamma, top-level without [MODEL]: "
                   "--grid density=0.3,0.5 --grid weight[MetaMath-7B-V1.0]=0.5,1. MODEL: as `models:` names it, "
                   "or its last path component.")
@click.option("--overwrite", is_flag=True, help="Replace a sweep of other inputs or another configuration in OUT_DIR.")
@click.option("--push-to-hub", "repo_id", default=None, help="Push the sweep to this Hub repo (ORG/NAME) afterwards.")
@click.option("--repo-per-lambda", is_flag=True, help="Push each lambda to ORG/NAME-lambda-X.XX instead of a branch.")
@click.option("--private", is_flag=True, help="Create private Hub repositories.")
@click.pass_context
def sweep(ctx: click.Context, config_file: str, out_dir: str, lambda_spec: str | None, grids: tuple[str, ...],
          overwrite: bool, repo_id: str | None, repo_per_lambda: bool, private: bool) -> None:
    """Merge CONFIG_FILE (a dogerm mergekit config; its own lambda is ignored) for every lambda into OUT_DIR.

    Each input tensor is read once; OUT_DIR/lambda-X.XX/ (lambda-X.XX_Y.YY with several domain models) appear
    as they complete, and a rerun finishes only what is missing.
    """
    from dogerm_mergekit.contract import parse_grid, parse_lambdas

    if grids and lambda_spec is not None:
        raise click.UsageError("give --lambdas (one domain model) or --grid, not both")
    with one_line("dogerm-sweep"):
        source = Path(config_file).read_text(encoding="utf-8")
        parsed = [parse_grid(spec) for spec in grids]
        from dogerm_mergekit.config_file import read_config
        from dogerm_mergekit.sweep import grid_points, run_sweep

        raw, _ = read_config(source, config_file)
        kernel = str(raw.get("merge_method", "")).startswith("dogerm_")
        if kernel:
            from dogerm_mergekit.sweep import kernel_grid_points

            if lambda_spec is not None:
                raise click.UsageError("a dogerm_<kernel> configuration is swept with --grid PARAMETER[MODEL]=SPEC")
            lambdas = kernel_grid_points(source, parsed)
        else:
            lambdas = grid_points(source, parsed) if parsed else parse_lambdas(lambda_spec or "0:1:0.05")
        result = run_sweep(source, Path(out_dir), lambdas,
                           merge_options(ctx.args), overwrite=overwrite)
    click.echo(f"{result.out_dir}: wrote {len(result.written)} checkpoints, {len(result.skipped)} already complete")
    if repo_id:
        _push(result.out_dir, repo_id, repo_per_lambda, private)


def _push(out_dir: Path, repo_id: str, repo_per_lambda: bool, private: bool, results: Path | None = None) -> None:
    from dogerm_mergekit.contract import MetricsTable
    from dogerm_mergekit.hub import push_sweep

    with one_line("dogerm-push"):
        metrics = MetricsTable.load(results) if results else None
        targets = push_sweep(out_dir, repo_id, repo_per_lambda=repo_per_lambda, private=private, metrics=metrics)
    click.echo(f"pushed {len(targets)} checkpoints to {repo_id}")


@click.command("dogerm-push")
@click.argument("sweep_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--repo-per-lambda", is_flag=True, help="Push each lambda to ORG/NAME-lambda-X.XX instead of a branch.")
@click.option("--private", is_flag=True, help="Create private Hub repositories.")
@click.option("--results", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A metrics table (the metrics.json of a dogerm-eval sweep) shown in the sweep card.")
def push(sweep_dir: Path, repo_id: str, repo_per_lambda: bool, private: bool, results: Path | None) -> None:
    """Push an existing dogerm-sweep output folder to the Hub (one branch per lambda); safe to rerun."""
    _push(sweep_dir, repo_id, repo_per_lambda, private, results)
