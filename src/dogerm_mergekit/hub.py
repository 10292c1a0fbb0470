"""Publish a sweep on the Hugging Face Hub: one repo with a branch per lambda (or a repo per lambda)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import httpx as hub_http  # the HTTP client huggingface_hub runs on (httpx or httpx2)
from huggingface_hub.utils import validate_repo_id

from dogerm_mergekit.card import merge_card
from dogerm_mergekit.contract import MANIFEST, MetricsTable, SweepManifest, inside, load_manifest, verify_checkpoint
from dogerm_mergekit.errors import DogeRMError
from dogerm_mergekit.methods import PREFIX


class HubError(DogeRMError):
    """The Hub could not be reached, or refused a request."""


@contextmanager
def hub_step(what: str, endpoint: str) -> Iterator[None]:
    """Turn a Hub or network failure while doing ``what`` into one line: what failed, where, and the fix."""
    rerun = "then rerun: files already on the Hub are not uploaded again"
    try:
        yield
    except HfHubHTTPError as error:
        response = error.response
        status = f"HTTP {response.status_code}" if response is not None else "an HTTP error"
        hint = ("check that HF_TOKEN (or `hf auth login`) has write access to it"
                if response is not None and response.status_code in (401, 403) else "check the repo id and token")
        detail = (str(error).splitlines() or [error.__class__.__name__])[0]
        raise HubError(f"{what} failed at {endpoint}: {status} ({detail}); {hint}, {rerun}") from error
    except (hub_http.TransportError, OfflineModeIsEnabled) as error:
        raise HubError(f"{what} failed: {endpoint} could not be reached ({error.__class__.__name__}: "
                       f"{str(error).splitlines()[0] if str(error) else 'no answer'}); check the network, HF_ENDPOINT "
                       f"and HF_HUB_OFFLINE, {rerun}") from error


def _order(item: tuple[str, object]) -> tuple[float, str]:
    """Lambda sweeps by lambda; parameter grids (no lambda) by name."""
    name, record = item
    return (0.0 if record.lam is None else record.lam, name)


def sweep_card(manifest: SweepManifest, repo_id: str, repo_per_lambda: bool, metrics: MetricsTable | None = None) -> str:
    """The card of the sweep's main revision: parents, one row per lambda with where to load it, and metrics."""
    rows = []
    for name, record in sorted(manifest.checkpoints.items(), key=_order):
        where = f'"{repo_id}-{name}"' if repo_per_lambda else f'"{repo_id}", revision="{name}"'
        rows.append((name if record.lam is None or record.lambdas else record.lam, where))
    kernel = None
    if manifest.points:  # a dogerm_<kernel> grid
        import yaml

        kernel = str(yaml.safe_load(manifest.config).get("merge_method", "")).removeprefix(PREFIX) or None
    return str(merge_card(manifest.reward_model, manifest.domain_model, "sweep (one checkpoint per row below)",
                          manifest.config, checkpoints=rows, metrics=metrics, kernel=kernel,
                          commits={role: entry["commit"] for role, entry in manifest.inputs.items()
                                   if entry.get("commit")}))


def push_sweep(
    out_dir: Path,
    repo_id: str,
    repo_per_lambda: bool = False,
    private: bool = False,
    metrics: MetricsTable | None = None,
    api: HfApi | None = None,
) -> list[str]:
    """Upload every complete checkpoint of ``out_dir``; unchanged files make no commit, so a rerun resumes.

    Returns the revisions (branches) or repositories written. The token comes from HF_TOKEN or the login.
    """
    try:
        validate_repo_id(repo_id)
        if repo_per_lambda:
            validate_repo_id(f"{repo_id}-lambda-0.00")
    except HFValidationError as error:
        raise DogeRMError(f"{repo_id!r} is not a Hub repo id ({error}); use ORG/NAME") from None
    out_dir = Path(out_dir)
    manifest = load_manifest(out_dir)
    if manifest is None or not manifest.checkpoints:
        raise DogeRMError(f"{out_dir} holds no finished sweep ({MANIFEST} missing or empty); run dogerm-sweep first")
    checkpoints = sorted(manifest.checkpoints.items(), key=_order)
    folders = {name: inside(out_dir, name, str(out_dir / MANIFEST)) for name, _ in checkpoints}
    for name, record in checkpoints:  # every checkpoint holds the bytes recorded, before anything is uploaded
        verify_checkpoint(folders[name], record)
    api = api or HfApi()
    written = []
    if not repo_per_lambda:
        with hub_step(f"creating {repo_id}", api.endpoint):
            api.create_repo(repo_id, private=private, exist_ok=True)
    for name, record in checkpoints:
        plain = record.lam is not None and not record.lambdas
        message = f"DogeRM checkpoint lambda={record.lam:g}" if plain else f"DogeRM checkpoint {name}"
        # only the files the manifest records (verified above), never whatever else lies in the folder
        upload = {"folder_path": folders[name], "commit_message": message, "delete_patterns": "*",
                  "allow_patterns": sorted(record.files)}
        target = f"{repo_id}-{name}" if repo_per_lambda else name
        with hub_step(f"uploading {name} to {repo_id if not repo_per_lambda else target}", api.endpoint):
            if repo_per_lambda:
                api.create_repo(target, private=private, exist_ok=True)
                api.upload_folder(repo_id=target, **upload)
            else:
                api.create_branch(repo_id, branch=name, exist_ok=True)
                api.upload_folder(repo_id=repo_id, revision=name, **upload)
        written.append(target)
    main_repo = repo_id if not repo_per_lambda else f"{repo_id}-sweep"
    card, manifest_bytes = sweep_card(manifest, repo_id, repo_per_lambda, metrics), (out_dir / MANIFEST).read_bytes()
    with hub_step(f"writing the sweep card of {main_repo}", api.endpoint):
        if repo_per_lambda:
            api.create_repo(main_repo, private=private, exist_ok=True)
        api.create_commit(
            repo_id=main_repo,
            operations=[
                CommitOperationAdd("README.md", card.encode()),
                CommitOperationAdd(MANIFEST, manifest_bytes),
            ],
            commit_message="DogeRM sweep card",
        )
    return written
