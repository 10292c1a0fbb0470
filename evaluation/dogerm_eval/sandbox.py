"""Run untrusted generated Python programs (MBPP candidates) with layered, best-available isolation.

Every program runs in its own process, in a fresh temporary working directory, with a minimal environment
(``PATH``, ``LANG``, and ``HOME``/``TMPDIR`` pointing at that directory: no HF_TOKEN or other secrets), stdin
from /dev/null, stdout+stderr captured to a file of which the last ``output_bytes`` are kept, a wall-clock
timeout after which the whole process tree is killed, and rlimits on CPU time, address space, file size,
open files, core dumps and processes. On top of that, each layer below is used when this machine allows it
(probed once per process; :func:`active_defences` lists what is active):

* PID + network + mount namespaces (``unshare``): the program sees only its own processes in a fresh
  ``/proc`` (so not the parent's environment), has no network (only a down loopback), and all its
  descendants die with it;
* read-only file system: inside the mount namespace every mount is remounted read-only except the
  working directory, then all capabilities are dropped (``setpriv``), so even a root program cannot remount,
  delete files or move itself out of its cgroups;
* a per-program pids cgroup (``pids.max``: caps processes even for root, where RLIMIT_NPROC is ignored) and
  memory cgroup (total memory of the program and all its children);
* an unprivileged uid (``nobody``) when the interpreter is usable by it (RLIMIT_NPROC then applies too);
* an in-process audit hook refusing socket use (weak on its own: a child process or ctypes bypasses it).

How the program runs. The harness (``sandbox_files/harness.py``) runs it by the rules of the reference harnesses,
openai/human-eval's ``check_correctness`` and bigcode-evaluation-harness's copy of it: the program text executed with
a fresh globals dict (no ``__main__``) after their ``reliability_guard`` (``os.remove``, ``os.getcwd``, ``os.chdir``,
``subprocess.Popen``, ``exit`` and more disabled), output swallowed, stdin unreadable, and a ``TimeoutException``
raised in the program after ``SandboxLimits.timeout_s`` (their default: 3.0 s); the process tree is killed one
second later (their grace before killing the process). Their guard is no security boundary (``posix.fork`` and
``ctypes`` get around it): the layers above are.

Verdict. A program passes only if the trusted harness reaches the end of the program and writes a 128-bit random
nonce followed by ``passed`` to a dedicated pipe (``failed`` or ``timeout`` when the program raised or ran out of
time). The nonce is sent through another pipe that the harness reads and closes before the program starts, so it
is in no file, argv, environment variable or output the program could read; stdout and the exit status are never
trusted (printing a marker or ``sys.exit(0)`` before the asserts fails: the harness catches ``SystemExit``). A
program that ends the interpreter itself (``os._exit``) leaves no verdict and counts as a timeout, as in the
references. The nonce lives only in a local variable of the harness's function, not in module globals the program
could import. A program that deliberately inspects the interpreter's frames or memory could recover it, but such a
program could equally defeat the asserts themselves (e.g. return an object whose ``__eq__`` is always true): the
sandbox contains damage, it does not prove correctness against an adversarial program.

Not covered: disk quotas beyond the per-file size limit when the file system is writable (no read-only
layer), and CPU/memory isolation from other users beyond these limits. Use a container for stronger needs.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

NOBODY = "nobody"
CGROUP_ROOT = Path("/sys/fs/cgroup")
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The reference harnesses' time limit per program (human-eval's ``evaluate_functional_correctness`` and
#: bigcode-evaluation-harness's ``compute_code_eval`` default), and how long after it they kill the process.
REFERENCE_TIMEOUT_S = 3.0
KILL_GRACE_S = 1.0
VERDICTS = (b"passed", b"failed", b"timeout")

_FILES = importlib.resources.files("dogerm_eval") / "sandbox_files"
#: Trusted Python run by the sandboxed interpreter before the program (``sandbox_files/harness.py``).
HARNESS = (_FILES / "harness.py").read_text(encoding="utf-8")
#: Shell run first inside the namespaces: joins the cgroups, makes mounts read-only (``sandbox_files/setup.sh``).
SETUP = (_FILES / "setup.sh").read_text(encoding="utf-8")


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not a failure of the program under test)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one program run: ``timeout_s`` is the program's time limit (raised in the program, as
    the references do), the rest are the sandbox's outer bounds."""

    timeout_s: float = REFERENCE_TIMEOUT_S
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 16 * 1024**2
    max_processes: int = 32
    open_files: int = 64
    output_bytes: int = 64 * 1024

    @property
    def wall_s(self) -> float:
        """Wall-clock seconds after which the whole process tree is killed."""
        return self.timeout_s + KILL_GRACE_S

    @property
    def cpu_s(self) -> int:
        """RLIMIT_CPU: above what a single-threaded program can use before the wall-clock kill."""
        return math.ceil(self.wall_s) + 1


