"""Resolve a model reference (local folder or ``org/name[@revision]`` on the Hub) to a validated local folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from dogerm_eval.errors import ModelError
from dogerm_mergekit import hubcache, tables

#: Files never needed to score with transformers (other frameworks, training state).
IGNORED_FILES = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.gguf", "original/*", "optimizer.pt",
                 "scheduler.pt", "rng_state*.pth", "training_args.bin"]
#: PyTorch pickles, skipped when the repo also has safetensors weights.
PICKLED_WEIGHTS = ["*.bin", "*.pt", "*.pth"]


@dataclass(frozen=True)
class ResolvedModel:
    """A reward model available in a local folder, with where it came from."""

    path: Path
    ref: str
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    content_key: str | None = None
    """The content key of weights that are neither a folder nor a Hub commit (an in-memory merge): what results are
    cached under instead of hashing ``path``."""

    @property
    def version(self) -> str | None:
        """What results record as the model's revision: the Hub commit, an in-memory merge's key, or the revision."""
        return self.commit or self.content_key or self.revision

    @property
    def slug(self) -> str:
        """File-system-safe name for output folders: ``org--name@revision`` or the local folder's name."""
        if self.repo_id is None:
            return self.path.name
        slug = self.repo_id.replace("/", "--")
        if self.revision:
            slug += "@" + self.revision.replace("/", "--")
        return slug


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """Split ``org/name@revision`` into ``(repo_id, revision)``; revision is None when absent (ModelError if it is
    no Hub id)."""
    return tables.parse_hub_ref(ref, ModelError)


def _download(repo_id: str, revision: str | None) -> Path:
    """Snapshot the repo into the HF cache (HF_HOME and HF_TOKEN apply); return its folder. With HF_HUB_OFFLINE
    set, the cached snapshot (:func:`dogerm_mergekit.hubcache.cached_snapshot`).

    Safetensors weights are preferred: PyTorch pickles are fetched only when the snapshot has no safetensors file.
    """
    where = f"{repo_id}@{revision}" if revision else repo_id
    if hubcache.offline():  # what transformers reads offline: the cached snapshot, however it was downloaded
        return hubcache.cached_snapshot(repo_id, revision, tokenizer=True, error=ModelError)
    try:
        path = Path(snapshot_download(repo_id, revision=revision, ignore_patterns=IGNORED_FILES + PICKLED_WEIGHTS))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(repo_id, revision=revision, ignore_patterns=IGNORED_FILES))
        return path
    except RevisionNotFoundError as exc:
        raise ModelError(f"revision {revision!r} does not exist in Hub repo {repo_id!r}") from exc
    except RepositoryNotFoundError as exc:
        raise ModelError(
            f"Hub repo {repo_id!r} not found or not accessible (no local folder of that name either; set HF_TOKEN "
            "for private or gated repos)"
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise ModelError(
            f"cannot resolve {where!r}: {constants.ENDPOINT} is unreachable and it is not (fully) in the Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}); run `{hubcache.download_command(repo_id, revision)}` where the Hub "
            "is reachable, then rerun"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"could not download {where!r} from {constants.ENDPOINT}: {exc}") from exc


def needs_remote_code(exc: Exception) -> bool:
    """Whether transformers refused to load something because it needs the repository's own code."""
    return "trust_remote_code" in str(exc)


def remote_code_error(ref: Any, what: str) -> ModelError:
    return ModelError(f"{ref}: its {what} needs the Python code shipped in the model repository; if you trust that "
                      "code, rerun with --trust-remote-code")


def validate_reward_model(path: Path, trust_remote_code: bool = False) -> None:
    """Raise ModelError unless ``path`` holds a sequence-classification model with exactly one label (with
    ``trust_remote_code``: also a custom class the repository maps AutoModelForSequenceClassification to)."""
    from transformers import AutoConfig

    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: not a transformers model folder")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        if needs_remote_code(exc) and not trust_remote_code:
            raise remote_code_error(path, "config") from exc
        raise ModelError(f"cannot read the model config in {path}: {exc}") from exc
    architectures = list(config.architectures or [])
    if trust_remote_code and "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {}):
        architectures.append("AutoModelForSequenceClassification")
    if not any(arch.endswith("ForSequenceClassification") for arch in architectures):
        found = ", ".join(architectures) or "no architecture recorded"
        raise ModelError(f"{path} is not a sequence-classification reward model ({found}): it has no score head")
    if config.num_labels != 1:
        raise ModelError(f"{path} has {config.num_labels} labels; a reward model must have exactly one")


def resolve_model(ref: str, trust_remote_code: bool = False) -> ResolvedModel:
    """Resolve a local folder or a Hub id with optional ``@revision`` and validate it as a one-label RM."""
    resolved = locate_model(ref)
    validate_reward_model(resolved.path, trust_remote_code)
    return resolved


def locate_model(ref: str) -> ResolvedModel:
    """A local folder, or a Hub id with optional ``@revision`` downloaded to the cache; any kind of model."""
    local = Path(ref).expanduser()
    if local.is_dir():
        resolved = ResolvedModel(path=local.resolve(), ref=ref)
    elif local.exists():
        raise ModelError(f"{ref!r} is a file; expected a model folder or a Hub id")
    elif tables.looks_like_path(ref):
        raise ModelError(f"model path {ref!r} does not exist")
    else:
        repo_id, revision = parse_hub_ref(ref)
        path = _download(repo_id, revision)
        resolved = ResolvedModel(path=path, ref=ref, repo_id=repo_id, revision=revision, commit=path.name)
    return resolved
