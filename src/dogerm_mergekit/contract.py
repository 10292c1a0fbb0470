"""The contract between ``dogerm-sweep`` and what reads its output (``dogerm-eval``, ``dogerm-push``).

- checkpoint names: ``lambda-0.30`` for a folder or Hub branch (:func:`checkpoint_name`, :func:`lambda_of`), and
  ``lambda-0.30_0.50`` (one lambda per domain model, in ``models:`` order) for several domain models
  (:func:`grid_checkpoint_name`, :func:`lambdas_of`);
- lambda lists as the command lines take them (:func:`parse_lambdas`), and per-domain grids (:func:`parse_grid`);
- ``OUT/sweep.json``, the sweep manifest (:class:`SweepManifest`), which checkpoints are complete
  (:func:`finished_checkpoints`), and whether a checkpoint still holds the bytes recorded (:func:`verify_checkpoint`);
  every name a manifest gives is one plain path component inside the sweep, links refused (:func:`inside`), since a
  manifest may come from anyone, except the links into its own ``blobs/`` that the Hugging Face cache stores every
  downloaded file as (:func:`cache_link`);
- ``metrics.json``, the metrics table per lambda that the evaluator writes and the Hub card shows
  (:class:`MetricsTable`).

Import-light (pydantic only), so both command lines stay fast to start.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dogerm_mergekit.errors import CheckpointError, DogeRMConfigError, DogeRMError, UnsafePathError
from dogerm_mergekit.files import atomic_write, fast_digest_file

MANIFEST = "sweep.json"
METRICS = "metrics.json"
Point = dict[str, float]
"""A merge point, the one shape every sweep, grid, reader and report uses: each swept parameter, ``lambda`` (one
domain model), ``lambda[MODEL]`` (per domain model), or a kernel's ``density``, ``weight[MODEL]``, ... -> value."""


def lambda_point(lam: float) -> Point:
    """The point of a one-domain lambda: ``{"lambda": lam}``."""
    return {"lambda": float(lam)}


def lambda_vector(point: Point | float | Sequence[float], keys: Sequence[str]) -> tuple[float, ...]:
    """A dogerm point as its lambda vector in ``models:`` order: ``{"lambda": x}`` or ``{"lambda[MODEL]": x, ...}``
    (MODEL as the manifest records it), or, for callers' convenience, a lambda or a lambda vector."""
    if isinstance(point, Mapping):
        if set(point) == {"lambda"}:
            return (float(point["lambda"]),)
        missing = [key for key in keys if f"lambda[{key}]" not in point]
        if missing or len(point) != len(keys):
            raise DogeRMConfigError(f"the point {dict(point)} does not give lambda[MODEL] for exactly the domain "
                                    f"models {keys}")
        return tuple(float(point[f"lambda[{key}]"]) for key in keys)
    return (float(point),) if isinstance(point, (int, float)) else tuple(map(float, point))


_NAME = re.compile(r"^lambda-(.+)$")


def checkpoint_name(lam: float) -> str:
    """Folder and branch name: ``lambda-0.30`` (more digits only where two decimals would round)."""
    text = f"{lam:.2f}"
    return f"lambda-{text if float(text) == lam else repr(float(lam))}"


def _number(lam: float) -> str:
    text = f"{lam:.2f}"
    return text if float(text) == lam else repr(float(lam))


def grid_checkpoint_name(lams: Sequence[float]) -> str:
    """``lambda-0.30`` for one domain model; ``lambda-0.30_0.50`` (``models:`` order) for several."""
    return checkpoint_name(lams[0]) if len(lams) == 1 else "lambda-" + "_".join(_number(lam) for lam in lams)


def lambdas_of(name: str) -> tuple[float, ...] | None:
    """The lambdas of a ``lambda-<x>`` or ``lambda-<x>_<y>...`` name, else None."""
    match = _NAME.match(name)
    try:
        return tuple(float(part) for part in match.group(1).split("_")) if match else None
    except ValueError:
        return None


_GRID = re.compile(r"^(?P<name>[a-z_]+)(?:\[(?P<model>[^\]]+)\])?=(?P<spec>.+)$")


