"""The hub's data: repos -> branches/tags -> commits -> file trees, with content-addressed file bytes, in memory."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

COMMIT_OID = re.compile(r"[0-9a-f]{40}")


class LocalHubError(Exception):
    """Raised by the test-facing helpers of :class:`LocalHub` (unknown repo, revision, ...)."""


@dataclass(frozen=True)
class StoredFile:
    """A file in a commit's tree: content address (sha256), git blob id and storage kind."""

    sha256: str
    size: int
    git_oid: str  # git blob sha1 of the content (regular) or of the LFS pointer file (LFS)
    lfs: bool
    xet_hash: str | None = None

    @property
    def etag(self) -> str:
        """The ETag the Hub serves: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.git_oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Commit:
    """A commit: its id, first parent, messages, date and full file tree."""

    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    tree: Mapping[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)



def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()



class Store:
    """Repos and file contents (sha256 -> bytes), behind one re-entrant lock; the read helpers are test-facing."""

    def __init__(self) -> None:
        self._repos: dict[tuple[str, str], Repo] = {}
        self._blobs: dict[str, bytes] = {}  # sha256 -> content
        self._lock = threading.RLock()
        self._commit_counter = 0

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[Commit]:
        """The first-parent history of ``revision``, newest first (the initial commit is last)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit: Commit | None = self._resolve(repo, revision)
            history = []
            while commit is not None:
                history.append(commit)
                commit = repo.commits[commit.parent] if commit.parent else None
            return history

    def tree(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, StoredFile]:
        """Path -> :class:`StoredFile` (storage kind, sha256, Xet hash) at ``revision``."""
        with self._lock:
            return dict(self._resolve(self._get_repo(repo_type, repo_id), revision).tree)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Path -> content of every file at ``revision`` (including the initial ``.gitattributes``)."""
        with self._lock:
            return {path: self._blobs[entry.sha256] for path, entry in self.tree(repo_id, revision, repo_type).items()}

    def refs(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """Branch and tag names -> commit ids (tags prefixed with ``tags/``)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return {**repo.branches, **{f"tags/{name}": oid for name, oid in repo.tags.items()}}

    # ------------------------------------------------------------------ store
    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise LocalHubError(f"No {repo_type} repo {repo_id!r} on the LocalHub") from None

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and revision.startswith("refs/heads/"):
            oid = repo.branches.get(revision.removeprefix("refs/heads/"))
        if oid is None and revision.startswith("refs/tags/"):
            oid = repo.tags.get(revision.removeprefix("refs/tags/"))
        if oid is None and COMMIT_OID.fullmatch(revision) and revision in repo.commits:
            oid = revision
        if oid is None:
            raise LocalHubError(f"Revision {revision!r} not found in {repo.repo_id!r}")
        return repo.commits[oid]

    def _new_commit(
        self, repo: Repo, parent: str | None, title: str, message: str, tree: dict[str, StoredFile]
    ) -> Commit:
        self._commit_counter += 1
        files = sorted((p, f.git_oid) for p, f in tree.items())
        seed = json.dumps([parent, title, self._commit_counter, time.time(), files])
        digest = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(oid=digest, parent=parent, title=title, message=message, date=now(), tree=dict(tree))
        repo.commits[commit.oid] = commit
        return commit

    def _store(self, data: bytes, lfs: bool, xet_hash: str | None = None) -> StoredFile:
        sha256 = hashlib.sha256(data).hexdigest()
        self._blobs[sha256] = data
        git_oid = git_blob_oid(lfs_pointer(sha256, len(data)) if lfs else data)
        return StoredFile(sha256=sha256, size=len(data), git_oid=git_oid, lfs=lfs, xet_hash=xet_hash)
