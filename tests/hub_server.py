"""A local, in-memory Hugging Face Hub-compatible HTTP server for tests.

The Hub cannot be reached from the test machines, so tests drive the REAL ``huggingface_hub`` client (and
``transformers``) against this stdlib server on ``127.0.0.1:<free port>``. It implements the endpoints the client
calls for pushes and pulls (see /work/shared/HUB_TESTING.md): repos, refs, commits, tree, paths-info, preupload,
ndjson commits, Git LFS batch + basic PUT, ``resolve`` (HEAD/GET/Range), and Xet write/read tokens pointing real
``hf_xet`` at a ``local://`` CAS folder.

Usage (the fixtures in the repository's ``conftest.py`` do all of this)::

    def test_push(hub_client, hub_server, model_dir):     # hub_client: HfApi(endpoint=..., token=...)
        hub_client.create_repo("me/rm")
        hub_client.create_branch("me/rm", branch="lambda-0.30")
        hub_client.upload_folder(repo_id="me/rm", folder_path=model_dir, revision="lambda-0.30")
        assert hub_server.files("me/rm", "lambda-0.30")["config.json"] == (model_dir / "config.json").read_bytes()
        assert hub_server.commits("me/rm", "lambda-0.30")[0].title == "Upload folder using huggingface_hub"
        # huggingface_hub.constants are patched as well, so calls that take no endpoint reach the server too:
        AutoModelForSequenceClassification.from_pretrained("me/rm", revision="lambda-0.30")

    hub_server.fail_next_commit()        # the next POST .../commit/<rev> answers HTTP 500
    hub_server.requests                  # [(method, path), ...] of everything the client called
    hub_server.server_errors             # tracebacks of server bugs (answered 500); the fixture fails on any

Outside pytest: ``with LocalHub() as hub: api = HfApi(endpoint=hub.endpoint, token=hub.token)``; code paths that
take no ``endpoint`` argument need :func:`patch_hf_client`.

Not implemented (answered 404/400 with a clear message): pull requests / ``create_pr``, discussions, super-squash,
LFS multipart and LFS download batches, tree pagination (one page), ``.gitignore`` handling in preupload.

Xet: with ``hf_xet`` enabled the client uploads xorbs and shards to ``hub.xet_dir``; when a commit references such
a file by sha256, the server finds its Xet hash in the shards and rebuilds the bytes with ``hf_xet`` (so
:meth:`LocalHub.files` and plain HTTP downloads serve them), and ``resolve`` advertises ``X-Xet-Hash`` so that
Xet-enabled clients download through ``hf_xet`` from the same folder.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

if TYPE_CHECKING:
    import pytest

HUB_TOKEN = "hf_localhub_write_token"
HUB_USER = "localhub-user"
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # files from this size on are stored in LFS whatever their name
DEFAULT_GITATTRIBUTES = (
    # The LFS patterns the Hub writes into a new repo's .gitattributes (abridged: the model-weight formats).
    "*.7z filter=lfs diff=lfs merge=lfs -text\n"
    "*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.bz2 filter=lfs diff=lfs merge=lfs -text\n"
    "*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    "*.gguf filter=lfs diff=lfs merge=lfs -text\n"
    "*.gz filter=lfs diff=lfs merge=lfs -text\n"
    "*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    "*.msgpack filter=lfs diff=lfs merge=lfs -text\n"
    "*.npy filter=lfs diff=lfs merge=lfs -text\n"
    "*.npz filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    "*.pkl filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.pth filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.tar filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
    "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_COMMIT_OID = re.compile(r"[0-9a-f]{40}")


class LocalHubError(Exception):
    """Raised by the test-facing helpers of :class:`LocalHub` (unknown repo, revision, ...)."""


class _HubHTTPError(Exception):
    """An HTTP error answer, with the Hub's ``X-Error-Code`` when the client maps it to a typed exception."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}
        self.payload = payload or {}


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
        return len(_lfs_pointer(self.sha256, self.size))


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
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _lfs_patterns(gitattributes: bytes | None) -> list[str]:
    if gitattributes is None:
        return []
    patterns = []
    for line in gitattributes.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _matches_gitattribute(path: str, pattern: str) -> bool:
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


