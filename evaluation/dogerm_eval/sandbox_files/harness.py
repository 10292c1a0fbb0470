"""Trusted harness that the sandboxed interpreter runs before the program (see ``dogerm_eval.sandbox``).

Run as ``python -I -B -c <this file's text> CONFIG`` in the program's working directory, where CONFIG is JSON:
``{"rlimits": [[name, soft, hard], ...], "nonce_fd": fd, "result_fd": fd, "timeout_s": seconds}``. It applies the
rlimits, installs the socket audit hook, reads the nonce from ``nonce_fd`` and closes it, reads ``program.py`` and
deletes it, then runs the program by the rules of the reference harnesses (openai/human-eval
``human_eval/execution.py`` ``unsafe_execute``, which bigcode-evaluation-harness's
``bigcode_eval/tasks/custom_metrics/execute.py`` repeats; re-implemented here, not copied):

* the program text is executed with a fresh, empty globals dict (so ``__name__`` is not ``"__main__"`` and an
  ``if __name__ == "__main__":`` block never runs), in an empty working directory;
* before it, their ``reliability_guard`` rules: ``faulthandler`` off; ``exit``, ``quit`` and ``help`` set to None;
  ``OMP_NUM_THREADS=1``; the functions in ``DISABLED`` set to None; ``MODULES_BLOCKED`` unimportable;
* stdout and stderr are swallowed and stdin is replaced by a stream whose reads raise ``OSError``;
* a ``TimeoutException`` (an ``Exception``, so the program can catch it) is raised by SIGALRM after ``timeout_s``.

The verdict, written to ``result_fd`` after the nonce: ``passed`` when the program returns, ``timeout`` when the
``TimeoutException`` escapes it, ``failed`` for any other exception (``SystemExit`` included). A program that ends
the interpreter itself (``os._exit``, a signal) leaves no verdict, which the sandbox counts as a timeout, as the
references do ("timed out" when no result came back). The traceback of a failure goes to the real stderr.
"""

import builtins
import faulthandler
import io
import json
import os
import resource
import signal
import sys
import traceback

#: (module, attribute) pairs human-eval's ``reliability_guard`` sets to None.
DISABLED = (
    *(("os", name) for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
        "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
        "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir")),
    ("shutil", "rmtree"), ("shutil", "move"), ("shutil", "chown"),
    ("subprocess", "Popen"),
    ("builtins", "exit"), ("builtins", "quit"), ("builtins", "help"),
)
#: Modules whose ``sys.modules`` entry human-eval's ``reliability_guard`` sets to None (importing them fails).
MODULES_BLOCKED = ("ipdb", "joblib", "resource", "psutil", "tkinter")


class TimeoutException(Exception):  # noqa: N818 - the reference's name
    """Raised in the program when its time is up."""


class WriteOnlyStream(io.StringIO):
    """The references' stand-in for stdout, stderr and stdin: writes are kept in memory, reads raise OSError."""

    def read(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        raise OSError

    def readline(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        raise OSError

    def readlines(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        raise OSError

    def readable(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        return False


def _no_network(event: str, args: tuple) -> None:
    if event.startswith("socket."):
        raise PermissionError("network access is disabled in the sandbox")


def _time_up(signum: int, frame: object) -> None:
    raise TimeoutException("Timed out!")


def _guard() -> None:
    """human-eval's ``reliability_guard`` (without its optional memory limit: the sandbox sets the rlimits)."""
    import shutil  # noqa: F401 - imported so that its attributes can be disabled
    import subprocess  # noqa: F401

    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    for module, name in DISABLED:
        setattr(sys.modules[module], name, None)
    for module in MODULES_BLOCKED:
        sys.modules[module] = None


def _main() -> None:
    # everything secret stays in this frame's locals (not in module globals the program can import), and the
    # functions used after the program are bound here, before it could replace them
    write, exit_now, setitimer, describe = os.write, os._exit, signal.setitimer, traceback.format_exception
    cfg = json.loads(sys.argv.pop())
    for name, soft, hard in cfg["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    sys.addaudithook(_no_network)
    nonce = os.read(cfg["nonce_fd"], 64)
    os.close(cfg["nonce_fd"])
    result_fd = cfg["result_fd"]
    with open("program.py", encoding="utf-8") as handle:
        source = handle.read()
    os.unlink("program.py")
    _guard()
    stream = WriteOnlyStream()
    sys.stdout = sys.stderr = sys.stdin = stream
    signal.signal(signal.SIGALRM, _time_up)
    failure = None
    setitimer(signal.ITIMER_REAL, cfg["timeout_s"])
    try:
        exec(source, {})  # noqa: S102 - running the program is the point
        verdict = b"passed"
    except TimeoutException:
        verdict = b"timeout"
    except BaseException as exc:  # noqa: BLE001 - any other exception or exit of the program is a failure
        verdict, failure = b"failed", exc
    finally:
        setitimer(signal.ITIMER_REAL, 0)
    if failure is not None:
        write(2, "".join(describe(failure)).encode("utf-8", "replace"))
    write(result_fd, nonce + verdict)
    exit_now(0)


if __name__ == "__main__":
    _main()
