"""The lowest versions both pyprojects allow, as a pip constraints file: ``python -m tests.smoke.constraints``.

Each requirement with a lower bound (``>=``, ``==``, ``~=``) becomes ``name==bound``: the build backend, the
dependencies and every extra of ``pyproject.toml`` and ``evaluation/pyproject.toml``. A package both name must
have one floor (the lower one would never be installed, so never tested). Requirements without a bound (the local
``dogerm-mergekit``) are left to pip. ``pip install -c FILE --build-constraint FILE`` then installs the lowest direct
versions, the set ``make test-lowest`` smoke-tests (torch held at the CPU build the Makefile installs:
:func:`held`); ``python -m tests.smoke.constraints --check`` fails unless each
dependency installed is at its floor (so a constraint pip did not apply cannot pass unseen).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = (ROOT / "pyproject.toml", ROOT / "evaluation" / "pyproject.toml")
MAKEFILE = ROOT / "Makefile"
LOWER = {">=", "==", "~="}


class FloorError(SystemExit):
    """Floors that disagree, or an environment off its floors."""


def requirements(pyproject: Path, build: bool = True) -> list[Requirement]:
    """Every requirement a pyproject declares: build-system (unless ``build`` is false), dependencies and all
    optional dependencies."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    lines = [*(data["build-system"]["requires"] if build else []), *project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def floors(pyprojects: tuple[Path, ...] = PYPROJECTS, build: bool = True) -> dict[str, str]:
    """Each package's floor, by canonical name (the build backend's too unless ``build`` is false)."""
    out: dict[str, str] = {}
    for pyproject in pyprojects:
        for req in requirements(pyproject, build):
            bounds = [spec.version for spec in req.specifier if spec.operator in LOWER]
            if not bounds:
                continue
            name = canonicalize_name(req.name)
            if len(bounds) > 1:
                raise FloorError(f"Error: {pyproject}: {req} has {len(bounds)} lower bounds; keep one")
            if out.setdefault(name, bounds[0]) != bounds[0]:
                raise FloorError(f"Error: {pyproject}: {req} differs from the floor {out[name]} the other pyproject "
                                 f"gives {name}; give both the same floor")
    return out


def held(makefile: Path = MAKEFILE) -> dict[str, str]:
    """Packages held at the version the Makefile installs instead of their floor: torch (``TORCH ?= torch==X``),
    whose CPU build lies on disk while any other release is a multi-GB CUDA download."""
    match = re.search(r"^TORCH \?= torch==(\S+)$", makefile.read_text(), re.MULTILINE)
    if match is None:
        raise FloorError(f"Error: {makefile} names no `TORCH ?= torch==VERSION`")
    return {"torch": match.group(1)}


def constraints(pyprojects: tuple[Path, ...] = PYPROJECTS, build: bool = True) -> dict[str, str]:
    """What ``make test-lowest`` installs: every floor, torch held at the Makefile's build."""
    return floors(pyprojects, build) | held()


def off_floor(wanted: dict[str, str], installed: Callable[[str], str] = version) -> list[str]:
    """``name installed (floor F)`` for each package not installed at its floor (a local label such as ``+cpu`` aside)."""
    out = []
    for name, floor in sorted(wanted.items()):
        try:
            found = installed(name)
        except PackageNotFoundError:
            found = "missing"
        if found == "missing" or Version(Version(found).public) != Version(floor):
            out.append(f"{name} {found} (floor {floor})")
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the constraints file (``name==floor`` lines, sorted), or with ``--check`` verify the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail unless every dependency is at its floor")
    if parser.parse_args(argv).check:
        if wrong := off_floor(constraints(build=False)):
            raise FloorError(f"Error: not at the floor: {', '.join(wrong)}; install with -c and the file this module prints")
        print(f"all {len(constraints(build=False))} dependencies at their floors (torch at {held()['torch']})")
        return
    sys.stdout.write("".join(f"{name}=={floor}\n" for name, floor in sorted(constraints().items())))


if __name__ == "__main__":
    main()