def parse_grid(spec: str) -> tuple[str, str | None, tuple[float, ...]]:
    """``lambda[MODEL]=0:1:0.5``, ``density=0.3,0.5`` -> (parameter, MODEL or None, values)."""
    match = _GRID.match(spec.strip())
    if not match:
        raise DogeRMConfigError(
            f"--grid {spec!r}: use PARAMETER[MODEL]=start:stop:step or PARAMETER[MODEL]=a,b,c, e.g. "
            "lambda[MetaMath-7B-V1.0]=0:1:0.25 or density=0.3,0.5 (MODEL: as `models:` names it, or its last path "
            "component; without it, the top-level `parameters:` value)"
        )
    try:
        return match.group("name"), match.group("model"), parse_lambdas(match.group("spec"))
    except DogeRMConfigError as error:
        raise DogeRMConfigError(f"--grid {spec!r}: {error}".replace("--lambdas ", "")) from None


def grid_point_name(point: dict[str, float], positions: dict[str, int]) -> str:
    """A ``dogerm_<kernel>`` grid point's folder and branch name: ``density-0.50_weight.2-0.70``.

    ``point`` maps ``parameter`` (top-level) or ``parameter[MODEL]`` to a value; ``.N`` is MODEL's 1-based position
    under ``models:`` (the manifest records the full keys).
    """
    parts = []
    for key, value in point.items():
        name, _, model = key.partition("[")
        parts.append(f"{name}{'.' + str(positions[model[:-1]]) if model else ''}-{_number(value)}")
    return "_".join(parts)


def lambda_of(name: str) -> float | None:
    """The lambda of a ``lambda-<x>`` name (``lambda-0.30``, ``lambda-0.125``, ``lambda-1e-05``), else None."""
    match = _NAME.match(name)
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def parse_lambdas(spec: str) -> tuple[float, ...]:
    """``0:1:0.05`` (start:stop:step, stop included) or a comma list ``0,0.1,0.25``."""
    try:
        if ":" in spec:
            start, stop, step = (float(part) for part in spec.split(":"))
            if step <= 0:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            values = tuple(round(start + i * step, 10) for i in range(count) if start + i * step <= stop + 1e-9)
        else:
            values = tuple(float(part) for part in spec.split(","))
    except ValueError:
        raise DogeRMConfigError(f"--lambdas {spec!r}: use start:stop:step (e.g. 0:1:0.05) or a list (0,0.1,0.3)")
    if not values or len(set(map(checkpoint_name, values))) != len(values):
        raise DogeRMConfigError(f"--lambdas {spec!r} gives no lambdas or repeats one")
    return values


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,254}\Z")
"""A name of one path component: checkpoint folders (``lambda-0.30``, ``density-0.50_weight.2-1.00``) and files."""


def inside(folder: Path, name: Any, source: str) -> Path:
    """``folder / name`` for a ``name`` read from ``source`` (a file this run did not write), refused with one line
    unless it is one plain path component that is not a link, so nothing outside ``folder`` is read or uploaded."""
    if not isinstance(name, str) or not _PLAIN.match(name):
        raise UnsafePathError(f"{source} names {name!r}, which is not a plain name inside {folder}: the file was "
                              "edited or not written by dogerm-sweep; rebuild it with dogerm-sweep (nothing was read)")
    path = Path(folder) / name
    if path.is_symlink() and not cache_link(path):
        raise UnsafePathError(f"{path} (named by {source}) is a link to {path.resolve()}: links are not followed out of "
                              f"a sweep; replace it with a copy of what it points to (cp -rL --remove-destination "
                              f"{path.resolve()} {path}), nothing was read")
    return path


def cache_link(path: Path) -> bool:
    """Whether ``path`` is a link the Hugging Face cache keeps a downloaded file as: inside
    ``models--org--name/snapshots/<commit>/`` (or ``datasets--``), pointing at a file of that repo's ``blobs/``."""
    head = Path(path).absolute().parts[:-2]  # ... / snapshots / <commit> / name
    if "snapshots" not in head:
        return False
    repo = Path(*head[: len(head) - 1 - head[::-1].index("snapshots")])
    if not repo.name.startswith(("models--", "datasets--")):
        return False
    target = Path(path).resolve()
    return target.parent == (repo / "blobs").resolve() and target.is_file()


class CheckpointRecord(BaseModel):
    """A finished checkpoint: its lambda, each file's digest (``xxh3-128:<hex>``) and its size and modification time
    when recorded (``stats``, absent from manifests of earlier versions).

    With several domain models, ``lambdas`` maps each domain model (``models:`` order) to its lambda, and ``lam``
    is their sum: the weight taken from the reward model.
    """

    lam: float | None = None
    """None for a ``dogerm_<kernel>`` grid, whose point is ``parameters``."""
    files: dict[str, str]
    lambdas: dict[str, float] = {}
    parameters: dict[str, float] = {}
    """A ``dogerm_<kernel>`` grid point: ``parameter`` or ``parameter[MODEL]`` -> value."""
    stats: dict[str, tuple[int, int]] = {}
    """File name -> (size in bytes, modification time in ns) when the checkpoint was recorded."""

    def point(self) -> Point:
        """Every swept value: ``{"lambda": 0.3}``, ``{"lambda[MODEL]": ...}`` per domain model, or the kernel point."""
        if self.parameters:
            return dict(self.parameters)
        if self.lambdas:
            return {f"lambda[{model}]": value for model, value in self.lambdas.items()}
        return {"lambda": float(self.lam)}


