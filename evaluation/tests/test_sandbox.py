"""The code sandbox: correct programs pass, wrong and hostile ones fail, contained, and the run goes on.

Hostile programs run in a child process placed in a pids + memory cgroup made by the test (an extra cap on top
of the sandbox's own); the test fails loudly when that cap cannot be made rather than run them unprotected.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dogerm_eval
from dogerm_eval.sandbox import (
    HARNESS,
    SETUP,
    Layers,
    SandboxLimits,
    _own_cgroup,
    _verdict,
    active_defences,
    execute,
    probe_layers,
)

LIMITS = SandboxLimits(timeout_s=1.0, memory_bytes=512 * 1024**2, max_processes=16)
OUTER_PIDS = 96
OUTER_MEMORY = 3 * 1024**3

RUNNER = """
import json, os, sys
for cgroup in sys.argv[1:]:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as handle:
        handle.write(str(os.getpid()))
from dogerm_eval.sandbox import SandboxLimits, execute_many
limits = SandboxLimits(**json.loads(os.environ["SANDBOX_LIMITS"]))
programs = json.loads(sys.stdin.read())
results = execute_many(programs, limits, workers=2)
print(json.dumps([{"status": r.status, "passed": r.passed, "output": r.output, "duration_s": r.duration_s}
                  for r in results]))
