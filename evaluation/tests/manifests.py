"""Test helper: a `sweep.json` as dogerm-sweep writes it, recording the given checkpoints as finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dogerm_mergekit.contract import CheckpointRecord, SweepManifest, checkpoint_name, file_stats, save_manifest
from dogerm_mergekit.files import fast_digest_file


def write_manifest(sweep: Path, lambdas: Sequence[float], finished: Sequence[float] | None = None) -> SweepManifest:
    """Ask for ``lambdas``; record ``finished`` (default: all) with their files' digests, sizes and times."""
    checkpoints = {}
    for lam in lambdas if finished is None else finished:
        folder = sweep / checkpoint_name(lam)
        files = {p.name: fast_digest_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
        checkpoints[folder.name] = CheckpointRecord(lam=lam, files=files, stats=file_stats(folder, list(files)))
    manifest = SweepManifest(reward_model="rm", domain_model="lm", inputs={}, config_sha256="0" * 64, config="",
                             lambdas=list(lambdas), checkpoints=checkpoints)
    save_manifest(sweep, manifest)
    return manifest