class SweepManifest(BaseModel):
    """``sweep.json``: what was merged, with which settings, and which checkpoints are complete."""

    reward_model: str
    domain_model: str
    inputs: dict[str, dict[str, Any]]
    config_sha256: str
    config: str
    lambdas: list[float]
    checkpoints: dict[str, CheckpointRecord] = {}
    domain_models: list[str] = []
    """Every domain model, in ``models:`` order (``domain_model`` is the first)."""
    grid: list[list[float]] = []
    """With several domain models: the lambda vectors asked for (``lambdas`` then holds their sums)."""
    points: list[dict[str, float]] = []
    """A ``dogerm_<kernel>`` sweep: the parameter points asked for (no lambdas)."""


def load_manifest(sweep_dir: Path) -> SweepManifest | None:
    """The sweep's manifest, or None where there is none; a damaged one, or one naming a checkpoint or file that is
    not a plain name inside the sweep, is an error naming the file."""
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        return None
    if path.is_symlink() and not cache_link(path):
        raise UnsafePathError(f"{path} is a link to {path.resolve()}, out of the sweep: replace it with a copy of "
                              f"that file (cp -L --remove-destination {path.resolve()} {path})")
    try:
        manifest = SweepManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DogeRMError(f"{path} is not a dogerm-sweep manifest ({error.__class__.__name__}); "
                          "rerun dogerm-sweep with --overwrite to rebuild it") from None
    for name, record in manifest.checkpoints.items():
        inside(Path(sweep_dir), name, str(path))
        for file in record.files:
            inside(Path(sweep_dir) / name, file, str(path))
    return manifest


def save_manifest(sweep_dir: Path, manifest: SweepManifest) -> None:
    """Write ``sweep.json`` atomically (callers hold the sweep's output lock)."""
    atomic_write(Path(sweep_dir) / MANIFEST, manifest.model_dump_json(indent=2))


