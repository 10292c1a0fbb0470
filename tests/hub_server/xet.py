"""Xet: the ``local://`` CAS folder real ``hf_xet`` uploads to, its shard index, and the Xet token route.

When a commit references a file by sha256 that no LFS PUT uploaded, the hub looks it up in the shards hf_xet wrote
and rebuilds its bytes with hf_xet; ``resolve`` then advertises its ``X-Xet-Hash`` (see ``downloads``).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.hub_server.handler import BaseHandler, HubHTTPError
from tests.hub_server.storage import Repo


def xet_hash_hex(raw: bytes) -> str:
    # A Xet MerkleHash prints as its four little-endian u64 words, each as 16 hex digits.
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def parse_xet_shard(data: bytes) -> Iterator[tuple[str, str, int]]:
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
            yield xet_hash_hex(data[offset : offset + 32]), xet_hash_hex(raw_hash), size
            offset += 48



class XetCas:
    """The CAS folder hf_xet reads and writes through ``local://``, indexed by the sha256 its shards record."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._shards_seen: set[Path] = set()
        self._shard_files: dict[str, tuple[str, int]] = {}  # sha256 -> (xet hash, size), from parsed shards
        self._session: Any = None  # hf_xet.XetSession, created on the first read

    @property
    def url(self) -> str:
        """The CAS URL handed to clients in Xet tokens."""
        return f"local://{self.folder.as_posix()}"

    def find(self, sha256: str) -> tuple[bytes, str] | None:
        """Content and Xet hash of the uploaded file with this sha256, or None if no shard records it."""
        # hf_xet writes and moves temporary files while a client uploads: walk (which skips folders that vanish)
        # and skip shards that moved away between listing and reading
        found = {Path(root) / name for root, _, names in os.walk(self.folder) for name in names if name.endswith(".mdb")}
        for shard in sorted(found - self._shards_seen):  # shards are immutable
            try:
                content = shard.read_bytes()
            except FileNotFoundError:
                continue
            for file_sha256, xet_hash, size in parse_xet_shard(content):
                self._shard_files[file_sha256] = (xet_hash, size)
            self._shards_seen.add(shard)
        if sha256 not in self._shard_files:
            return None
        xet_hash, size = self._shard_files[sha256]
        data = self._read(xet_hash, size)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise HubHTTPError(422, f"Xet file {xet_hash} does not hash to {sha256}")
        return data, xet_hash

    def _read(self, xet_hash: str, size: int) -> bytes:
        import hf_xet

        if self._session is None:
            self._session = hf_xet.XetSession()
        group = self._session.new_download_stream_group(
            endpoint=self.url, token="localhub", token_expiry_unix_secs=int(time.time()) + 3600
        )
        return b"".join(group.download_stream(hf_xet.XetFileInfo(xet_hash, size)))


class XetRoutes(BaseHandler):
    """``GET /api/<kind>s/<repo>/xet-{write,read}-token/<rev>``: point the client at the CAS folder."""

    def _xet_token(self, repo: Repo, revision: str) -> None:
        if revision != "None":
            self._commit_at(repo, revision)
        expiry = int(time.time()) + 3600
        cas_url = self.hub.xet_cas.url
        headers = {
            "X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": "localhub-xet", "X-Xet-Token-Expiration": str(expiry)
        }
        self._send_json({"casUrl": cas_url, "accessToken": "localhub-xet", "exp": expiry}, headers=headers)

