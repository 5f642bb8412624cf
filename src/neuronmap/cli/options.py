"""The options several commands share, declared once (``Annotated`` types for typer), and the one rule for
``--threads``. A command with an option of its own words (``--seed``: seed of what) keeps it in its module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from neuronmap.errors import NeuronmapError

if TYPE_CHECKING:  # torch and transformers load only when a command needs the model
    from neuronmap.models.loader import LoadedModel

MODEL_HELP = "Embedded name, tiny-*, local folder or hub id."
THREADS_HELP = "torch CPU threads, at least 1 (default: torch's own choice)."

Model = Annotated[str, typer.Option("--model", help=MODEL_HELP)]
Device = Annotated[str | None, typer.Option("--device", help="cpu | cuda | auto.")]
Dtype = Annotated[str | None, typer.Option("--dtype", help="float32 | bfloat16 | float16 | float64.")]
Threads = Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)]
# Shared by every command that runs a language model on the user's text.
Truncate = Annotated[
    str | None,
    typer.Option(
        "--truncate",
        help="left: cut an input longer than the model's window to its last tokens (default: refuse it).",
    ),
]
MaxMemory = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Memory a batch may take, e.g. 6GB, 800MB or 50% (default: 70% of the memory available at the start).",
    ),
]
Hparams = Annotated[
    str | None,
    typer.Option(
        "--hparams", help="ROME hparams name or .json (default: the model's; --algorithm memit: MEMIT's)."
    ),
]
FigureFormat = Annotated[str, typer.Option("--format", help="Figures: png,svg | png | svg | none.")]
# Ray, for the stages that can run on it (trace, map).
Address = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address (ray: 'auto' or host:port); default starts one."),
]


def check_threads(threads: int | None) -> None:
    """The one rule for ``--threads`` on every command: left out, torch chooses; else at least 1 (never clamped)."""
    if threads is not None and threads < 1:
        raise NeuronmapError(f"--threads must be at least 1 (got {threads})")


def set_threads(threads: int | None) -> None:
    """Check ``--threads`` and give it to torch (imported only when a number is given)."""
    check_threads(threads)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def check_model_options(model: str, dtype: str | None, threads: int | None) -> None:
    """The mistakes in ``--model``, ``--dtype`` and ``--threads`` found without torch (``models.spec``)."""
    from neuronmap.models.spec import check_dtype, check_model

    check_threads(threads)
    check_dtype(dtype)
    check_model(model)


def load_model_checked(model: str, device: str | None, dtype: str | None, threads: int | None) -> LoadedModel:
    """The model of an edit-wing or study command: its options checked first, then torch's threads set, then
    the model loaded."""
    check_model_options(model, dtype, threads)
    set_threads(threads)
    from neuronmap.models.loader import load_model

    return load_model(model, device=device, dtype=dtype)