@dataclass(frozen=True)
class Layers:
    """Which optional isolation layers to use (all probed as available when built by :func:`probe_layers`)."""

    namespaces: bool = False
    user_namespace: bool = False
    readonly_fs: bool = False
    pids_cgroup: bool = False
    memory_cgroup: bool = False
    drop_uid: bool = False


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program: ``passed`` only when the harness's verdict says so (see module docstring)."""

    passed: bool
    status: Literal["passed", "failed", "timeout", "error"]
    returncode: int | None
    output: str
    duration_s: float


def _is_root() -> bool:
    return os.geteuid() == 0


def _own_cgroup(controller: str) -> Path | None:
    """The folder of this process's cgroup for `controller` (cgroup v1 hierarchy or v2 unified), if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            base = CGROUP_ROOT / controller
            if not base.is_dir():
                base = CGROUP_ROOT / controllers
            return base / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):
            for base in (CGROUP_ROOT / "unified", CGROUP_ROOT):
                if (base / "cgroup.controllers").is_file() and controller in (
                    (base / "cgroup.controllers").read_text().split()
                ):
                    return base / line[3:].lstrip("/")
    return None


def _limit_files(controller: str, limit: int) -> dict[str, int]:
    """Limit files (v1 and v2 names) and their values; memory+swap totals equal the memory limit (no swap)."""
    if controller == "pids":
        return {"pids.max": limit}
    return {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit, "memory.max": limit,
            "memory.swap.max": 0}


class _Cgroup:
    """A child cgroup of this process's own cgroup, created per program and removed afterwards."""

    def __init__(self, controller: str, limit: int) -> None:
        parent = _own_cgroup(controller)
        if parent is None:
            raise SandboxError(f"no {controller} cgroup controller")
        self.path = parent / f"dogerm-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            self.path.mkdir()
        except OSError as exc:
            raise SandboxError(f"cannot create {self.path}: {exc}") from exc
        written = False
        for name, value in _limit_files(controller, limit).items():
            target = self.path / name
            if target.exists():
                try:
                    target.write_text(str(value))
                    written = True
                except OSError:
                    if name in ("pids.max", "memory.limit_in_bytes", "memory.max"):
                        self.remove()
                        raise SandboxError(f"cannot set {target}") from None
        if not written:
            self.remove()
            raise SandboxError(f"{self.path} has no {controller} limit file")

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup (a v2 `cgroup.kill` when present)."""
        if (self.path / "cgroup.kill").exists():
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for _ in range(100):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup folder (retrying while the kernel reaps processes)."""
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def _nobody_ids() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(NOBODY)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _command(layers: Layers, workdir: Path, cgroups: Sequence[_Cgroup], python: str, config: str) -> list[str]:
    prefix: list[str] = []
    if layers.namespaces:
        prefix = ["unshare", "--pid", "--net", "--mount", "--mount-proc", "--fork", "--kill-child"]
        if layers.user_namespace:
            prefix[1:1] = ["--user", "--map-root-user"]
    priv: list[str] = []
    if layers.readonly_fs or layers.drop_uid:
        priv = ["setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all"]
        if layers.drop_uid:
            ids = _nobody_ids()
            assert ids is not None
            priv += [f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"]
        priv.append("--")
    setup = ["sh", "-c", SETUP, "sh", str(workdir), "1" if layers.readonly_fs else "0"]
    setup += [str(c.path) for c in cgroups] + ["--"]
    return prefix + setup + priv + [python, "-I", "-B", "-c", HARNESS, config]


def _rlimits(limits: SandboxLimits) -> list[tuple[str, int, int]]:
    memory = limits.memory_bytes
    return [
        ("RLIMIT_CPU", limits.cpu_s, limits.cpu_s + 1),
        ("RLIMIT_AS", memory, memory),
        ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
        ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NPROC", limits.max_processes, limits.max_processes),
    ]


def _tail(path: Path, size: int) -> str:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - size))
        return handle.read().decode("utf-8", errors="replace")


