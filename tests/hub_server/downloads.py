"""File downloads: ``resolve`` (HEAD/GET, single ``Range``), with the LFS and Xet headers the client reads."""

from __future__ import annotations

import re

from tests.hub_server.handler import BaseHandler, HubHTTPError
from tests.hub_server.storage import Commit, Repo

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class DownloadRoutes(BaseHandler):
    """``GET``/``HEAD`` ``/[<kind>s/]<repo>/resolve/<rev>/<path>``."""

    def _resolve_file(self, repo: Repo, commit: Commit, path: str) -> None:
        entry = commit.tree.get(path)
        if entry is None:
            raise HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
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
        raise HubHTTPError(416, f"Range {header!r} not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end


