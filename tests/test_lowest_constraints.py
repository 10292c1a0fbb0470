"""tests/smoke/constraints.py: the constraints file of the lowest-versions CI step holds every floor of both
pyprojects, and only floors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.smoke.constraints import PYPROJECTS, ROOT, FloorError, constraints, floors, main, off_floor

LOCAL = {"dogerm-mergekit"}  # installed from the checkout: no floor


def _quoted_requirements(text: str) -> list[str]:
    """The quoted requirement strings of a pyproject's build-system, dependencies and extras, read as text."""
    sections = dict(re.findall(r"^\[([\w.-]+)\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S))
    blocks = re.findall(r"^requires = \[(.*?)\]", sections["build-system"], re.M | re.S)
    blocks += re.findall(r"^dependencies = \[(.*?)\]", sections["project"], re.M | re.S)
    blocks += re.findall(r"^[\w-]+ = \[(.*?)\]", sections.get("project.optional-dependencies", ""), re.M | re.S)
    return [item for block in blocks for item in re.findall(r'"([^"]+)"', block)]


def test_every_requirement_of_both_pyprojects_has_its_floor_in_the_file() -> None:
    expected = {}
    for path in PYPROJECTS:
        for line in _quoted_requirements(path.read_text()):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*(?:(>=|==|~=)\s*([0-9][0-9.]*))?.*", line)
            name = match.group(1).lower().replace("_", "-")
            assert match.group(3) or name in LOCAL, f"{path.name}: {line} has no floor"
            if match.group(3):
                expected.setdefault(name, set()).add(match.group(3))
    assert all(len(versions) == 1 for versions in expected.values()), expected  # one floor per package
    assert {name: versions.pop() for name, versions in expected.items()} == floors()
    assert {"torch", "transformers", "huggingface-hub", "datasets", "accelerate", "optuna", "trl", "peft",
            "hatchling", "pytest"} <= set(floors())  # both files, build-system and extras were read

    output = subprocess.run([sys.executable, "-m", "tests.smoke.constraints"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    lines = output.splitlines()
    assert len(lines) == len(floors())
    held = {"torch": re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)}
    assert floors()["torch"] == "2.4" and held["torch"] != "2.4"  # the declared floor; CI holds the CPU build
    assert {str(Requirement(line)) for line in lines} == {f"{name}=={version}"
                                                          for name, version in (floors() | held).items()}


def _pyproject(path: Path, dependencies: list[str], extras: str = "") -> Path:
    path.write_text(f'[build-system]\nrequires = ["hatchling>=1.24"]\n[project]\nname = "x"\n'
                    f"dependencies = {json.dumps(dependencies)}\n{extras}")
    return path


def test_floors_of_bounds_extras_and_names(tmp_path: Path) -> None:
    first = _pyproject(tmp_path / "a.toml", ["Foo_Bar>=1.2,<2", "pinned==0.1.5", "compat~=3.4", "free", "x<9"],
                       '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    second = _pyproject(tmp_path / "b.toml", ["foo-bar>=1.2", "other>=0.3; python_version >= '3.11'"])
    assert floors((first, second)) == {"hatchling": "1.24", "foo-bar": "1.2", "pinned": "0.1.5", "compat": "3.4",
                                       "pytest": "8", "other": "0.3"}


@pytest.mark.parametrize("dependencies, message", [
    (["foo>=1.2", "foo>=1.3"], "differs from the floor 1.2"),
    (["foo>=1.2,==1.3"], "has 2 lower bounds"),
])
def test_two_floors_of_one_package_are_an_error(tmp_path: Path, dependencies: list[str], message: str) -> None:
    with pytest.raises(FloorError, match=message):
        floors((_pyproject(tmp_path / "a.toml", dependencies),))


def test_the_two_pyprojects_must_agree(tmp_path: Path) -> None:
    first = _pyproject(tmp_path / "a.toml", ["foo>=1.2"])
    second = _pyproject(tmp_path / "b.toml", ["foo>=1.0"])
    with pytest.raises(FloorError, match=r"b.toml: foo>=1.0 differs from the floor 1.2 .* give both the same floor"):
        floors((first, second))


def test_the_check_names_each_package_off_its_floor() -> None:
    installed = {"torch": "2.13.0+cpu", "trl": "1.16.0", "numpy": "2.0.0"}

    def lookup(name: str) -> str:
        if name not in installed:
            raise PackageNotFoundError(name)
        return installed[name]

    assert off_floor({"torch": "2.13", "trl": "1.16", "numpy": "1.26", "pandas": "2.1.1"}, lookup) == [
        "numpy 2.0.0 (floor 1.26)", "pandas missing (floor 2.1.1)"]
    assert off_floor({"torch": "2.13", "trl": "1.16"}, lookup) == []
    assert "hatchling" not in floors(build=False) and "hatchling" in floors()  # the backend is not installed


def test_the_check_fails_in_an_environment_off_the_floors() -> None:
    wrong = off_floor(constraints(build=False))
    if wrong:  # this environment is the newest one (`make test`)
        with pytest.raises(FloorError, match="Error: not at the floor: " + re.escape(wrong[0])):
            main(["--check"])
    else:  # the lowest one (`make test-lowest`)
        main(["--check"])