def _xet_hash_hex(raw: bytes) -> str:
    # A Xet MerkleHash prints as its four little-endian u64 words, each as 16 hex digits.
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def _parse_xet_shard(data: bytes) -> Iterator[tuple[str, str, int]]:
    """Yield ``(sha256, xet_hash, size)`` for each file of an MDB shard that records its sha256.

    Layout facts from xet-core's MDB shard format (huggingface/xet-core, mdb_shard/src/file_structs.rs,
    shard_format.rs), observed with hf_xet 1.8: a 48-byte header (tag, version, footer size); the footer's
    second u64 is the offset of the file-info section, a run of 48-byte records. Each file starts with a header
    record (file hash, u32 flags, u32 entry count), followed by its segment entries (the 4th u32 after the 32-byte
    xorb hash is the segment's byte length), one verification record per entry if flag bit 31 is set, and one
    metadata record holding the sha256 if bit 30 is set; a header whose hash is all 0xFF ends the section.
    """
    footer_size = struct.unpack_from("<Q", data, 40)[0]
    offset = struct.unpack_from("<Q", data, len(data) - footer_size + 8)[0]
    while offset + 48 <= len(data):
        raw_hash = data[offset : offset + 32]
        if raw_hash == b"\xff" * 32:
            return
        flags, num_entries = struct.unpack_from("<II", data, offset + 32)
        offset += 48
        size = sum(struct.unpack_from("<I", data, offset + 48 * i + 36)[0] for i in range(num_entries))
        offset += 48 * num_entries
        if flags & (1 << 31):
            offset += 48 * num_entries
        if flags & (1 << 30):
            yield _xet_hash_hex(data[offset : offset + 32]), _xet_hash_hex(raw_hash), size
            offset += 48


