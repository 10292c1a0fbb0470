"""Check the README's demo figures against what `dogerm-demo` prints here.

Each fenced block that follows a line ``<!-- dogerm-demo ARGS -->`` in README.md is what ``dogerm-demo ARGS`` prints
(its last lines); this runs each such command in a fresh output folder and a fresh world cache, and fails with a diff
when a line of the block is not printed, in the block's order.

    python benchmarks/demo_readme.py               # every block (the demo-size ones take several minutes each)
    python benchmarks/demo_readme.py --size test   # the blocks of `--size test` commands only (CI runs these)
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MARK = re.compile(r"^<!-- dogerm-demo (?P<args>.*) -->$")


def blocks(readme: Path = README) -> list[tuple[list[str], list[str]]]:
    """(arguments, expected lines) of every marked block in ``readme``."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        mark = MARK.match(line)
        if mark is None:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"README line {i + 1}: a dogerm-demo mark must be followed by a fenced block")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        found.append((shlex.split(mark["args"]), lines[i + 2 : end]))
    return found


def size_of(args: list[str]) -> str:
    """The world size a command line asks for (``demo`` unless ``--size`` says otherwise)."""
    return args[args.index("--size") + 1] if "--size" in args else "demo"


def printed(args: list[str], workdir: Path) -> list[str]:
    """What ``dogerm-demo ARGS`` prints on stdout, run with a fresh output folder and world cache under
    ``workdir``."""
    command = [str(Path(sys.executable).with_name("dogerm-demo")), *args, "--output-dir", str(workdir / "out"),
               "--cache-dir", str(workdir / "cache")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.splitlines()


def disagreement(expected: list[str], got: list[str]) -> str | None:
    """None when every expected line is printed, in order; else a diff."""
    position = 0
    for line in expected:
        try:
            position = got.index(line, position) + 1
        except ValueError:
            return "\n".join(difflib.unified_diff(expected, got, "README", "printed", lineterm=""))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["demo", "test"], help="only the blocks of this world size")
    options = parser.parse_args()
    failed = 0
    for args, expected in blocks():
        if options.size is not None and size_of(args) != options.size:
            continue
        with tempfile.TemporaryDirectory() as workdir:
            diff = disagreement(expected, printed(args, Path(workdir)))
        print(f"dogerm-demo {shlex.join(args)}: " + ("as in the README" if diff is None else "DIFFERS"))
        if diff is not None:
            print(diff)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
