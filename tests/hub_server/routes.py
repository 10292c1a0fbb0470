"""The URL table: which request goes to which route of the API, LFS, Xet and download mixins."""

from __future__ import annotations

import re
from urllib.parse import unquote

from tests.hub_server.api import ApiRoutes
from tests.hub_server.downloads import DownloadRoutes
from tests.hub_server.handler import HubHTTPError
from tests.hub_server.lfs import LfsRoutes
from tests.hub_server.xet import XetRoutes

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_API_REPO = re.compile(r"^/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+?)(?:/(?P<rest>.*))?$")
_LFS_BATCH = re.compile(r"^/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LFS_PUT = re.compile(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$")


class HubRequestHandler(ApiRoutes, LfsRoutes, XetRoutes, DownloadRoutes):
    """Routes one request to the bound :class:`LocalHub` (set as the ``hub`` class attribute)."""

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
                return self._lfs_batch(self._repo(REPO_TYPES[(m["kind"] or "models")], m["repo"], write=True))
        if (m := _RESOLVE.match(path)) and method in ("GET", "HEAD"):
            with hub._lock:
                repo = self._repo(REPO_TYPES[(m["kind"] or "models")], m["repo"])
                commit = self._commit_at(repo, unquote(m["rev"]))
            return self._resolve_file(repo, commit, unquote(m["path"]))
        if m := _API_REPO.match(path):
            with hub._lock:
                return self._repo_api(method, REPO_TYPES[m["kind"]], m["repo"], m["rest"] or "")
        raise HubHTTPError(404, f"LocalHub does not implement {method} {path}")

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
        raise HubHTTPError(404, f"LocalHub does not implement {method} /api/{kind}s/{repo_id}/{rest}")