def _kill_tree(process: subprocess.Popen[bytes], cgroups: Sequence[_Cgroup]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for cgroup in cgroups:
        cgroup.kill_all()
    process.wait()


def _verdict(marker: bytes, nonce: bytes) -> Literal["passed", "failed", "timeout"]:
    """The harness's verdict after the nonce; none (the interpreter ended without one) counts as a timeout."""
    verdict = marker[len(nonce):]
    if secrets.compare_digest(marker[:len(nonce)], nonce) and verdict in VERDICTS:
        return verdict.decode()  # type: ignore[return-value]
    return "timeout"


def execute(program: str, limits: SandboxLimits, layers: Layers | None = None, python: str | None = None) -> ExecResult:
    """Run `program` (source text) once in the sandbox; any crash, limit hit or timeout is a failed result."""
    layers = probe_layers() if layers is None else layers
    python = python or sys.executable
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="dogerm-sandbox-"))
    cgroups: list[_Cgroup] = []
    fds: list[int] = []
    try:
        workdir = scratch / "work"
        workdir.mkdir()
        (workdir / "program.py").write_text(program, encoding="utf-8")
        if layers.drop_uid:
            ids = _nobody_ids()
            assert ids is not None
            scratch.chmod(0o711)
            os.chown(workdir, *ids)
            os.chown(workdir / "program.py", *ids)
        if layers.pids_cgroup:
            cgroups.append(_Cgroup("pids", limits.max_processes))
        if layers.memory_cgroup:
            cgroups.append(_Cgroup("memory", limits.memory_bytes))
        nonce_read, nonce_write = os.pipe()
        result_read, result_write = os.pipe()
        fds += [nonce_read, nonce_write, result_read, result_write]
        nonce = secrets.token_hex(16).encode()
        os.write(nonce_write, nonce)
        config = json.dumps({"rlimits": _rlimits(limits), "nonce_fd": nonce_read, "result_fd": result_write,
                             "timeout_s": limits.timeout_s})
        env = {"PATH": MINIMAL_PATH, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        output_path = scratch / "output.txt"
        with output_path.open("wb") as output:
            process = subprocess.Popen(
                _command(layers, workdir, cgroups, python, config),
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                pass_fds=(nonce_read, result_write), start_new_session=True,
            )
        for fd in (nonce_read, nonce_write, result_write):
            os.close(fd)
            fds.remove(fd)
        try:
            returncode: int | None = process.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            returncode = None
        _kill_tree(process, cgroups)
        os.set_blocking(result_read, False)
        try:
            marker = os.read(result_read, 64)
        except BlockingIOError:
            marker = b""
        status = _verdict(marker, nonce)  # a verdict given before the kill stands, as in the references
        return ExecResult(status == "passed", status, returncode, _tail(output_path, limits.output_bytes),
                          time.monotonic() - started)
    except (OSError, SandboxError) as exc:
        return ExecResult(False, "error", None, f"sandbox error: {exc}", time.monotonic() - started)
    finally:
        for fd in fds:
            os.close(fd)
        for cgroup in cgroups:
            cgroup.remove()
        shutil.rmtree(scratch, ignore_errors=True)


def execute_many(
    programs: Sequence[str],
    limits: SandboxLimits,
    workers: int = 1,
    layers: Layers | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ExecResult]:
    """Run each program in its own sandbox with `workers` in parallel; results in input order."""
    layers = probe_layers() if layers is None else layers

    def one(program: str) -> ExecResult:
        result = execute(program, limits, layers)
        if progress is not None:
            progress(1)
        return result

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, programs))


