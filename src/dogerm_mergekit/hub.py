"""Publish a sweep on the Hugging Face Hub: one repo with a branch per lambda (or a repo per lambda)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from dogerm_mergekit.card import merge_card
from dogerm_mergekit.contract import MANIFEST, MetricsTable, SweepManifest, load_manifest
from dogerm_mergekit.errors import DogeRMError


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

        kernel = str(yaml.safe_load(manifest.config).get("merge_method", "")).removeprefix("dogerm_") or None
    return str(merge_card(manifest.reward_model, manifest.domain_model, "sweep (one checkpoint per row below)",
                          manifest.config, checkpoints=rows, metrics=metrics, kernel=kernel))


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
    manifest = load_manifest(Path(out_dir))
    if manifest is None or not manifest.checkpoints:
        raise DogeRMError(f"{out_dir} holds no finished sweep ({MANIFEST} missing or empty); run dogerm-sweep first")
    api = api or HfApi()
    written = []
    if not repo_per_lambda:
        api.create_repo(repo_id, private=private, exist_ok=True)
    for name, record in sorted(manifest.checkpoints.items(), key=_order):
        folder = Path(out_dir) / name
        plain = record.lam is not None and not record.lambdas
        message = f"DogeRM checkpoint lambda={record.lam:g}" if plain else f"DogeRM checkpoint {name}"
        if repo_per_lambda:
            target = f"{repo_id}-{name}"
            api.create_repo(target, private=private, exist_ok=True)
            api.upload_folder(folder_path=folder, repo_id=target, commit_message=message, delete_patterns="*")
        else:
            target = name
            api.create_branch(repo_id, branch=name, exist_ok=True)
            api.upload_folder(folder_path=folder, repo_id=repo_id, revision=name, commit_message=message,
                              delete_patterns="*")
        written.append(target)
    main_repo = repo_id if not repo_per_lambda else f"{repo_id}-sweep"
    if repo_per_lambda:
        api.create_repo(main_repo, private=private, exist_ok=True)
    card = sweep_card(manifest, repo_id, repo_per_lambda, metrics)
    api.create_commit(
        repo_id=main_repo,
        operations=[
            CommitOperationAdd("README.md", card.encode()),
            CommitOperationAdd(MANIFEST, (Path(out_dir) / MANIFEST).read_bytes()),
        ],
        commit_message="DogeRM sweep card",
    )
    return written
