"""A helper process for the fault and determinism tests: imports neuronmap once, then forks one child per request.

Each stdin line is a JSON request ``{"args": [...], "env": {...}, "log": PATH, "kill_at": N, "when": "before" |
"after", "count": PATH}``. The child runs ``neuronmap.cli.main`` with ``args`` (stdout and stderr to ``log``).
Every ``os.replace``/``os.rename`` (how neuronmap puts a finished file or folder in place) is an event; with
``kill_at`` the child sends itself SIGKILL just before or just after event N, so kills land on the moments when
a file is half-way into place; with ``count`` it writes the number of events there on exit. The helper prints
``{"pid": PID}`` when the child starts (so a test may kill it at a random time) and ``{"code": C, "signal": S}``
when it ends. A forked child skips the 3 s of imports a new process spends, so many kills fit in a short test.
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

import neuronmap.cli  # noqa: E402, F401
import neuronmap.edit.stats  # noqa: E402, F401
import neuronmap.graph.api  # noqa: E402, F401
import neuronmap.outliers.train  # noqa: E402, F401
import neuronmap.trace.runner  # noqa: E402, F401


def child(request: dict) -> None:
    os.environ.update(request.get("env", {}))
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    events = 0
    kill_at, when = request.get("kill_at"), request.get("when", "before")

    def counted(original):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal events
            events += 1
            if events == kill_at and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if events == kill_at and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapper

    os.replace = counted(os.replace)
    os.rename = counted(os.rename)
    sys.argv = ["neuronmap", *request["args"]]
    code = 0
    try:
        neuronmap.cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # a bug: shown in the log, reported as exit 1
        import traceback

        traceback.print_exc()
        code = 1
    if request.get("count"):
        with open(request["count"], "w") as fh:
            fh.write(str(events))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        signalled = os.WIFSIGNALED(status)
        print(
            json.dumps(
                {
                    "code": None if signalled else os.WEXITSTATUS(status),
                    "signal": os.WTERMSIG(status) if signalled else None,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
