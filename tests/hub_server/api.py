"""The Hub API routes: account, repo create/delete/info, tree, paths-info, refs, history, branches, tags, commits."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs

import yaml

from tests.hub_server.handler import BaseHandler, HubHTTPError
from tests.hub_server.lfs import DEFAULT_GITATTRIBUTES
from tests.hub_server.storage import Commit, Repo, now

URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class ApiRoutes(BaseHandler):
    """``/api/whoami-v2``, ``/api/repos/{create,delete}``, ``/api/validate-yaml`` and ``/api/<kind>s/<repo>/...``."""

    def _whoami(self) -> None:
        if self._bearer() != self.hub.token:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        access = {"displayName": "localhub", "role": "write", "createdAt": now()}
        self._send_json({"type": "user", "id": "0" * 24, "name": self.hub.user, "fullname": self.hub.user,
                         "orgs": [], "auth": {"type": "access_token", "accessToken": access}})

    def _repo_from_body(self) -> tuple[str, str, dict[str, Any]]:
        self._check_token(write=True)
        body = self._json_body()
        kind = body.get("type") or "model"
        if kind not in URL_PREFIXES:
            raise HubHTTPError(400, f"Unsupported repo type {kind!r}")
        return kind, f"{body.get('organization') or self.hub.user}/{body['name']}", body

    def _create_repo(self) -> None:
        kind, repo_id, body = self._repo_from_body()
        hub = self.hub
        url = f"{hub.endpoint}/{URL_PREFIXES[kind]}{repo_id}"
        with hub._lock:
            if (kind, repo_id) in hub._repos:
                raise HubHTTPError(409, f"You already created this {kind} repo", payload={"url": url})
            private = body.get("visibility", "public") != "public" or bool(body.get("private"))
            repo = Repo(repo_type=kind, repo_id=repo_id, private=private, created_at=now())
            gitattributes = hub._store(DEFAULT_GITATTRIBUTES.encode(), lfs=False)
            initial = hub._new_commit(repo, None, "initial commit", "", {".gitattributes": gitattributes})
            repo.branches["main"] = initial.oid
            hub._repos[(kind, repo_id)] = repo
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        kind, repo_id, _ = self._repo_from_body()
        with self.hub._lock:
            if self.hub._repos.pop((kind, repo_id), None) is None:
                raise HubHTTPError(404, "Repository not found", "RepoNotFound")
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

    def _repo_info(self, repo: Repo, revision: str) -> None:
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
    def _entry_json(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
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

    def _tree(self, repo: Repo, commit: Commit, sub: str) -> None:
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
            raise HubHTTPError(404, f"{sub} does not exist on {commit.oid}", "EntryNotFound")
        self._send_json([self._entry_json(repo, commit, p, expand) for p in sorted(paths)])

    def _paths_info(self, repo: Repo, commit: Commit) -> None:
        form = parse_qs(self.body.decode())
        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        folders = {"/".join(p.split("/")[:i]) for p in commit.tree for i in range(1, p.count("/") + 1)}
        wanted = [p.strip("/") for p in form.get("paths", [])]
        self._send_json([self._entry_json(repo, commit, p, expand) for p in wanted if p in commit.tree or p in folders])

    def _refs(self, repo: Repo) -> None:
        def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())]

        payload: dict[str, Any] = {
            "branches": refs(repo.branches, "heads"), "converts": [], "tags": refs(repo.tags, "tags")
        }
        if self.query.get("include_prs"):
            payload["pullRequests"] = []
        self._send_json(payload)

    def _list_commits(self, repo: Repo, commit: Commit) -> None:
        formatted = "formatted" in self.query.get("expand[]", [])
        items = []
        for item in self.hub.commits(repo.repo_id, commit.oid, repo.repo_type):
            entry: dict[str, Any] = {"id": item.oid, "title": item.title, "message": item.message, "date": item.date,
                                     "authors": [{"user": self.hub.user, "avatar": None}]}
            if formatted:
                entry["formatted"] = {"title": item.title, "message": item.message}
            items.append(entry)
        self._send_json(items)

    def _branch(self, repo: Repo, name: str, create: bool) -> None:
        if not create:
            if repo.branches.pop(name, None) is None:
                raise HubHTTPError(404, f"Branch {name} not found", "RevisionNotFound")
            return self._send_json({})
        if name in repo.branches:
            raise HubHTTPError(409, f"Reference already exists: refs/heads/{name}")
        start = self._json_body().get("startingPoint") or "main"
        repo.branches[name] = self._commit_at(repo, start).oid
        self._send_json({})

    def _tag(self, repo: Repo, arg: str, create: bool) -> None:
        if not create:
            if repo.tags.pop(arg, None) is None:
                raise HubHTTPError(404, f"Tag {arg} not found", "RevisionNotFound")
            return self._send_json({})
        tag = self._json_body()["tag"]
        if tag in repo.tags:
            raise HubHTTPError(409, f"Reference already exists: refs/tags/{tag}")
        repo.tags[tag] = self._commit_at(repo, arg).oid
        self._send_json({})


    def _commit(self, repo: Repo, branch: str) -> None:
        hub = self.hub
        if self.query.get("create_pr"):
            raise HubHTTPError(400, "LocalHub does not implement pull requests (create_pr)")
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise HubHTTPError(400, f"Commit payload is not ndjson: {err}") from None
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "Commit payload must start with a header line")
        status = hub._next_failure()
        if status is not None:
            raise HubHTTPError(status, "Simulated commit failure (LocalHub.fail_next_commit)")
        if branch not in repo.branches:
            raise HubHTTPError(404, f"Branch {branch} not found (commits go to branches)", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
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
                    raise HubHTTPError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                inside = [p for p in tree if p.startswith(path.rstrip("/") + "/")]
                if not inside:
                    raise HubHTTPError(404, "A file with this name doesn't exist", "EntryNotFound")
                for p in inside:
                    del tree[p]
            else:
                raise HubHTTPError(400, f"Unknown commit operation {key!r}")
        commit = hub._new_commit(repo, head.oid, header.get("summary", ""), header.get("description", ""), tree)
        repo.branches[branch] = commit.oid
        url = f"{hub.endpoint}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        self._send_json({"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": "",
                         "pullRequestUrl": None})



def _card_data(readme: bytes) -> dict[str, Any] | None:
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme.decode(errors="replace"), re.DOTALL)
    if not match:
        return None
    try:
        data = yaml.safe_load(match[1])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _last_commit_touching(repo: Repo, commit: Commit, path: str) -> Commit:
    def snapshot(c: Commit) -> list[tuple[str, str]]:
        return sorted((p, f.git_oid) for p, f in c.tree.items() if p == path or p.startswith(path + "/"))

    current = commit
    while current.parent is not None and snapshot(repo.commits[current.parent]) == snapshot(current):
        current = repo.commits[current.parent]
    return current

