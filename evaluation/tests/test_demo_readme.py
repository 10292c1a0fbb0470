"""The README's demo figures are what `dogerm-demo` prints: its `--size test` blocks are run here (fresh process,
fresh cache, as a user runs them); the demo-size blocks are checked by `python benchmarks/demo_readme.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import demo_readme

TEST_BLOCKS = [(args, lines) for args, lines in demo_readme.blocks() if demo_readme.size_of(args) == "test"]


def test_the_readme_quotes_the_demo_at_both_sizes() -> None:
    sizes = [demo_readme.size_of(args) for args, _ in demo_readme.blocks()]
    assert "test" in sizes and sizes.count("demo") >= 1
    assert all(lines for _, lines in demo_readme.blocks())


@pytest.mark.parametrize(("args", "expected"), TEST_BLOCKS, ids=[" ".join(a) for a, _ in TEST_BLOCKS])
def test_the_test_size_demo_prints_the_readme_lines(args: list[str], expected: list[str], tmp_path: Path) -> None:
    diff = demo_readme.disagreement(expected, demo_readme.printed(args, tmp_path))
    assert diff is None, diff


def test_a_changed_digit_or_order_is_a_disagreement() -> None:
    printed = ["seed 0: weights sha256 7bdf84eedeeb", "a table", "seed 0: best lambda 0.4 (+14.0)"]
    assert demo_readme.disagreement([printed[0], printed[2]], printed) is None
    assert demo_readme.disagreement(["seed 0: best lambda 0.4 (+14.1)"], printed) is not None
    assert demo_readme.disagreement([printed[2], printed[0]], printed) is not None
