"""HTTP plumbing shared by all routes: the server, request parsing, answers, errors and token checks."""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.hub_server.storage import Commit, LocalHubError, Repo

if TYPE_CHECKING:
    from tests.hub_server.server import LocalHub


class HubHTTPError(Exception):
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



class HubHTTPServer(ThreadingHTTPServer):
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



class BaseHandler(BaseHTTPRequestHandler):
    """Request plumbing for the route mixins; ``_route`` (see ``routes``) answers, with the bound ``hub``."""

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
        except HubHTTPError as err:
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

    def _route(self, method: str, path: str) -> None:
        """Answer one request: the URL table of :class:`tests.hub_server.routes.HubRequestHandler`."""
        raise NotImplementedError

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
            raise HubHTTPError(400, f"Invalid JSON body: {err}") from None

    # ------------------------------------------------------------------ auth
    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _check_token(self, write: bool) -> None:
        token = self._bearer()
        if token is not None and token != self.hub.token:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        if write and token is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def _repo(self, kind: str, repo_id: str, write: bool = False) -> Repo:
        self._check_token(write)
        repo = self.hub._repos.get((kind, repo_id))
        if repo is None or (repo.private and self._bearer() is None):
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        try:
            return self.hub._resolve(repo, revision)
        except LocalHubError:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound") from None