_PROBE_PROGRAM = "import collections, itertools, math, re\nassert math.gcd(12, 18) == 6\n"
_PROBE_LIMITS = SandboxLimits(timeout_s=20.0)


def _works(layers: Layers) -> bool:
    return execute(_PROBE_PROGRAM, _PROBE_LIMITS, layers).passed


@functools.cache
def probe_layers() -> Layers:
    """The strongest combination of optional layers that runs a trivial program correctly on this machine."""
    if sys.platform != "linux":
        return Layers()
    layers = Layers()
    if shutil.which("unshare"):
        candidate = replace(layers, namespaces=True, user_namespace=not _is_root())
        if _works(candidate):
            layers = candidate
    if layers.namespaces and not layers.user_namespace and shutil.which("setpriv"):
        candidate = replace(layers, readonly_fs=True)
        if _works(candidate):
            layers = candidate
    for flag, controller, limit in (("pids_cgroup", "pids", 8), ("memory_cgroup", "memory", 2**30)):
        try:
            _Cgroup(controller, limit).remove()
        except SandboxError:
            continue
        candidate = replace(layers, **{flag: True})
        if _works(candidate):
            layers = candidate
    if _is_root() and _nobody_ids() is not None and shutil.which("setpriv") and not layers.user_namespace:
        candidate = replace(layers, drop_uid=True)
        if _works(candidate):
            layers = candidate
    return layers


def describe(layers: Layers, limits: SandboxLimits) -> list[str]:
    """Human-readable list of the defences `layers` + `limits` give."""
    uid = "nobody" if layers.drop_uid else pwd.getpwuid(os.geteuid()).pw_name
    defences = [
        "separate process per program, fresh temporary working directory",
        "minimal environment (HOME/TMPDIR = working dir; tokens such as HF_TOKEN not passed), stdin closed",
        f"time limit {limits.timeout_s:g} s per program (as the reference harnesses), whole process tree killed "
        f"after {limits.wall_s:g} s",
        "run as the reference harnesses run it: fresh globals, their reliability guard, output swallowed",
        f"rlimits: CPU {limits.cpu_s} s, address space {limits.memory_bytes} B, file size {limits.file_bytes} B, "
        f"{limits.open_files} open files, no core dumps",
        f"output captured, last {limits.output_bytes} B kept",
        "verdict: random nonce on a private pipe, SystemExit caught",
        "socket audit hook (in-process only)",
    ]
    if layers.drop_uid or not _is_root():
        defences.append(f"RLIMIT_NPROC {limits.max_processes} (runs as {uid})")
    if layers.drop_uid:
        defences.append("unprivileged uid nobody")
    if layers.namespaces:
        defences.append("PID namespace (private /proc; descendants die with the program)")
        defences.append("network namespace (no network)")
        if layers.user_namespace:
            defences.append("user namespace")
    if layers.readonly_fs:
        defences.append("read-only file system except the working dir; all capabilities dropped")
    if layers.pids_cgroup:
        defences.append(f"pids cgroup (pids.max {limits.max_processes})")
    if layers.memory_cgroup:
        defences.append(f"memory cgroup ({limits.memory_bytes} B)")
    return defences


def active_defences(limits: SandboxLimits | None = None) -> list[str]:
    """The defences the sandbox uses on this machine (probes once, then cached)."""
    return describe(probe_layers(), limits or SandboxLimits())
