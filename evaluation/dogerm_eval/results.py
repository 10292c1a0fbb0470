"""Result files under OUT/<model-slug>/: the JSON + per-example parquet, the cache key, and score checkpoints.

Layout (stable): `OUT/<slug>/<name>.json`, `OUT/<slug>/<name>.per_example.parquet`, and while a run is in progress
`OUT/<slug>/.cache/<benchmark>-<key16>/chunk-NNNNN.npy` (removed once the JSON is written). `<name>` is the benchmark
for a run on all its data, `<benchmark>@<subset>+<subset>` for a run on some subsets, so that neither replaces the
other; a result on other data or settings is replaced only when asked (`check_replaceable`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dogerm_eval.errors import ModelError, OptionError
from dogerm_eval.models import ResolvedModel
from dogerm_mergekit.contract import load_manifest, verify_checkpoint
from dogerm_mergekit.errors import DogeRMError
from dogerm_mergekit.files import atomic_file, atomic_write, sha256_file

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_KEYS = ("dataset", "dataset_revision", "settings", "subsets", "sections", "score")
DEFAULT_CHUNK_SIZE = 512
PARTIAL = "partial"
"""Key of a result (and of a sweep table's ``attrs``) naming the numbers computed over part of a benchmark."""
DIGEST_MEMO = ".file-digests.json"  # OUT/<this>: sha256 of local model files by (path, size, mtime)


@dataclass(frozen=True)
class Evaluation:
    """What a benchmark's formula produced from the scores: accuracies, sections, overall score, per-example rows."""

    subsets: dict[str, float]
    sections: dict[str, float]
    score: float
    per_example: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What a result JSON holds of it (subsets, sections, score, then the benchmark's extra keys): what a
        benchmark's ``metrics`` reads."""
        return {"subsets": self.subsets, "sections": self.sections, "score": self.score, **self.extra}


def metric_columns(
    benchmark: str, values: Mapping[str, float], score: float, keep_names: bool = False
) -> dict[str, float]:
    """Sweep columns `<benchmark>/<name>` for `values` and `<benchmark>/score`.

    Names are lower-cased with dashes for spaces (`Chat Hard` -> `chat-hard`) unless `keep_names` (users' own subset
    names).
    """
    columns = {f"{benchmark}/{name if keep_names else name.lower().replace(' ', '-')}": value
               for name, value in values.items()}
    return {**columns, f"{benchmark}/score": score}


def coverage(present: Iterable[str], expected: Sequence[str],
             parts: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """`complete` and `partial` of a result scored on only some of a benchmark's parts (subsets, sections):
    `partial` maps `score` (when any of `expected` is absent) and each entry of `parts` (a section or average of the
    parts it names) computed over some but not all of its parts to ``{"missing": [names], "of": count}``; the printed
    tables say so next to the number."""
    present = set(present)

    def gap(names: Sequence[str]) -> dict[str, Any]:
        return {"missing": [name for name in names if name not in present], "of": len(names)}

    partial = {"score": gap(expected)} if not present >= set(expected) else {}
    for name, names in (parts or {}).items():
        found = gap(names)
        if 0 < len(found["missing"]) < len(names):
            partial[name] = found
    return {"complete": not partial, PARTIAL: partial}


def partial_notes(benchmark: str, result: Mapping[str, Any]) -> dict[str, str]:
    """`<benchmark>/<metric>` -> what it misses, for the numbers of `result` computed over only part of the benchmark
    (its `partial`, ``results.coverage``; a result of an older dogerm-eval with `complete: false`: its score)."""
    partial = result.get(PARTIAL)
    if partial is None:
        return {f"{benchmark}/score": "not all of the benchmark"} if result.get("complete") is False else {}
    notes = {}
    for name, gap in partial.items():
        missing = list(gap["missing"])
        text = f"over {gap['of'] - len(missing)} of {gap['of']}" if missing else ""
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            text += ", missing " + ", ".join(missing[:3]) + more
        if gap.get(PARTIAL):
            text += ("; " if text else "") + "from partial " + ", ".join(gap[PARTIAL])
        notes[next(iter(metric_columns(benchmark, {name: 0.0}, 0.0)))] = text
    return notes


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean_floats(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    if isinstance(value, Mapping):
        return {key: _clean_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_floats(item) for item in value]
    return value


def json_text(data: Mapping[str, Any]) -> str:
    """`data` as indented JSON, NaN/inf as null, numpy scalars and paths as plain values."""
    return json.dumps(_clean_floats(data), indent=2, default=_json_default) + "\n"


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,79}")


def result_name(benchmark: str, subsets: Sequence[str] | None = None) -> str:
    """`<benchmark>` for a run on all of a benchmark's data, `<benchmark>@<subset>+<subset>` (sorted) for a run on
    some subsets (`<benchmark>@subsets-<sha256[:12]>` when the names do not make a safe file name)."""
    if not subsets:
        return benchmark
    tag = "+".join(sorted(subsets))
    if not SAFE_NAME.fullmatch(tag):
        tag = "subsets-" + hashlib.sha256("\0".join(sorted(subsets)).encode()).hexdigest()[:12]
    return f"{benchmark}@{tag}"


def result_path(output_dir: Path, model: ResolvedModel, benchmark: str, subsets: Sequence[str] | None = None) -> Path:
    """`OUT/<slug>/<benchmark>.json`, or `OUT/<slug>/<benchmark>@<subsets>.json` for a run on some subsets."""
    return Path(output_dir) / model.slug / f"{result_name(benchmark, subsets)}.json"


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What a stored result covers that `new` does not: its data (name, revision) or the settings that differ."""
    if (old.get("dataset"), old.get("dataset_revision")) != (new["dataset"], new["dataset_revision"]):
        return [f"data {old.get('dataset')} ({old.get('dataset_revision')}), now {new['dataset']} "
                f"({new['dataset_revision']})"]
    stored = {k: v for k, v in (old.get("settings") or {}).items() if k != "scorer"}
    given = json.loads(json_text(new["settings"]))
    keys = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
    return [f"settings {', '.join(keys)}"] if keys else []


def check_replaceable(path: Path, covers: Mapping[str, Any], overwrite: bool = False) -> None:
    """OptionError when `path` holds a result on other data or with other settings than `covers` (`dataset`,
    `dataset_revision`, `settings` without the scorer's record) and `overwrite` is off: a result is never replaced
    unasked. A result of the same data and settings (the model changed, or a run was interrupted) may be."""
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    differences = _differences(old, covers) if isinstance(old, dict) else ["an unreadable file"]
    if differences:
        raise OptionError(f"{path} holds a result on other {differences[0]}; nothing was replaced: pass --overwrite "
                          "to replace it, or choose another --output-dir")


def model_fingerprint(model: ResolvedModel, memo: Path | None = None) -> str:
    """The Hub commit of the model, else the content key of a local folder.

    A finished checkpoint of a dogerm-sweep (its parent's `sweep.json` records it) is keyed by the file digests the
    sweep recorded (`sweep:` + sha256 over them), without reading the weights. Any other folder is keyed by
    `sha256:` of every file's path and bytes; reading a 7B checkpoint takes seconds to tens of seconds, so with
    `memo` (a JSON file) each file's digest is remembered under its path, size and modification time and later runs
    re-read only files that changed.
    """
    if model.content_key:
        return model.content_key
    if model.commit:
        return model.commit
    recorded = _sweep_digests(Path(model.path))
    if recorded is not None:
        return "sweep:" + hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()
    known = json.loads(memo.read_text(encoding="utf-8")) if memo is not None and memo.is_file() else {}
    digest, changed = hashlib.sha256(), False
    for file in sorted(p for p in Path(model.path).rglob("*") if p.is_file()):
        relative = file.relative_to(model.path).as_posix()
        if relative.startswith("."):
            continue
        stat, key = file.stat(), str(file.resolve())
        entry = known.get(key)
        if entry is None or entry[:2] != [stat.st_size, stat.st_mtime_ns]:
            entry = [stat.st_size, stat.st_mtime_ns, sha256_file(file)]
            known[key], changed = entry, True
        digest.update(f"{relative}\0{entry[2]}\n".encode())
    if memo is not None and changed:
        atomic_write(memo, json_text(known))
    return f"sha256:{digest.hexdigest()}"


def _sweep_digests(folder: Path) -> dict[str, str] | None:
    """The file digests `folder`'s sweep manifest records for it (a finished checkpoint), else None; a checkpoint
    whose files changed since they were recorded is refused, naming the file (a cached score would be stale)."""
    try:
        manifest = load_manifest(folder.parent)
        record = manifest.checkpoints.get(folder.name) if manifest is not None else None
        if record is not None:
            verify_checkpoint(folder, record)
    except DogeRMError as exc:
        raise ModelError(str(exc)) from exc
    return record.files if record is not None else None


def cache_key(
    model_fp: str, benchmark: str, dataset: str, dataset_revision: str, subsets: Sequence[str] | None,
    settings: Mapping[str, Any],
) -> str:
    """sha256 over everything that determines a result: model content, dataset revision, subsets and settings."""
    blob = json.dumps(
        {
            "model": model_fp, "benchmark": benchmark, "dataset": dataset, "dataset_revision": dataset_revision,
            "subsets": sorted(subsets) if subsets else None, "settings": settings,
        },
        sort_keys=True, default=_json_default,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def load_cached_result(output_dir: Path, model: ResolvedModel, benchmark: str, key: str,
                       subsets: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The stored result JSON if it was written with the same cache key and its parquet exists, else None."""
    path = result_path(output_dir, model, benchmark, subsets)
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    if result.get("cache_key") != key or not (path.parent / result.get("per_example", "")).is_file():
        return None
    return result


def write_result(
    output_dir: Path, model: ResolvedModel, benchmark: str, payload: Mapping[str, Any], per_example: pd.DataFrame,
    subsets: Sequence[str] | None = None,
) -> Path:
    """Write `OUT/<slug>/<benchmark>[@<subsets>].json` and its per-example parquet atomically; return the JSON path.

    `payload` holds `dataset`, `dataset_revision`, `settings`, `subsets`, `sections`, `score` and any extra keys;
    `model`, `revision` and `per_example` (the parquet's file name, relative to the JSON) are filled in here.
    """
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"result payload lacks {missing}")
    path = result_path(output_dir, model, benchmark, subsets)
    parquet = path.with_name(f"{path.stem}.per_example.parquet")
    with atomic_file(parquet) as tmp:
        per_example.to_parquet(tmp, index=False)
    result = {
        "model": model.repo_id or model.ref,
        "revision": model.version,
        **payload,
        "per_example": parquet.name,
    }
    atomic_write(path, json_text(result))
    return path


def read_per_example(result_json: Path) -> pd.DataFrame:
    """The per-example table referenced by a result JSON."""
    import pandas as pd

    result = json.loads(Path(result_json).read_text(encoding="utf-8"))
    return pd.read_parquet(Path(result_json).parent / result["per_example"])


def checkpoint_dir(output_dir: Path, model: ResolvedModel, benchmark: str, key: str) -> Path:
    """Folder of the score chunks of one (model, benchmark, key) run."""
    return Path(output_dir) / model.slug / ".cache" / f"{benchmark}-{key[:16]}"


#: Batch size of RewardBench's run_rm.py / run_v2.py (``--batch_size`` default); compat checkpoints are cut at its
#: multiples so that they never change its batches.
REWARDBENCH_BATCH_SIZE = 64


class TextScorer(Protocol):
    """What `score_in_chunks` uses of a scorer: `score`, and (RewardScorer) the text-level methods, when present."""

    def score(self, conversations: Sequence[tuple[str, str]]) -> np.ndarray: ...


def _plan(scorer: Any, passes: Sequence[Sequence[tuple[str, str]]], chunk_size: int) -> dict[str, Any]:
    """How a run is cut into checkpoint chunks.

    Fast mode (the default): every conversation is keyed by the text the model scores (the scorer's `format_texts`;
    the (prompt, response) pair for scorers without one); the distinct keys, in order of first appearance over all
    passes, are scored once each, `chunk_size` per chunk, and every position gets its key's score. So a text appearing
    as chosen and as rejected, in two subsets or in two chunks gets exactly one score.
    `compat="rewardbench"`: each pass in order, without de-duplication (rewardbench scores every text where it
    appears), chunks rounded up to a multiple of 64 so that its batches of 64 stay the same.
    """
    if getattr(scorer, "compat", "fast") == "rewardbench":
        size = -(-chunk_size // REWARDBENCH_BATCH_SIZE) * REWARDBENCH_BATCH_SIZE
        chunks = [(p, start, min(start + size, len(conversations)))
                  for p, conversations in enumerate(passes) for start in range(0, len(conversations), size)]
        return {"mode": "rewardbench", "chunk_size": size, "chunks": chunks}
    flat = [pair for conversations in passes for pair in conversations]
    keys: list[Any] = scorer.format_texts(flat) if hasattr(scorer, "format_texts") else flat
    position: dict[Any, int] = {}
    inverse = np.array([position.setdefault(key, len(position)) for key in keys], dtype=np.int64)
    digest = hashlib.sha256("\0".join(map(str, position)).encode()).hexdigest()
    return {"mode": "fast", "chunk_size": chunk_size, "keys": list(position), "inverse": inverse,
            "digest": digest}


def prepare_checkpoints(directory: Path, passes: Sequence[Sequence[tuple[str, str]]], chunk_size: int,
                        scorer: Any = None) -> None:
    """Create the checkpoint folder; empty it when it holds chunks of a different layout (mode, chunk size, texts)."""
    meta: dict[str, Any] = {"passes": [len(p) for p in passes], "chunk_size": chunk_size}
    if scorer is not None:
        plan = _plan(scorer, passes, chunk_size)
        meta.update(mode=plan["mode"], chunk_size=plan["chunk_size"], texts=plan.get("digest"))
    meta_path = directory / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text(encoding="utf-8")) != meta:
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(meta_path, json_text(meta))


def score_in_chunks(
    scorer: TextScorer | Callable[[Sequence[tuple[str, str]]], np.ndarray],
    passes: Sequence[Sequence[tuple[str, str]]],
    directory: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int, int], None] | None = None,
    write: bool = True,
) -> np.ndarray:
    """Score every pass, checkpoint by checkpoint; return all scores, passes concatenated.

    `scorer`: an object with `score(conversations)` (a `RewardScorer`: also `format_texts`, `score_texts` and
    `compat`), or a bare scoring function. Fast mode scores each distinct text once over all passes (see `_plan`);
    compat mode keeps rewardbench's per-pass batches. Chunks found in `directory` when the call starts are reused,
    so an interrupted run resumes at its first missing chunk (their texts are handed to the scorer's `remember`, when
    it has one, so a text is not scored a second time later in the run); new chunks are saved there when `write`
    (only the main process writes under multi-process runs). Call `prepare_checkpoints` first, with the same scorer.
    `progress(done, total)` is called after each chunk, in scored units (texts).
    """
    if callable(scorer) and not hasattr(scorer, "score"):
        scorer = _FunctionScorer(scorer)
    plan = _plan(scorer, passes, chunk_size)
    existing = {path.name for path in directory.glob("chunk-*.npy")}
    by_text = hasattr(scorer, "score_texts")

    def run(index: int, units: Sequence[Any], score: Callable[[Sequence[Any]], np.ndarray]) -> np.ndarray:
        chunk_path = directory / f"chunk-{index:05d}.npy"
        if chunk_path.name in existing:
            values = np.load(chunk_path)
            if values.shape != (len(units),):
                raise RuntimeError(f"checkpoint {chunk_path} holds {values.shape} scores for {len(units)} texts")
            if by_text and hasattr(scorer, "remember"):
                scorer.remember(units, values)
            return values
        values = np.asarray(score(units), dtype=np.float64)
        if values.shape != (len(units),):
            raise RuntimeError(f"scorer returned shape {values.shape} for {len(units)} conversations")
        if write:
            with atomic_file(chunk_path) as tmp, tmp.open("wb") as handle:
                np.save(handle, values)
        return values

    parts: list[np.ndarray] = []
    if plan["mode"] == "rewardbench":
        total = sum(len(p) for p in passes)
        done = 0
        for index, (p, start, stop) in enumerate(plan["chunks"]):
            chunk = passes[p][start:stop]
            if by_text:
                parts.append(run(index, scorer.format_texts(chunk), scorer.score_texts))
            else:
                parts.append(run(index, chunk, scorer.score))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    keys, size = plan["keys"], plan["chunk_size"]
    for index, start in enumerate(range(0, len(keys), size)):
        units = keys[start : start + size]
        if by_text:
            parts.append(run(index, units, scorer.score_texts))
        else:
            parts.append(run(index, units, scorer.score))
        if progress is not None:
            progress(min(start + size, len(keys)), len(keys))
    unique = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    return unique[plan["inverse"]] if len(plan["inverse"]) else np.zeros(0, dtype=np.float64)


class _FunctionScorer:
    """A bare scoring function as a scorer (keys are (prompt, response) pairs)."""

    def __init__(self, function: Callable[[Sequence[tuple[str, str]]], np.ndarray]) -> None:
        self.score = function
