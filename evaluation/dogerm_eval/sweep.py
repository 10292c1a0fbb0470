"""Lambda sweeps: find the members of a sweep (folders or Hub branches `lambda-*`) and evaluate them alike."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from dogerm_eval.benchmarks import Scorer, Task, run_model
from dogerm_eval.errors import ModelError
from dogerm_eval.models import ResolvedModel, parse_hub_ref, resolve_model
from dogerm_eval.results import DEFAULT_CHUNK_SIZE
from dogerm_mergekit.contract import (
    MANIFEST,
    Point,
    finished_points,
    lambda_of,
    lambda_point,
    load_manifest,
    point_label,
    unfinished_lambdas,
)
from dogerm_mergekit.errors import DogeRMError
from dogerm_mergekit.hubcache import cached_branches, offline

LOG = logging.getLogger(__name__)


def _local_members(folder: Path) -> list[tuple[Point, str]]:
    """The finished checkpoints of a sweep folder (``dogerm_mergekit.contract``), each checked before any is scored
    (names inside the folder, files as recorded, safetensors complete); unfinished ones are reported."""
    from dogerm_mergekit.checkpoint import check_model_folder

    try:
        members = [(key, str(path)) for key, path in finished_points(folder)]
        for _, path in members:
            check_model_folder(Path(path), "sweep checkpoint")
        manifest = load_manifest(folder)
        missing = [] if manifest is not None and manifest.points else unfinished_lambdas(folder)
    except DogeRMError as exc:
        raise ModelError(str(exc)) from exc
    if missing:
        LOG.warning("%s lists lambdas %s that are not finished (not merged yet?): skipped", folder / MANIFEST, missing)
    return members


def _hub_members(ref: str) -> list[tuple[Point, str]]:
    repo_id, revision = parse_hub_ref(ref)
    if revision is not None:
        raise ModelError(f"{ref!r}: a sweep is a whole repo (its lambda-* branches), not one revision")
    try:
        names = cached_branches(repo_id) if offline() else [b.name for b in HfApi().list_repo_refs(repo_id).branches]
    except RepositoryNotFoundError as exc:
        raise ModelError(f"sweep {ref!r} is neither a local folder nor an accessible Hub repo") from exc
    except HfHubHTTPError as exc:
        raise ModelError(f"could not list the branches of {repo_id!r}: {exc}") from exc
    found = sorted((lam, name) for name in names if (lam := lambda_of(name)) is not None)
    if offline() and not found:
        raise ModelError(f"sweep {ref!r} is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE "
                         f"is set: run `hf download {repo_id} --revision lambda-X.XX` for each lambda where the Hub "
                         "is reachable, then rerun")
    return [(lambda_point(lam), f"{repo_id}@{name}") for lam, name in found]


def discover_sweep(ref: str) -> list[tuple[Point, str]]:
    """(point, model ref) of every member, sorted by its values (``{"lambda": x}`` for a lambda sweep): a sweep
    folder's finished checkpoints, or a Hub repo's `lambda-<x>` branches.

    A folder's finished checkpoints are those its `sweep.json` records (every `lambda-<x>` sub-folder with a
    config.json when there is no manifest); lambdas the manifest asks for that are not finished are reported and
    skipped.
    """
    folder = Path(ref).expanduser()
    members = _local_members(folder) if folder.is_dir() else _hub_members(ref)
    if not members:
        raise ModelError(f"sweep {ref!r} has no lambda-<value> members (folders or Hub branches)")
    return members


def resolve_members(members: Sequence[tuple[Point, str]], trust_remote_code: bool = False
                    ) -> Iterator[tuple[Point, ResolvedModel]]:
    """Resolve members one at a time (a Hub branch is downloaded only when its turn comes)."""
    for point, ref in members:
        yield point, resolve_model(ref, trust_remote_code)


def evaluate_sweep(
    members: Iterable[tuple[Point, ResolvedModel]],
    tasks: Sequence[Task],
    settings: Mapping[str, Any],
    make_scorer: Callable[[ResolvedModel], Scorer],
    output_dir: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
) -> list[tuple[Point, ResolvedModel, dict[str, dict[str, Any]]]]:
    """Evaluate every (point, model) with the same tasks and settings; return (point, model, results) per member
    (a stored result on other data or settings is replaced only with `overwrite`).

    This is the seam for other ways of producing members (e.g. merging in memory): anything yielding
    (point, ResolvedModel) pairs plus a `make_scorer` that can score them.
    """
    evaluated = []
    for point, model in members:
        LOG.info("%s: %s", point_label(point), model.ref)
        evaluated.append((point, model, run_model(tasks, model, settings, make_scorer, output_dir, chunk_size,
                                                  overwrite)))
        gc.collect()  # release the previous member's weights before the next one loads
    return evaluated