def file_stats(folder: Path, files: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(size, modification time in ns) of each of ``files`` in ``folder``, as :attr:`CheckpointRecord.stats`."""
    return {name: (stat.st_size, stat.st_mtime_ns) for name in files for stat in [(Path(folder) / name).stat()]}


def checkpoint_change(folder: Path, record: CheckpointRecord) -> str | None:
    """How ``folder`` differs from its record (a recorded file missing, or changed), or None when it does not.

    Sizes and times are compared first; a file whose time changed (or whose record has none) is hashed again, so
    only such files are read. Files the record does not list are not part of the checkpoint (and never uploaded).
    """
    source = f"{Path(folder).parent / MANIFEST}"
    for name, digest in record.files.items():
        path = inside(folder, name, source)
        if not path.is_file():
            return f"{path} is missing, though {source} records it"
        stat, recorded = path.stat(), record.stats.get(name)
        if recorded is not None and recorded[0] != stat.st_size:
            return f"{path} changed since dogerm-sweep wrote it ({recorded[0]} bytes then, {stat.st_size} now)"
        if recorded != (stat.st_size, stat.st_mtime_ns) and fast_digest_file(path) != digest:
            return f"{path} changed since dogerm-sweep wrote it (its digest differs)"
    return None


def verify_checkpoint(folder: Path, record: CheckpointRecord) -> None:
    """Refuse, with one line naming the file, a checkpoint that differs from its record (:func:`checkpoint_change`)."""
    change = checkpoint_change(folder, record)
    if change is not None:
        raise CheckpointError(f"{change}: rerun dogerm-sweep on {Path(folder).parent} to merge it again")


def finished_checkpoints(sweep_dir: Path) -> list[tuple[float, Path, CheckpointRecord | None]]:
    """(lambda, folder, record) of every complete checkpoint, sorted by lambda.

    With a manifest, the checkpoints it records as complete (and that still exist), each verified against its
    record (:func:`verify_checkpoint`); without one, every ``lambda-<x>`` sub-folder that holds a ``config.json``
    (a sweep assembled by hand), with no record. Links are refused in both.
    """
    sweep_dir = Path(sweep_dir)
    manifest = load_manifest(sweep_dir)
    if manifest is not None:
        if manifest.points or manifest.grid:
            kind = "mergekit-kernel parameters" if manifest.points else "per-domain lambdas"
            raise DogeRMError(f"{sweep_dir} is a grid of {kind}, not a one-domain lambda sweep; evaluate its "
                              "checkpoints one by one (dogerm-eval sweep reads one-domain lambda sweeps)")
        found = _recorded(sweep_dir, manifest, lambda record: record.lam)
    else:
        found = [(lam, inside(sweep_dir, child.name, f"the listing of {sweep_dir}"), None)
                 for child in sweep_dir.iterdir()
                 if child.is_dir() and (lam := lambda_of(child.name)) is not None and (child / "config.json").is_file()]
    return sorted(found, key=lambda item: item[0])


def _recorded(sweep_dir: Path, manifest: SweepManifest, key: Any) -> list[tuple[Any, Path, CheckpointRecord]]:
    """(key(record), folder, record) of the manifest's checkpoints whose folders exist, each verified."""
    found = []
    for name, record in manifest.checkpoints.items():
        folder = inside(sweep_dir, name, str(sweep_dir / MANIFEST))
        if folder.is_dir():
            verify_checkpoint(folder, record)
            found.append((key(record), folder, record))
    return found


def finished_points(sweep_dir: Path) -> list[tuple[Point, Path]]:
    """Like :func:`finished_checkpoints`, for any sweep: (point, folder) with every swept value
    (:meth:`CheckpointRecord.point`; ``{"lambda": x}`` for a one-domain sweep), sorted by the point's values."""
    sweep_dir = Path(sweep_dir)
    manifest = load_manifest(sweep_dir)
    if manifest is None or not (manifest.points or manifest.grid):
        return [(lambda_point(lam), path) for lam, path, _ in finished_checkpoints(sweep_dir)]
    found = [(point, folder) for point, folder, _ in _recorded(sweep_dir, manifest, CheckpointRecord.point)]
    return sorted(found, key=lambda item: tuple(item[0].values()))


def is_parameter(key: str) -> bool:
    """A swept parameter's column (``lambda``, ``density``, ``weight[org/model]``), not a ``<benchmark>/<metric>``."""
    return "/" not in key.partition("[")[0]


def point_label(point: Mapping[str, float | None]) -> str:
    """``density=0.5, weight[m]=1`` (a parameter's ``[MODEL]`` shortened to its last path component)."""
    parts = []
    for key, value in point.items():
        name, _, model = key.partition("[")
        short = f"[{model[:-1].rstrip('/').rsplit('/', 1)[-1]}]" if model else ""
        parts.append(f"{name}{short}={value:g}" if value is not None else f"{name}{short}=?")
    return ", ".join(parts)


def unfinished_lambdas(sweep_dir: Path) -> list[float]:
    """Lambdas the manifest asks for that are not complete yet (none without a manifest)."""
    manifest = load_manifest(Path(sweep_dir))
    if manifest is None:
        return []
    if manifest.grid:
        done_points = {tuple(record.lambdas.values()) for record in manifest.checkpoints.values()}
        return sorted(math.fsum(point) for point in manifest.grid if tuple(point) not in done_points)
    done = {record.lam for record in manifest.checkpoints.values()}
    return sorted(set(manifest.lambdas) - done)


class MetricsTable(BaseModel):
    """``metrics.json``: per lambda (or grid point), the metrics named ``<benchmark>/<metric>`` (None where not
    measured)."""

    rows: list[dict[str, float | None]]
    """One mapping per lambda, with the key ``lambda`` first; for a grid, its parameters (``density``,
    ``weight[MODEL]``, ``lambda[MODEL]``: :func:`is_parameter`) first."""

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(k for k in row if not is_parameter(k)))
        return list(names)

    def parameter_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(k for k in row if is_parameter(k)))
        return list(names)

    def save(self, path: Path) -> None:
        atomic_write(path, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: Path) -> MetricsTable:
        try:
            table = cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DogeRMError(f"{path} is not a metrics table written by dogerm-eval sweep ({error.__class__.__name__})"
                              "; pass the metrics.json of a dogerm-eval sweep output") from None
        if any(not any(is_parameter(key) for key in row) for row in table.rows):
            raise DogeRMError(f"{path}: every row needs a `lambda` (or grid parameters); pass the metrics.json of a "
                              "dogerm-eval sweep output")
        return table
