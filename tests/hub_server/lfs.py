"""Git LFS: which files the hub stores in LFS (preupload), and the LFS batch + basic PUT upload endpoints."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
from typing import Any

from tests.hub_server.handler import BaseHandler, HubHTTPError
from tests.hub_server.storage import Commit, Repo

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


def lfs_patterns(gitattributes: bytes | None) -> list[str]:
    if gitattributes is None:
        return []
    patterns = []
    for line in gitattributes.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def matches_gitattribute(path: str, pattern: str) -> bool:
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


class LfsRoutes(BaseHandler):
    """``POST .../preupload/<rev>``, ``POST <repo>.git/info/lfs/objects/batch`` and ``PUT /lfs-upload/<oid>``."""

    def _preupload(self, repo: Repo, commit: Commit) -> None:
        gitattributes = commit.tree.get(".gitattributes")
        patterns = lfs_patterns(self.hub._blobs[gitattributes.sha256] if gitattributes else None)
        answer = []
        for item in self._json_body().get("files", []):
            path = item["path"]
            sample = base64.b64decode(item.get("sample", ""))
            lfs = (
                item.get("size", 0) >= LFS_SIZE_THRESHOLD
                or b"\0" in sample
                or any(matches_gitattribute(path, pattern) for pattern in patterns)
            )
            remote = commit.tree.get(path)
            oid = None if remote is None else (remote.sha256 if remote.lfs else remote.git_oid)
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send_json({"files": answer, "commitOid": commit.oid})

    def _lfs_batch(self, repo: Repo) -> None:
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubHTTPError(400, "LocalHub only implements LFS uploads (downloads go through /resolve)")
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
            raise HubHTTPError(403, "Invalid LFS upload signature")
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != oid:
            raise HubHTTPError(400, f"Uploaded content does not match LFS oid {oid} / size {size}")
        with self.hub._lock:
            self.hub._blobs[oid] = self.body
        self._send(200, b"", {"ETag": f'"{oid}"'}, "text/plain")

