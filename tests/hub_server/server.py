"""LocalHub: the store served over HTTP on 127.0.0.1, with one write token and test-facing controls."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

from tests.hub_server.handler import HubHTTPError, HubHTTPServer
from tests.hub_server.routes import HubRequestHandler
from tests.hub_server.storage import LocalHubError, Store, StoredFile
from tests.hub_server.xet import XetCas

HUB_TOKEN = "hf_localhub_write_token"
HUB_USER = "localhub-user"


class LocalHub(Store):
    """In-memory Hub: repos -> branches/tags -> commits -> file trees, served over HTTP on 127.0.0.1.

    Accepts one write token (:attr:`token`); any other bearer token is refused with 401, and write endpoints
    also refuse anonymous calls. Thread-safe; start with :meth:`start` or use as a context manager.
    """

    def __init__(self, token: str = HUB_TOKEN, user: str = HUB_USER) -> None:
        super().__init__()
        self.token = token
        self.user = user
        self.requests: list[tuple[str, str]] = []
        self.server_errors: list[str] = []  # tracebacks of unexpected server-side exceptions (answered with 500)
        self.commit_attempts = 0
        self._xet_hashes: dict[str, str] = {}  # sha256 -> xet hash, for files uploaded through Xet
        self._failures: list[int] = []
        self._secret = secrets.token_bytes(16)
        self._server: HubHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._xet: XetCas | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalHub:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            raise LocalHubError("LocalHub is already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="localhub-"))
        (self._workdir / "xet").mkdir()
        self._xet = XetCas(self._workdir / "xet")
        handler = type("_BoundHandler", (HubRequestHandler,), {"hub": self})
        self._server = HubHTTPServer(("127.0.0.1", 0), handler)
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
        return self.xet_cas.folder

    @property
    def xet_cas(self) -> XetCas:
        """The Xet CAS of this hub (created by :meth:`start`)."""
        if self._xet is None:
            raise LocalHubError("LocalHub is not started")
        return self._xet

    # ------------------------------------------------------------------ test-facing helpers
    def fail_next_commit(self, status_code: int = 500, times: int = 1) -> None:
        """Make the next ``times`` commit POSTs answer ``status_code`` without committing.

        Note: with Xet enabled, ``upload_folder`` retries commit POSTs on 408/429/5xx (up to 5 retries with
        backoff), so a single 500 is absorbed by the client there; use a 4xx code to make the call fail.
        """
        with self._lock:
            self._failures.extend([status_code] * times)

    # ------------------------------------------------------------------ used by the routes
    def _lfs_file(self, sha256: str, size: int | None) -> StoredFile:
        """The stored LFS object ``sha256``: uploaded by LFS PUT, or found in the Xet shards and rebuilt."""
        if sha256 not in self._blobs and (found := self.xet_cas.find(sha256)) is not None:
            self._blobs[sha256], self._xet_hashes[sha256] = found
        data = self._blobs.get(sha256)
        if data is None:
            raise HubHTTPError(422, f"LFS object {sha256} was never uploaded (neither by LFS PUT nor by Xet)")
        if size is not None and size != len(data):
            raise HubHTTPError(422, f"LFS object {sha256} has {len(data)} bytes, commit says {size}")
        return self._store(data, lfs=True, xet_hash=self._xet_hashes.get(sha256))

    def _lfs_signature(self, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    def _next_failure(self) -> int | None:
        with self._lock:
            self.commit_attempts += 1
            return self._failures.pop(0) if self._failures else None

