"""Synthetic search targets for the study tests: known optima, evaluations logged across processes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dogerm_eval.space import SearchSpace, parse_space

OPTIMUM = {"lambda[org/a]": 0.3, "lambda[org/b]": 0.5}


def two_domain_space(specs: tuple[str, ...] = ()) -> SearchSpace:
    """A dogerm space of two domain models that are never read (the targets below stand in for scoring)."""
    source = yaml.safe_dump({"merge_method": "dogerm", "base_model": "org/rm",
                             "models": [{"model": m, "parameters": {"lambda": 0.0}} for m in ("org/a", "org/b")]})
    return parse_space(source, "test.yml", specs)


def bump(point: dict[str, float] | None) -> dict[str, float]:
    """Two 'domain accuracies' peaking at OPTIMUM and a 'general' one falling with the lambdas' sum."""
    x = (point or {}).get("lambda[org/a]", 0.0)
    y = (point or {}).get("lambda[org/b]", 0.0)
    return {"t/a": 1 - 2 * (x - OPTIMUM["lambda[org/a]"]) ** 2, "t/b": 1 - 2 * (y - OPTIMUM["lambda[org/b]"]) ** 2,
            "t/general": 0.9 - 0.1 * (x + y) ** 2}


@dataclass(frozen=True)
class LoggedBump:
    """A picklable ``make_evaluate``: each evaluation appends its point and process to ``log`` (JSON lines) and
    takes ``delay`` seconds. With ``workers`` > 1, a trial's evaluation first waits (up to a minute) until that many
    processes have built their evaluator, so every worker is known to take part."""

    log: Path
    delay: float = 0.0
    workers: int = 1

    def __call__(self):
        _append(self.log, {"hello": os.getpid()})

        def evaluate(point):
            _append(self.log, {"start": point, "pid": os.getpid()})
            deadline = time.time() + 60
            while point is not None and len(pids(self.log)) < self.workers and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(self.delay)
            _append(self.log, {"done": point, "pid": os.getpid()})
            return bump(point), {}

        return evaluate


def pids(path: Path) -> set[int]:
    """The processes that built an evaluator."""
    return {r["hello"] for r in map(json.loads, path.read_text().splitlines()) if "hello" in r}


def _append(path: Path, record: dict) -> None:
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, (json.dumps(record, sort_keys=True) + "\n").encode())
    finally:
        os.close(handle)


def logged(path: Path, kind: str) -> list:
    """The points logged as ``kind`` ("start" or "done")."""
    if not path.exists():
        return []
    return [r[kind] for r in map(json.loads, path.read_text().splitlines()) if kind in r]
