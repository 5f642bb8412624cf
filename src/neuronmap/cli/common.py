"""What every command module shares: the app, the consoles, ``main`` (one-line errors, exit codes) and the parsers
of list options. Imports nothing heavy: ``neuronmap --help`` and every argument check run before torch loads."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol, cast

import typer
from rich.console import Console

from neuronmap.errors import NeuronmapError
from neuronmap.formats import check_figure_formats
from neuronmap.quiet import quiet_libraries

app = typer.Typer(
    name="neuronmap",
    help="Map what the MLP neurons of a transformer language model do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


def stdout() -> Console:
    """The console for results. Piped into a file or ``grep``, rich would wrap tables at 80 columns and split
    their rows over several lines; there they keep their natural width (COLUMNS still sets one)."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(soft_wrap=True, width=10_000 if piped else None)


def int_list(value: str | None, option: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise NeuronmapError(
            f"{option} takes comma-separated integers, e.g. 0,5,-1 (got {value!r})"
        ) from None


def float_list(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise NeuronmapError(
            f"{option} takes comma-separated numbers, e.g. 0.5,0.1 (got {value!r})"
        ) from None


def str_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise NeuronmapError(f"{option} is empty")
    return items


def formats(value: str) -> list[str]:
    """``--format`` of the figure-writing commands: a comma list of :data:`FIGURE_FORMATS`, or ``none``."""
    return list(check_figure_formats([] if value.strip() == "none" else str_list(value, "--format")))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def check_run(run: Path) -> None:
    """A run directory's first mistake found before any library loads: no ``run.json`` there (``RunDir``'s words,
    which every stage would print after importing its libraries)."""
    if not (Path(run) / "run.json").is_file():
        raise NeuronmapError(f"{Path(run)}: not a neuronmap run (no run.json); run `neuronmap trace` first")


class _ClickError(Protocol):
    """What a click exception offers (typer's vendored click is private: its classes are not imported)."""

    exit_code: int

    def format_message(self) -> str: ...


def main() -> None:
    quiet_libraries()  # before any command imports torch, transformers or Ray
    try:
        app(standalone_mode=False, prog_name="neuronmap")
    except NeuronmapError as exc:
        error_line(str(exc))
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors (typer vendors its own click) carry their own exit code
        if not any(cls.__name__ == "ClickException" for cls in type(exc).__mro__):
            raise
        usage = cast(_ClickError, exc)
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        error_line(f"{usage.format_message()}{where}")
        sys.exit(usage.exit_code or 2)


def error_line(message: str) -> None:
    """One line on stderr: user text in the message is neither markup nor a line break."""
    from rich.markup import escape

    text = " ".join(message.split("\n"))
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
