"""Trusted harness that the sandboxed interpreter runs before the program (see ``dogerm_eval.sandbox``).

Run as ``python -I -B -c <this file's text> CONFIG`` in the program's working directory, where CONFIG is JSON:
``{"rlimits": [[name, soft, hard], ...], "nonce_fd": fd, "result_fd": fd}``. It applies the rlimits, installs the
socket audit hook, reads the nonce from ``nonce_fd`` and closes it, runs ``program.py`` as ``__main__``, and only
if that returns writes the nonce to ``result_fd`` and exits 0; any exception (``SystemExit`` included) prints its
traceback and exits 1.
"""

import json
import os
import resource
import sys
import traceback


def _no_network(event: str, args: tuple) -> None:
    if event.startswith("socket."):
        raise PermissionError("network access is disabled in the sandbox")


def _main() -> None:
    # everything secret stays in this frame's locals: not in the module globals the program can import
    cfg = json.loads(sys.argv.pop())
    for name, soft, hard in cfg["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    sys.addaudithook(_no_network)
    nonce = os.read(cfg["nonce_fd"], 64)
    os.close(cfg["nonce_fd"])
    result_fd = cfg["result_fd"]
    with open("program.py", encoding="utf-8") as handle:
        code = compile(handle.read(), "program.py", "exec")
    try:
        exec(code, {"__name__": "__main__"})  # noqa: S102 - running the program is the point
    except BaseException:  # noqa: BLE001 - any exit or error of the program is a failure
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    os.write(result_fd, nonce)
    os._exit(0)


if __name__ == "__main__":
    _main()
