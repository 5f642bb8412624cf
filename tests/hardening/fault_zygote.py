"""A helper process for the fault, determinism and bad-input tests: imports neuronmap once, then forks one child
per request.

Each stdin line is a JSON request ``{"args": [...], "env": {...}, "log": PATH, "out": PATH, "err": PATH,
"kill_at": N, "when": "before" | "after", "count": PATH}``. The child runs ``neuronmap.cli.main`` with ``args``,
its file descriptors 1 and 2 on ``out`` and ``err`` (each ``log`` when not given) and 0 on /dev/null, so what
any library writes there is caught as a new process's output would be. Every ``os.replace``/``os.rename`` (how
neuronmap puts a finished file or folder in place) is an event; with ``kill_at`` the child sends itself SIGKILL
just before or just after event N, so kills land on the moments when a file is half-way into place; with
``count`` it writes the number of events there on exit. The helper prints ``{"ready": true}`` once imported (as
its first line: what the imports printed lies before it, or on the helper's stderr), ``{"pid": PID}`` when a
child starts (so a test may kill it at a random time) and ``{"code": C, "signal": S}`` when it ends. A forked
child skips the seconds of imports a new process spends, so many commands fit in a short test.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import warnings

# A new process's warning filters (with PYTHONWARNINGS), given back to each child before main() sets its own.
FRESH_FILTERS = list(warnings.filters)

from neuronmap.quiet import quiet_libraries  # noqa: E402

quiet_libraries()  # as neuronmap.cli.main does first, before the libraries below are imported

import torch  # noqa: E402

torch.set_num_threads(1)

# The modules the commands import when they start (the cli package imports them lazily; typer its option
# parsing's), so children skip that too.
import rich._emoji_codes  # noqa: E402, F401
import typer._adapters  # noqa: E402, F401

import neuronmap.cli  # noqa: E402, F401
import neuronmap.contexts.grouping  # noqa: E402, F401
import neuronmap.edit.api  # noqa: E402, F401
import neuronmap.edit.stats  # noqa: E402, F401
import neuronmap.explore.api  # noqa: E402, F401
import neuronmap.explore.figures  # noqa: E402, F401
import neuronmap.graph.api  # noqa: E402, F401
import neuronmap.models.registry  # noqa: E402, F401
import neuronmap.outliers.evaluation  # noqa: E402, F401
import neuronmap.outliers.refinement  # noqa: E402, F401
import neuronmap.outliers.synthesis  # noqa: E402, F401
import neuronmap.outliers.train  # noqa: E402, F401
import neuronmap.study.api  # noqa: E402, F401
import neuronmap.trace.runner  # noqa: E402, F401


def fresh_warnings() -> None:
    """The warning state of a new process: its filters, and no memory of warnings already shown (a 'default' or
    'once' warning the helper raised at import would otherwise stay hidden in every child)."""
    warnings.resetwarnings()
    warnings.filters.extend(FRESH_FILTERS)
    warnings.onceregistry.clear()
    for module in list(sys.modules.values()):
        registry = getattr(module, "__dict__", {}).get("__warningregistry__")
        if isinstance(registry, dict):
            registry.clear()


def child(request: dict) -> None:
    os.environ.update(request.get("env", {}))
    fresh_warnings()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the request pipe
    for fd, name in ((1, "out"), (2, "err")):
        os.dup2(
            os.open(request.get(name) or request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), fd
        )
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
    gc.freeze()  # a child's garbage collections would otherwise touch, and so copy, every page of the helper
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