"""


def _make_cgroup(controller: str, limits: dict[str, int]) -> Path:
    parent = _own_cgroup(controller)
    if parent is None:
        pytest.fail(f"no {controller} cgroup: refusing to run hostile programs without an outer cap")
    path = parent / f"dogerm-sandbox-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
        for name, value in limits.items():
            if (path / name).exists():
                (path / name).write_text(str(value))
    except OSError as exc:
        pytest.fail(f"cannot create the outer {controller} cap {path}: {exc}")
    if not any((path / name).exists() for name in limits):
        pytest.fail(f"{path} has none of {list(limits)}")
    return path


def _remove_cgroup(path: Path) -> None:
    for pid in (path / "cgroup.procs").read_text().split():
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass
    for _ in range(200):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)


@pytest.fixture
def outer_cap() -> Iterator[list[Path]]:
    """A pids cgroup (pids.max 96) and a memory cgroup (3 GiB, no swap) for the runner process."""
    pids = _make_cgroup("pids", {"pids.max": OUTER_PIDS})
    memory = _make_cgroup(
        "memory",
        {"memory.limit_in_bytes": OUTER_MEMORY, "memory.memsw.limit_in_bytes": OUTER_MEMORY,
         "memory.max": OUTER_MEMORY, "memory.swap.max": 0},
    )
    try:
        yield [pids, memory]
    finally:
        _remove_cgroup(pids)
        _remove_cgroup(memory)


def _run_capped(programs: list[str], cgroups: list[Path], env: dict[str, str]) -> list[dict]:
    package_root = str(Path(dogerm_eval.__file__).resolve().parent.parent)
    full_env = {**os.environ, **env, "PYTHONPATH": package_root,
                "SANDBOX_LIMITS": json.dumps(LIMITS.__dict__)}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *map(str, cgroups)], input=json.dumps(programs), capture_output=True,
        text=True, env=full_env, timeout=90, check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


CORRECT = "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
FILES = importlib.resources.files("dogerm_eval") / "sandbox_files"


def _run_harness(program: str, workdir: Path) -> tuple[int, bytes, str]:
    """Run sandbox_files/harness.py itself on `program`: exit status, what reached the result pipe, output."""
    (workdir / "program.py").write_text(program)
    nonce_read, nonce_write = os.pipe()
    result_read, result_write = os.pipe()
    os.write(nonce_write, b"n" * 32)
    os.close(nonce_write)
    config = json.dumps({"rlimits": [["RLIMIT_CORE", 0, 0]], "nonce_fd": nonce_read, "result_fd": result_write,
                         "timeout_s": 5.0})
    with importlib.resources.as_file(FILES / "harness.py") as harness:
        done = subprocess.run([sys.executable, "-I", "-B", str(harness), config], cwd=workdir, capture_output=True,
                              text=True, pass_fds=(nonce_read, result_write), timeout=30, check=False)
    os.close(nonce_read)
    os.close(result_write)
    with os.fdopen(result_read, "rb") as result:
        return done.returncode, result.read(), done.stdout + done.stderr


def test_harness_file_protocol(tmp_path: Path) -> None:
    assert HARNESS == (FILES / "harness.py").read_text(encoding="utf-8")
    code, marker, output = _run_harness(CORRECT + "print('hello')\n", tmp_path)
    assert (code, marker, output) == (0, b"n" * 32 + b"passed", "")  # output swallowed, as the references do
    assert not (tmp_path / "program.py").exists()  # the program starts in an empty directory
    for failing, message in [("assert False\n", "AssertionError"), ("import sys\nsys.exit(0)\n", "SystemExit"),
                             ("import socket\nsocket.socket()\n", "network access is disabled"),
                             ("import time\ntime.sleep(10)\n", "")]:
        code, marker, output = _run_harness(failing, tmp_path)
        verdict = b"timeout" if "sleep" in failing else b"failed"
        assert (code, marker) == (0, b"n" * 32 + verdict) and message in output, (failing, output)
    assert _run_harness("import os\nos._exit(0)\n", tmp_path)[:2] == (0, b"")  # no verdict
    read_every_fd = ("import os\nfor fd in range(3, 64):\n    try:\n"
                     "        os.write(1, repr(os.read(fd, 64)).encode())\n    except OSError:\n        pass\n")
    code, marker, output = _run_harness(read_every_fd, tmp_path)  # the nonce pipe is closed before the program
    assert (code, marker) == (0, b"n" * 32 + b"passed") and "nnnn" not in output


@given(st.binary(max_size=64), st.sampled_from([b"passed", b"failed", b"timeout"]))
def test_only_the_nonce_followed_by_a_verdict_is_a_verdict(written: bytes, verdict: bytes) -> None:
    nonce = b"0123456789abcdef" * 2
    assert _verdict(nonce + verdict, nonce) == verdict.decode()
    # anything else the pipe may hold (a guess, bytes before the nonce, a cut or unknown verdict) is no verdict
    assert _verdict(written, nonce) == "timeout" or written in (nonce + b"passed", nonce + b"failed",
                                                                   nonce + b"timeout")
    assert _verdict(written + nonce + verdict, nonce) == ("timeout" if written else verdict.decode())
    assert _verdict(nonce + verdict[:-1], nonce) == _verdict(nonce + verdict + b"!", nonce) == "timeout"


def test_harness_imports_without_running_and_its_hook_refuses_sockets() -> None:
    with importlib.resources.as_file(FILES / "harness.py") as path:
        spec = importlib.util.spec_from_file_location("sandbox_harness", path)
        assert spec is not None and spec.loader is not None
        harness = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(harness)  # not __main__: defines, does not run
    with pytest.raises(PermissionError):
        harness._no_network("socket.connect", ())
    harness._no_network("open", ())


def test_setup_script_parses_and_runs_the_command_in_the_workdir(tmp_path: Path) -> None:
    assert SETUP == (FILES / "setup.sh").read_text(encoding="utf-8")
    with importlib.resources.as_file(FILES / "setup.sh") as script:
        for shell in ("bash", "sh"):
            subprocess.run([shell, "-n", str(script)], check=True)

    def setup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", SETUP, "sh", *args], capture_output=True, text=True, check=False)

    done = setup(str(tmp_path), "0", "--", "sh", "-c", 'pwd; echo "$@"', "cmd", "a b", "c")
    assert (done.returncode, done.stdout) == (0, f"{tmp_path}\na b c\n")
    assert setup(str(tmp_path), "0", str(tmp_path / "no-cgroup"), "--", "true").returncode == 97
    assert setup(str(tmp_path / "missing"), "0", "--", "true").returncode == 96


def test_correct_passes_and_wrong_fails() -> None:
    assert execute(CORRECT, LIMITS).status == "passed"
    wrong = execute("def add(a, b):\n    return a - b\n\nassert add(1, 2) == 3\n", LIMITS)
    assert (wrong.status, wrong.passed) == ("failed", False)
    assert "AssertionError" in wrong.output
    assert execute("def add(a, b)\n    return a\n", LIMITS).status == "failed"  # syntax error


@pytest.mark.parametrize(
    ("early_exit", "status"),  # os._exit leaves no verdict: "timed out" in the reference harnesses
    [("import sys\nsys.exit(0)", "failed"), ("import os\nos._exit(0)", "timeout"), ("raise SystemExit", "failed"),
     ("print('PASSED')\nimport sys\nsys.exit()", "failed"), ("exit(0)", "failed"), ("quit()", "failed")],
)
def test_exit_before_the_asserts_is_not_a_pass(early_exit: str, status: str) -> None:
    program = f"def add(a, b):\n    return a - b\n\n{early_exit}\nassert add(1, 2) == 3\n"
    result = execute(program, LIMITS)
    assert not result.passed and result.status == status


@pytest.mark.parametrize(
    "layers",
    [Layers(), Layers(namespaces=True), Layers(namespaces=True, readonly_fs=True), Layers(pids_cgroup=True),
     Layers(memory_cgroup=True), Layers(drop_uid=True)],
    ids=["rlimits-only", "namespaces", "readonly", "pids-cgroup", "memory-cgroup", "nobody"],
)
def test_each_layer_alone_still_judges_benign_programs(layers: Layers) -> None:
    """A machine that allows fewer defences still gets a working sandbox (benign programs only here)."""
    available = probe_layers()
    missing = [name for name, wanted in layers.__dict__.items() if wanted and not getattr(available, name)]
    if missing:
        pytest.skip(f"this machine does not allow the sandbox layer(s) {missing}")
    assert execute(CORRECT, LIMITS, layers).status == "passed"
    assert execute("assert 1 == 2\n", LIMITS, layers).status == "failed"
    assert execute("import sys\nsys.exit(0)\nassert False\n", LIMITS, layers).status == "failed"
    quick = SandboxLimits(timeout_s=0.5, memory_bytes=LIMITS.memory_bytes, max_processes=8)
    spin = execute("import time\nwhile True:\n    time.sleep(0.01)\n", quick, layers)
    assert spin.status == "timeout" and spin.duration_s < quick.wall_s + 2


FORGE_FROM_GLOBALS = """
import os, sys
harness = vars(sys.modules["__main__"])
secrets = [v for v in harness.values() if isinstance(v, bytes)] or [b"0" * 32]
for fd in range(3, 64):
    try:
        os.write(fd, secrets[0] + b"passed")
    except OSError:
        pass