class LocalHub:
    """In-memory Hub: repos -> branches/tags -> commits -> file trees, served over HTTP on 127.0.0.1.

    Accepts one write token (:attr:`token`); any other bearer token is refused with 401, and write endpoints
    also refuse anonymous calls. Thread-safe; start with :meth:`start` or use as a context manager.
    """

    def __init__(self, token: str = HUB_TOKEN, user: str = HUB_USER) -> None:
        self.token = token
        self.user = user
        self.requests: list[tuple[str, str]] = []
        self.server_errors: list[str] = []  # tracebacks of unexpected server-side exceptions (answered with 500)
        self.commit_attempts = 0
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._blobs: dict[str, bytes] = {}  # sha256 -> content
        self._xet_hashes: dict[str, str] = {}  # sha256 -> xet hash, for files uploaded through Xet
        self._xet_shard_files: dict[str, tuple[str, int]] = {}  # sha256 -> (xet hash, size), from parsed shards
        self._xet_shards_seen: set[Path] = set()
        self._lock = threading.RLock()
        self._failures: list[int] = []
        self._secret = secrets.token_bytes(16)
        self._commit_counter = 0
        self._server: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._xet_session: Any = None  # hf_xet.XetSession, created on the first Xet import

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalHub:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            raise LocalHubError("LocalHub is already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="localhub-"))
        (self._workdir / "xet").mkdir()
        handler = type("_BoundHandler", (_HubRequestHandler,), {"hub": self})
        self._server = _HubHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="localhub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and delete the Xet storage folder."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (what ``HF_ENDPOINT`` would be)."""
        if self._server is None:
            raise LocalHubError("LocalHub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def xet_dir(self) -> Path:
        """Folder that the ``local://`` Xet CAS URL points at (xorbs and shards written by hf_xet)."""
        if self._workdir is None:
            raise LocalHubError("LocalHub is not started")
        return self._workdir / "xet"

    # ------------------------------------------------------------------ test-facing helpers
    def fail_next_commit(self, status_code: int = 500, times: int = 1) -> None:
        """Make the next ``times`` commit POSTs answer ``status_code`` without committing.

        Note: with Xet enabled, ``upload_folder`` retries commit POSTs on 408/429/5xx (up to 5 retries with
        backoff), so a single 500 is absorbed by the client there; use a 4xx code to make the call fail.
        """
        with self._lock:
            self._failures.extend([status_code] * times)

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
    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise LocalHubError(f"No {repo_type} repo {repo_id!r} on the LocalHub") from None

    def _resolve(self, repo: _Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and revision.startswith("refs/heads/"):
            oid = repo.branches.get(revision.removeprefix("refs/heads/"))
        if oid is None and revision.startswith("refs/tags/"):
            oid = repo.tags.get(revision.removeprefix("refs/tags/"))
        if oid is None and _COMMIT_OID.fullmatch(revision) and revision in repo.commits:
            oid = revision
        if oid is None:
            raise LocalHubError(f"Revision {revision!r} not found in {repo.repo_id!r}")
        return repo.commits[oid]

    def _new_commit(
        self, repo: _Repo, parent: str | None, title: str, message: str, tree: dict[str, StoredFile]
    ) -> Commit:
        self._commit_counter += 1
        files = sorted((p, f.git_oid) for p, f in tree.items())
        seed = json.dumps([parent, title, self._commit_counter, time.time(), files])
        digest = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(oid=digest, parent=parent, title=title, message=message, date=_now(), tree=dict(tree))
        repo.commits[commit.oid] = commit
        return commit

    def _store(self, data: bytes, lfs: bool, xet_hash: str | None = None) -> StoredFile:
        sha256 = hashlib.sha256(data).hexdigest()
        self._blobs[sha256] = data
        git_oid = _git_blob_oid(_lfs_pointer(sha256, len(data)) if lfs else data)
        return StoredFile(sha256=sha256, size=len(data), git_oid=git_oid, lfs=lfs, xet_hash=xet_hash)

    def _lfs_file(self, sha256: str, size: int | None) -> StoredFile:
        """The stored LFS object ``sha256``: uploaded by LFS PUT, or found in the Xet shards and rebuilt."""
        if sha256 not in self._blobs:
            self._import_from_xet(sha256)
        data = self._blobs.get(sha256)
        if data is None:
            raise _HubHTTPError(422, f"LFS object {sha256} was never uploaded (neither by LFS PUT nor by Xet)")
        if size is not None and size != len(data):
            raise _HubHTTPError(422, f"LFS object {sha256} has {len(data)} bytes, commit says {size}")
        return self._store(data, lfs=True, xet_hash=self._xet_hashes.get(sha256))

    def _import_from_xet(self, sha256: str) -> None:
        # hf_xet writes and moves temporary files while a client uploads: walk (which skips folders that vanish)
        # and skip shards that moved away between listing and reading
        found = {Path(root) / name for root, _, names in os.walk(self.xet_dir) for name in names if name.endswith(".mdb")}
        for shard in sorted(found - self._xet_shards_seen):  # shards are immutable
            try:
                content = shard.read_bytes()
            except FileNotFoundError:
                continue
            for file_sha256, xet_hash, size in _parse_xet_shard(content):
                self._xet_shard_files[file_sha256] = (xet_hash, size)
            self._xet_shards_seen.add(shard)
        if sha256 not in self._xet_shard_files:
            return
        xet_hash, size = self._xet_shard_files[sha256]
        data = self._xet_read(xet_hash, size)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise _HubHTTPError(422, f"Xet file {xet_hash} does not hash to {sha256}")
        self._blobs[sha256] = data
        self._xet_hashes[sha256] = xet_hash

    def _xet_read(self, xet_hash: str, size: int) -> bytes:
        import hf_xet

        if self._xet_session is None:
            self._xet_session = hf_xet.XetSession()
        group = self._xet_session.new_download_stream_group(
            endpoint=self._xet_cas_url(), token="localhub", token_expiry_unix_secs=int(time.time()) + 3600
        )
        return b"".join(group.download_stream(hf_xet.XetFileInfo(xet_hash, size)))

    def _xet_cas_url(self) -> str:
        return f"local://{self.xet_dir.as_posix()}"

    def _lfs_signature(self, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    def _next_failure(self) -> int | None:
        with self._lock:
            self.commit_attempts += 1
            return self._failures.pop(0) if self._failures else None


# ====================================================================== HTTP layer
_API_REPO = re.compile(r"^/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+?)(?:/(?P<rest>.*))?$")
_LFS_BATCH = re.compile(r"^/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LFS_PUT = re.compile(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _HubHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can drop its open keep-alive connections when stopped.

    Without that, a client's pooled connection would keep being answered by a stopped hub's handler thread.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the bound :class:`LocalHub` (set as the ``hub`` class attribute)."""

    hub: LocalHub
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence stderr logging (requests are recorded in ``LocalHub.requests``)."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body()
        hub = self.hub
        with hub._lock:
            hub.requests.append((method, url.path))
        try:
            self._route(method, url.path)
        except _HubHTTPError as err:
            headers = dict(err.headers)
            headers["X-Error-Message"] = err.message
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            self._send_json({"error": err.message, **err.payload}, status=err.status, headers=headers)
        except Exception as err:  # noqa: BLE001 - answer 500 like the Hub, and keep the traceback for the test
            with hub._lock:
                hub.server_errors.append(traceback.format_exc())
            message = f"LocalHub internal error: {err!r}"
            self._send_json({"error": message}, status=500, headers={"X-Error-Message": message})

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        for name, value in headers.items():
            if name != "Content-Length":
                self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers or {}, "application/json")

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as err:
            raise _HubHTTPError(400, f"Invalid JSON body: {err}") from None

    # ------------------------------------------------------------------ auth
    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _check_token(self, write: bool) -> None:
        token = self._bearer()
        if token is not None and token != self.hub.token:
            raise _HubHTTPError(401, "Invalid credentials in Authorization header")
        if write and token is None:
            raise _HubHTTPError(401, "Invalid credentials in Authorization header")

    def _repo(self, kind: str, repo_id: str, write: bool = False) -> _Repo:
        self._check_token(write)
        repo = self.hub._repos.get((kind, repo_id))
        if repo is None or (repo.private and self._bearer() is None):
            raise _HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: _Repo, revision: str) -> Commit:
        try:
            return self.hub._resolve(repo, revision)
        except LocalHubError:
            raise _HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound") from None

    # ------------------------------------------------------------------ routing
    def _route(self, method: str, path: str) -> None:
        hub = self.hub
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami()
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo()
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo()
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml()
        if (m := _LFS_PUT.match(path)) and method == "PUT":
            return self._lfs_put(m["oid"])
        if (m := _LFS_BATCH.match(path)) and method == "POST":
            with hub._lock:
                return self._lfs_batch(self._repo(_REPO_TYPES[(m["kind"] or "models")], m["repo"], write=True))
        if (m := _RESOLVE.match(path)) and method in ("GET", "HEAD"):
            with hub._lock:
                repo = self._repo(_REPO_TYPES[(m["kind"] or "models")], m["repo"])
                commit = self._commit_at(repo, unquote(m["rev"]))
            return self._resolve_file(repo, commit, unquote(m["path"]))
        if m := _API_REPO.match(path):
            with hub._lock:
                return self._repo_api(method, _REPO_TYPES[m["kind"]], m["repo"], m["rest"] or "")
        raise _HubHTTPError(404, f"LocalHub does not implement {method} {path}")

    def _repo_api(self, method: str, kind: str, repo_id: str, rest: str) -> None:
        action, _, arg = rest.partition("/")
        write = method != "GET" and action != "paths-info"
        repo = self._repo(kind, repo_id, write=write or action == "xet-write-token")
        if method == "GET" and action in ("", "revision"):
            return self._repo_info(repo, unquote(arg) if action else "main")
        if method == "GET" and action == "tree":
            rev, _, sub = arg.partition("/")
            return self._tree(repo, self._commit_at(repo, unquote(rev)), unquote(sub).strip("/"))
        if method == "POST" and action == "paths-info":
            return self._paths_info(repo, self._commit_at(repo, unquote(arg)))
        if method == "GET" and action == "refs":
            return self._refs(repo)
        if method == "GET" and action == "commits":
            return self._list_commits(repo, self._commit_at(repo, unquote(arg)))
        if action == "branch" and method in ("POST", "DELETE"):
            return self._branch(repo, unquote(arg), create=method == "POST")
        if action == "tag" and method in ("POST", "DELETE"):
            return self._tag(repo, unquote(arg), create=method == "POST")
        if method == "POST" and action == "preupload":
            return self._preupload(repo, self._commit_at(repo, unquote(arg)))
        if method == "POST" and action == "commit":
            return self._commit(repo, unquote(arg))
        if method == "GET" and action in ("xet-write-token", "xet-read-token"):
            return self._xet_token(repo, unquote(arg))
        raise _HubHTTPError(404, f"LocalHub does not implement {method} /api/{kind}s/{repo_id}/{rest}")

    # ------------------------------------------------------------------ account and repos
    def _whoami(self) -> None:
        if self._bearer() != self.hub.token:
            raise _HubHTTPError(401, "Invalid credentials in Authorization header")
        access = {"displayName": "localhub", "role": "write", "createdAt": _now()}
        self._send_json({"type": "user", "id": "0" * 24, "name": self.hub.user, "fullname": self.hub.user,
                         "orgs": [], "auth": {"type": "access_token", "accessToken": access}})

    def _repo_from_body(self) -> tuple[str, str, dict[str, Any]]:
        self._check_token(write=True)
        body = self._json_body()
        kind = body.get("type") or "model"
        if kind not in _URL_PREFIXES:
            raise _HubHTTPError(400, f"Unsupported repo type {kind!r}")
        return kind, f"{body.get('organization') or self.hub.user}/{body['name']}", body

    def _create_repo(self) -> None:
        kind, repo_id, body = self._repo_from_body()
        hub = self.hub
        url = f"{hub.endpoint}/{_URL_PREFIXES[kind]}{repo_id}"
        with hub._lock:
            if (kind, repo_id) in hub._repos:
                raise _HubHTTPError(409, f"You already created this {kind} repo", payload={"url": url})
            private = body.get("visibility", "public") != "public" or bool(body.get("private"))
            repo = _Repo(repo_type=kind, repo_id=repo_id, private=private, created_at=_now())
            gitattributes = hub._store(DEFAULT_GITATTRIBUTES.encode(), lfs=False)
            initial = hub._new_commit(repo, None, "initial commit", "", {".gitattributes": gitattributes})
            repo.branches["main"] = initial.oid
            hub._repos[(kind, repo_id)] = repo
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        kind, repo_id, _ = self._repo_from_body()
        with self.hub._lock:
            if self.hub._repos.pop((kind, repo_id), None) is None:
                raise _HubHTTPError(404, "Repository not found", "RepoNotFound")
        self._send_json({})

    def _validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match[1]) if match else {}
        except yaml.YAMLError as err:
            self._send_json({"errors": [{"message": f"Invalid YAML: {err}"}]}, status=400)
            return
        if metadata is not None and not isinstance(metadata, dict):
            self._send_json({"errors": [{"message": "Metadata must be a YAML mapping"}]}, status=400)
            return
        self._send_json({"errors": [], "warnings": []})

    def _repo_info(self, repo: _Repo, revision: str) -> None:
        commit = self._commit_at(repo, revision)
        card_data = _card_data(self.hub._blobs[commit.tree["README.md"].sha256]) if "README.md" in commit.tree else None
        blobs = self.query.get("blobs", [""])[0].lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        card = card_data or {}
        tags = list(card.get("tags") or [])
        self._send_json({
            "_id": repo.repo_id, "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid,
            "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": tags, "library_name": card.get("library_name"),
            "pipeline_tag": card.get("pipeline_tag"), "cardData": card_data, "siblings": siblings,
        })

    # ------------------------------------------------------------------ tree, refs, history
    def _entry_json(self, repo: _Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.tree.get(path)
        if entry is None:  # a folder
            children = sorted((p, f.git_oid) for p, f in commit.tree.items() if p.startswith(path + "/"))
            out: dict[str, Any] = {"type": "directory", "oid": hashlib.sha1(json.dumps(children).encode()).hexdigest(),
                                   "size": 0, "path": path}
        else:
            out = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            if entry.xet_hash:
                out["xetHash"] = entry.xet_hash
        if expand:
            last = _last_commit_touching(repo, commit, path)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return out

    def _tree(self, repo: _Repo, commit: Commit, sub: str) -> None:
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        prefix = f"{sub}/" if sub else ""
        paths: set[str] = set()
        for path in commit.tree:
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            paths.update(prefix + "/".join(parts[: i + 1]) for i in range(min(depth, len(parts))))
        if sub and not paths:
            raise _HubHTTPError(404, f"{sub} does not exist on {commit.oid}", "EntryNotFound")
        self._send_json([self._entry_json(repo, commit, p, expand) for p in sorted(paths)])

    def _paths_info(self, repo: _Repo, commit: Commit) -> None:
        form = parse_qs(self.body.decode())
        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        folders = {"/".join(p.split("/")[:i]) for p in commit.tree for i in range(1, p.count("/") + 1)}
        wanted = [p.strip("/") for p in form.get("paths", [])]
        self._send_json([self._entry_json(repo, commit, p, expand) for p in wanted if p in commit.tree or p in folders])

    def _refs(self, repo: _Repo) -> None:
        def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())]

        payload: dict[str, Any] = {
            "branches": refs(repo.branches, "heads"), "converts": [], "tags": refs(repo.tags, "tags")
        }
        if self.query.get("include_prs"):
            payload["pullRequests"] = []
        self._send_json(payload)

    def _list_commits(self, repo: _Repo, commit: Commit) -> None:
        formatted = "formatted" in self.query.get("expand[]", [])
        items = []
        for item in self.hub.commits(repo.repo_id, commit.oid, repo.repo_type):
            entry: dict[str, Any] = {"id": item.oid, "title": item.title, "message": item.message, "date": item.date,
                                     "authors": [{"user": self.hub.user, "avatar": None}]}
            if formatted:
                entry["formatted"] = {"title": item.title, "message": item.message}
            items.append(entry)
        self._send_json(items)

    def _branch(self, repo: _Repo, name: str, create: bool) -> None:
        if not create:
            if repo.branches.pop(name, None) is None:
                raise _HubHTTPError(404, f"Branch {name} not found", "RevisionNotFound")
            return self._send_json({})
        if name in repo.branches:
            raise _HubHTTPError(409, f"Reference already exists: refs/heads/{name}")
        start = self._json_body().get("startingPoint") or "main"
        repo.branches[name] = self._commit_at(repo, start).oid
        self._send_json({})

    def _tag(self, repo: _Repo, arg: str, create: bool) -> None:
        if not create:
            if repo.tags.pop(arg, None) is None:
                raise _HubHTTPError(404, f"Tag {arg} not found", "RevisionNotFound")
            return self._send_json({})
        tag = self._json_body()["tag"]
        if tag in repo.tags:
            raise _HubHTTPError(409, f"Reference already exists: refs/tags/{tag}")
        repo.tags[tag] = self._commit_at(repo, arg).oid
        self._send_json({})

    # ------------------------------------------------------------------ uploads
    def _preupload(self, repo: _Repo, commit: Commit) -> None:
        gitattributes = commit.tree.get(".gitattributes")
        patterns = _lfs_patterns(self.hub._blobs[gitattributes.sha256] if gitattributes else None)
        answer = []
        for item in self._json_body().get("files", []):
            path = item["path"]
            sample = base64.b64decode(item.get("sample", ""))
            lfs = (
                item.get("size", 0) >= LFS_SIZE_THRESHOLD
                or b"\0" in sample
                or any(_matches_gitattribute(path, pattern) for pattern in patterns)
            )
            remote = commit.tree.get(path)
            oid = None if remote is None else (remote.sha256 if remote.lfs else remote.git_oid)
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send_json({"files": answer, "commitOid": commit.oid})

    def _lfs_batch(self, repo: _Repo) -> None:
        body = self._json_body()
        if body.get("operation") != "upload":
            raise _HubHTTPError(400, "LocalHub only implements LFS uploads (downloads go through /resolve)")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.hub._blobs:
                href = f"{self.hub.endpoint}/lfs-upload/{oid}?size={size}&sig={self.hub._lfs_signature(oid, size)}"
                out["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(out)
        answer = json.dumps({"transfer": "basic", "objects": objects}).encode()
        self._send(200, answer, {}, "application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str) -> None:
        size = int(self.query.get("size", ["-1"])[0])
        if not hmac.compare_digest(self.query.get("sig", [""])[0], self.hub._lfs_signature(oid, size)):
            raise _HubHTTPError(403, "Invalid LFS upload signature")
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != oid:
            raise _HubHTTPError(400, f"Uploaded content does not match LFS oid {oid} / size {size}")
        with self.hub._lock:
            self.hub._blobs[oid] = self.body
        self._send(200, b"", {"ETag": f'"{oid}"'}, "text/plain")

    def _commit(self, repo: _Repo, branch: str) -> None:
        hub = self.hub
        if self.query.get("create_pr"):
            raise _HubHTTPError(400, "LocalHub does not implement pull requests (create_pr)")
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise _HubHTTPError(400, f"Commit payload is not ndjson: {err}") from None
        if not lines or lines[0].get("key") != "header":
            raise _HubHTTPError(400, "Commit payload must start with a header line")
        status = hub._next_failure()
        if status is not None:
            raise _HubHTTPError(status, "Simulated commit failure (LocalHub.fail_next_commit)")
        if branch not in repo.branches:
            raise _HubHTTPError(404, f"Branch {branch} not found (commits go to branches)", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise _HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(head.tree)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                tree[path] = hub._store(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                tree[path] = hub._lfs_file(value["oid"], value.get("size"))
            elif key == "deletedFile":
                if tree.pop(path, None) is None:
                    raise _HubHTTPError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                inside = [p for p in tree if p.startswith(path.rstrip("/") + "/")]
                if not inside:
                    raise _HubHTTPError(404, "A file with this name doesn't exist", "EntryNotFound")
                for p in inside:
                    del tree[p]
            else:
                raise _HubHTTPError(400, f"Unknown commit operation {key!r}")
        commit = hub._new_commit(repo, head.oid, header.get("summary", ""), header.get("description", ""), tree)
        repo.branches[branch] = commit.oid
        url = f"{hub.endpoint}/{_URL_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        self._send_json({"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": "",
                         "pullRequestUrl": None})

    def _xet_token(self, repo: _Repo, revision: str) -> None:
        if revision != "None":
            self._commit_at(repo, revision)
        expiry = int(time.time()) + 3600
        cas_url = self.hub._xet_cas_url()
        headers = {
            "X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": "localhub-xet", "X-Xet-Token-Expiration": str(expiry)
        }
        self._send_json({"casUrl": cas_url, "accessToken": "localhub-xet", "exp": expiry}, headers=headers)

    # ------------------------------------------------------------------ downloads
    def _resolve_file(self, repo: _Repo, commit: Commit, path: str) -> None:
        entry = commit.tree.get(path)
        if entry is None:
            raise _HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = self.hub._blobs[entry.sha256]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)})
        if entry.xet_hash:
            token_url = f"{self.hub.endpoint}/api/{repo.repo_type}s/{repo.repo_id}/xet-read-token/{commit.oid}"
            headers.update({"X-Xet-Hash": entry.xet_hash, "Link": f'<{token_url}>; rel="xet-auth"'})
        status, body = 200, data
        range_header = self.headers.get("Range")
        if range_header:
            start, end = _parse_range(range_header, len(data))
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, body, headers, "application/octet-stream")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """First and last byte (inclusive) of a single-range ``Range`` header, or HTTP 416."""
    match = _RANGE.match(header.strip())
    start, end = -1, -1
    if match and match[1]:
        start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
    elif match and match[2]:
        start, end = max(size - int(match[2]), 0), size - 1
    if not 0 <= start <= end:
        raise _HubHTTPError(416, f"Range {header!r} not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _card_data(readme: bytes) -> dict[str, Any] | None:
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme.decode(errors="replace"), re.DOTALL)
    if not match:
        return None
    try:
        data = yaml.safe_load(match[1])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _last_commit_touching(repo: _Repo, commit: Commit, path: str) -> Commit:
    def snapshot(c: Commit) -> list[tuple[str, str]]:
        return sorted((p, f.git_oid) for p, f in c.tree.items() if p == path or p.startswith(path + "/"))

    current = commit
    while current.parent is not None and snapshot(repo.commits[current.parent]) == snapshot(current):
        current = repo.commits[current.parent]
    return current


def patch_hf_client(monkeypatch: pytest.MonkeyPatch, hub: LocalHub, hf_home: Path, *, xet: bool = False) -> None:
    """Point ``huggingface_hub`` (and through it ``transformers``) at ``hub`` for code that takes no endpoint.

    ``huggingface_hub.constants`` reads the environment once at import, so its module attributes are patched:
    ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE, HF_URL_HOSTS, HF_HUB_OFFLINE, HF_HUB_DISABLE_XET, HF_HOME and every
    cache/token path derived from it (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_ASSETS_CACHE, HUGGINGFACE_ASSETS_CACHE,
    HF_XET_CACHE, HF_TOKEN_PATH, HF_STORED_TOKENS_PATH), HF_HUB_DISABLE_TELEMETRY. The environment variables
    HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_XET_CACHE and HF_HUB_DISABLE_XET are set for subprocesses
    and for the token lookup (``get_token`` reads HF_TOKEN at call time); HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE
    and HF_OIDC_RESOURCE are removed. Two HfApi instances created at import are re-pointed too: the one behind
    the module-level functions (``huggingface_hub.create_repo``, ...) and transformers' shared ``hf_api()`` (reset
    to None, so it is rebuilt with the patched ENDPOINT; transformers uses it to resolve ``revision``).
    """
    from huggingface_hub import constants, hf_api

    hub_cache = hf_home / "hub"
    values = {
        "ENDPOINT": hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {"127.0.0.1"}),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": not xet,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
    }
    for name, value in values.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_api.api, "endpoint", hub.endpoint)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:
        monkeypatch.setattr(transformers_hub, "_hf_api", None)
    env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hub_cache),
           "HF_XET_CACHE": str(hf_home / "xet"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if xet:
        monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)


__all__ = ["HUB_TOKEN", "HUB_USER", "Commit", "LocalHub", "LocalHubError", "StoredFile", "patch_hf_client"]
