"""Lambda sweeps: find the members of a sweep (folders or Hub branches `lambda-*`) and evaluate them alike."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from dogerm_eval.benchmarks import Scorer, Task, run_model
from dogerm_eval.errors import ModelError
from dogerm_eval.models import ResolvedModel, parse_hub_ref, resolve_model
from dogerm_eval.results import DEFAULT_CHUNK_SIZE

MEMBER = re.compile(r"^lambda-(.+)$")
SWEEP_JSON = "sweep.json"


def _lambda_of(name: str) -> float | None:
    """The lambda of a `lambda-<x>` name (`lambda-0.30`, `lambda-0.125`, `lambda-1e-05`), else None."""
    match = MEMBER.match(name)
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def _local_members(folder: Path, log: Callable[[str], None]) -> list[tuple[float, str]]:
    members = {
        lam: str(child) for child in folder.iterdir() if child.is_dir() and (lam := _lambda_of(child.name)) is not None
    }
    manifest = folder / SWEEP_JSON
    if manifest.is_file():
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("lambdas")
        missing = sorted(set(map(float, listed or [])) - set(members))
        if missing:
            log(f"{manifest} lists lambdas {missing} that have no lambda-* folder (not merged yet?): skipped")
    return sorted(members.items())


def _hub_members(ref: str) -> list[tuple[float, str]]:
    repo_id, revision = parse_hub_ref(ref)
    if revision is not None:
        raise ModelError(f"{ref!r}: a sweep is a whole repo (its lambda-* branches), not one revision")
    try:
        branches = HfApi().list_repo_refs(repo_id).branches
    except RepositoryNotFoundError as exc:
        raise ModelError(f"sweep {ref!r} is neither a local folder nor an accessible Hub repo") from exc
    except HfHubHTTPError as exc:
        raise ModelError(f"could not list the branches of {repo_id!r}: {exc}") from exc
    return sorted(
        (lam, f"{repo_id}@{branch.name}") for branch in branches if (lam := _lambda_of(branch.name)) is not None
    )


def discover_sweep(ref: str, log: Callable[[str], None] = print) -> list[tuple[float, str]]:
    """(lambda, model ref) of every member: `lambda-<x>` sub-folders of a folder, or `lambda-<x>` Hub branches.

    Lambdas that a folder's `sweep.json` lists but that have no folder yet (an unfinished merge) are reported and
    skipped. Sorted by lambda.
    """
    folder = Path(ref).expanduser()
    members = _local_members(folder, log) if folder.is_dir() else _hub_members(ref)
    if not members:
        raise ModelError(f"sweep {ref!r} has no lambda-<value> members (folders or Hub branches)")
    return members


def resolve_members(members: Sequence[tuple[float, str]]) -> Iterator[tuple[float, ResolvedModel]]:
    """Resolve members one at a time (a Hub branch is downloaded only when its turn comes)."""
    for lam, ref in members:
        yield lam, resolve_model(ref)


def evaluate_sweep(
    members: Iterable[tuple[float, ResolvedModel]],
    tasks: Sequence[Task],
    settings: Mapping[str, Any],
    make_scorer: Callable[[ResolvedModel], Scorer],
    output_dir: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    log: Callable[[str], None] = print,
) -> list[tuple[float, ResolvedModel, dict[str, dict[str, Any]]]]:
    """Evaluate every (lambda, model) with the same tasks and settings; return (lambda, model, results) per member.

    This is the seam for other ways of producing members (e.g. merging in memory): anything yielding
    (lambda, ResolvedModel) pairs plus a `make_scorer` that can score them.
    """
    evaluated = []
    for lam, model in members:
        log(f"lambda={lam:g}: {model.ref}")
        evaluated.append((lam, model, run_model(tasks, model, settings, make_scorer, output_dir, chunk_size, log)))
        gc.collect()  # release the previous member's weights before the next one loads
    return evaluated
