"""Hub models read from the Hugging Face cache as transformers reads them when ``HF_HUB_OFFLINE=1`` is set.

Offline, a Hub id resolves to the cached snapshot of the revision asked for: a commit, or a branch or tag through
the cache's ``refs/`` (``main`` when none is given), whatever else of the repo was downloaded (a merge downloads
only some files). The files the model needs are checked there, and one that is missing is named with the command
that downloads it. Online, :func:`model_snapshot` downloads what transformers reads of a model: config, weights
(safetensors, else PyTorch pickles) and every tokenizer file, the chat template included.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import constants, get_cached_repo_tree, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import CachedRepoTreeNotFoundError
from huggingface_hub.file_download import REGEX_COMMIT_HASH, repo_folder_name

from dogerm_mergekit.errors import CheckpointError, DogeRMError

#: Tokenizer files transformers reads from a model folder (besides the ``*.json`` ones).
TOKENIZER_FILES = ("tokenizer.model", "merges.txt", "vocab.txt", "chat_template.jinja", "tiktoken.model")
WEIGHTS = (".safetensors", ".bin")


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, as huggingface_hub read it."""
    return constants.is_offline_mode()


def download_command(repo_id: str, revision: str | None, repo_type: str = "model") -> str:
    """The command that puts ``repo_id`` (at ``revision``) into the Hugging Face cache."""
    kind = "" if repo_type == "model" else f" --repo-type {repo_type}"
    return f"hf download {repo_id}{kind}" + (f" --revision {revision}" if revision else "")


def cached_branches(repo_id: str, cache_dir: str | None = None) -> list[str]:
    """The branches and tags of ``repo_id`` that the Hugging Face cache records (its ``refs/``), read offline."""
    refs = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs"
    return sorted(p.name for p in refs.iterdir() if p.is_file()) if refs.is_dir() else []


def cached_commit(folder: str | Path) -> str | None:
    """The commit of a snapshot folder of the Hugging Face cache (``models--org--name/snapshots/<commit>``)."""
    folder = Path(folder)
    in_cache = folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--")
    return folder.name if in_cache and REGEX_COMMIT_HASH.fullmatch(folder.name) else None


def _expected(repo_id: str, revision: str | None, cache_dir: str | None, folder: Path,
              tokenizer: bool) -> list[str]:
    """The files the model needs at the top of its snapshot: from the cached listing of the repo where
    ``snapshot_download`` left one, else from the folder itself (the shards its weight index names)."""
    try:
        names = [f.path for f in get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache_dir)]
    except CachedRepoTreeNotFoundError:
        names = [p.name for p in folder.iterdir()]
        for index in folder.glob(f"*{WEIGHTS[0]}.index.json"):
            names += json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()
    names = sorted({n for n in names if "/" not in n})
    kind = next((k for k in WEIGHTS if any(n.endswith(k) for n in names)), None)
    wanted = [n for n in names if n == "config.json" or (kind and n.endswith((kind, f"{kind}.index.json")))]
    if tokenizer:
        wanted += [n for n in names if n.endswith(".json") and n != "config.json" or n in TOKENIZER_FILES]
    return wanted if kind else [*wanted, "model.safetensors"]


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | None = None, *,
                    tokenizer: bool = False, error: type[DogeRMError] = CheckpointError) -> Path:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (``main`` by default), with its config, weights
    (and, with ``tokenizer``, tokenizer files) present; else ``error`` naming what is missing and the download."""
    where = f"{repo_id}@{revision}" if revision else repo_id
    fix = f"run `{download_command(repo_id, revision)}` where the Hub is reachable (same HF_HOME), then rerun"
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    if not isinstance(found, str):
        cache = cache_dir or constants.HF_HUB_CACHE
        raise error(f"{where} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: {fix}")
    folder = Path(found).parent
    missing = [n for n in _expected(repo_id, revision, cache_dir, folder, tokenizer) if not (folder / n).is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise error(f"the cached snapshot of {where} ({folder}) lacks {', '.join(missing[:3])}{more} and "
                    f"HF_HUB_OFFLINE is set: {fix}")
    return folder


def model_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """The snapshot folder of a Hub model with its config, weights and tokenizer: downloaded (safetensors weights
    preferred), or offline the cached one (:func:`cached_snapshot`)."""
    if offline():
        return cached_snapshot(repo_id, revision, cache_dir, tokenizer=True)
    files = ["*.json", *TOKENIZER_FILES]
    folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                    allow_patterns=[*files, f"*{WEIGHTS[0]}"]))
    if not any(folder.glob(f"*{WEIGHTS[0]}")):
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                        allow_patterns=[*files, f"*{WEIGHTS[1]}"]))
    return folder