os._exit(0)
"""


def test_the_marker_cannot_be_forged_from_module_globals_or_by_writing_to_every_fd() -> None:
    result = execute(FORGE_FROM_GLOBALS + "assert False\n", LIMITS)
    assert not result.passed and result.status == "timeout"  # os._exit: no verdict


def test_home_is_the_working_dir() -> None:
    # posix.* are the functions the reliability guard disables as os.*: the guard is no boundary, the sandbox is
    probe = ("import os, posix\nposix.write(1, (os.path.expanduser('~') + '\\n').encode())\nposix.system('echo ~')\n"
             "posix.write(1, (str(sorted(os.environ)) + '\\n').encode())\n")
    result = execute(probe, LIMITS)
    assert result.passed, result.output
    lines = result.output.split("\n")
    assert lines[0] == lines[1]
    assert lines[0].startswith(tempfile.gettempdir()) and "dogerm-sandbox-" in lines[0]
    # PWD/OLDPWD: from sh; OMP_NUM_THREADS=1: the reliability guard's
    assert lines[2] == str(sorted(["HOME", "LANG", "OLDPWD", "OMP_NUM_THREADS", "PATH", "PWD", "TMPDIR"]))


def test_defences_are_reported() -> None:
    defences = active_defences(LIMITS)
    assert any("time limit 1 s per program" in d and "killed after 2 s" in d for d in defences)
    assert any("minimal environment" in d for d in defences)


def test_hostile_programs_are_contained_and_the_run_goes_on(outer_cap: list[Path], tmp_path: Path) -> None:
    defences = " | ".join(active_defences(LIMITS))
    for needed in ("PID namespace", "network namespace", "pids cgroup"):
        assert needed in defences, f"this machine lacks {needed}: {defences}"
    token = f"hf_planted_{uuid.uuid4().hex}"
    decoy = tmp_path / "decoy-home"
    (decoy / ".cache" / "huggingface").mkdir(parents=True)
    (decoy / ".cache" / "huggingface" / "token").write_text(token)
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    real_home_before = set(os.listdir(real_home))
    # safety precondition for the `rm -rf ~` program: in the sandbox `~` is the sandbox's own working dir
    probe = execute("import posix\nposix.system('echo ~')\n", LIMITS)
    assert probe.passed and "dogerm-sandbox-" in probe.output and str(real_home) != probe.output.strip()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    connect = (f"import os, socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
               "os.write(1, b'CONN' + b'ECTED')\n")
    # raw libc calls through ctypes bypass the in-process audit hook: only the network namespace stops them
    connect_raw = textwrap.dedent(f"""
        import ctypes, struct
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.socket(2, 1, 0)
        address = struct.pack("=H", 2) + struct.pack("!H", {port}) + bytes([127, 0, 0, 1]) + bytes(8)
        if libc.connect(fd, address, len(address)) == 0:
            libc.write(1, b"CONN" + b"ECTED", 9)
        assert False, ctypes.get_errno()
    """)
    # the reliability guard disables os.fork, os.system, ...: these go around it (posix.*), as hostile code would
    hostile = {
        "spin": "while True:\n    pass\n",
        "spin_ignoring_the_alarm": ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                    "while True:\n    pass\n"),
        "fork_bomb": "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n",
        "allocate_50gb": "blob = bytearray(50 * 1024**3)\nblob[-1] = 1\n",
        "write_2gb": textwrap.dedent("""
            chunk = b"x" * 2**20
            with open("big.bin", "wb") as handle:
                for _ in range(2048):
                    handle.write(chunk)
        """),
        "rm_home": "import posix\nposix.system('rm -rf ~')\nposix.system('rm -rf \"$HOME\"')\nassert False\n",
        "read_token": textwrap.dedent(f"""
            import glob, os
            found = [os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]
            for path in glob.glob("/proc/*/environ") + [{str(decoy / '.cache/huggingface/token')!r}]:
                try:
                    found.append(open(path, "rb").read().decode(errors="replace"))
                except OSError as exc:
                    found.append(repr(exc))
            os.write(1, repr(found).encode())
            assert False
        """),
        "socket": connect,
        "socket_raw": connect_raw,
    }
    programs = [CORRECT, *hostile.values(), CORRECT]
    results = _run_capped(programs, outer_cap, {"HOME": str(decoy), "HF_TOKEN": token})

    assert [r["status"] for r in results[:1] + results[-1:]] == ["passed", "passed"]
    by_name = dict(zip(hostile, results[1:-1]))
    for name, result in by_name.items():
        assert not result["passed"], (name, result)
        assert result["duration_s"] < LIMITS.wall_s + 3, (name, result["duration_s"])
    assert by_name["spin"]["status"] == by_name["spin_ignoring_the_alarm"]["status"] == "timeout"
    assert by_name["spin_ignoring_the_alarm"]["duration_s"] >= LIMITS.wall_s  # killed from outside
    assert "MemoryError" in by_name["allocate_50gb"]["output"]
    for name in ("socket", "socket_raw"):
        assert "CONNECTED" not in by_name[name]["output"]
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert token not in by_name["read_token"]["output"]
    assert "hf_planted" not in by_name["read_token"]["output"]
    assert (decoy / ".cache" / "huggingface" / "token").read_text() == token
    assert real_home.is_dir() and real_home_before <= set(os.listdir(real_home))
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("dogerm-sandbox-*/work/big.bin")]
    assert not leftovers
