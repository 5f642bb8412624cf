"""The README's commands run as written.

- Every ``neuronmap`` command in the README's code blocks parses with the CLI: its sub-command and options exist
  and its values have the right types (click parses them; nothing runs).
- Every ``runs/demo/NAME`` the README names (in commands and Python) is a folder ``make demo`` creates: the
  Makefile's ``$(DEMO)/NAME`` with ``DEMO := runs/demo``.
- The cheap ones of the commands that name ``runs/demo`` run verbatim, in order, on a tiny demo built at the same
  paths in a temporary folder (tiny-gpt2 traces of a few facts, Wikipedia contexts and paragraphs, mapped as
  ``make demo`` maps them). **The rule**: a command runs when it reads a run and loads no model (``map``,
  ``explore`` and ``figures``, but not ``--serve``, which serves until Ctrl-C) or is ``group --by pos`` (when
  spaCy's English model is installed); those that run the model over the run (``verify``, ``neurons``,
  ``group --by sense``) and every command that traces or edits are only parsed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from neuronmap.cli import app
from neuronmap.contexts.grouping import SPACY_MODEL

ROOT = Path(__file__).resolve().parents[1]
DEMO = "runs/demo"


def readme_commands() -> list[str]:
    """The ``neuronmap ...`` lines of the README's code blocks, continuation lines joined, comments cut."""
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("neuronmap "):
                found.append(shlex.split(line, comments=True))
    return [shlex.join(c) for c in found]


def demo_folders() -> set[str]:
    """The run folders of ``make demo``: the Makefile's ``$(DEMO)/NAME``."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^DEMO\s*:=\s*runs/demo\s*$", makefile, re.M), "the Makefile's DEMO is not runs/demo"
    return set(re.findall(r"\$\(DEMO\)/([\w-]+)", makefile))


COMMANDS = readme_commands()
ON_DEMO = [c for c in COMMANDS if f"{DEMO}/" in c]


def _cheap(command: str) -> str | None:
    """Why the command is only parsed (None: it runs), by the module's rule."""
    args = shlex.split(command)[1:]
    if args[0] in ("map", "figures") or (args[0] == "explore" and "--serve" not in args):
        return None
    if args[0] == "group" and args[args.index("--by") + 1] == "pos":
        if importlib.util.find_spec(SPACY_MODEL) is None:
            return f"spaCy's {SPACY_MODEL} is not installed"
        return None
    return "runs the model over the run, serves, traces or edits"


def _parse(args: list[str]) -> None:
    """Parse a command line as the CLI would, without running it: sub-commands, options, types."""
    command: click.Command = get_command(app)
    ctx = None
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=args[0] if ctx else "neuronmap", parent=ctx)
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"no command {args[0]!r}"
        command, args = sub, args[1:]
    command.make_context(command.name, list(args), parent=ctx)


def test_the_readme_has_demo_commands() -> None:
    assert len(COMMANDS) >= 20 and len(ON_DEMO) >= 8
    stages = {shlex.split(c)[1] for c in ON_DEMO}
    assert {"map", "explore", "group", "neurons", "verify"} <= stages


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command: str) -> None:
    _parse(shlex.split(command)[1:])


def test_every_demo_path_is_a_folder_make_demo_creates() -> None:
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(rf"{DEMO}/([\w-]+)", text))
    folders = demo_folders()
    assert {"facts", "wiki", "wiki-events", "wiki-layers"} <= folders
    assert named and named <= folders, named - folders


def test_the_quoted_facts_trace_time_is_the_demo_measured_with_its_batch_size() -> None:
    """The README's trace example quotes the demo's facts trace: its options are the Makefile's."""
    text = " ".join((ROOT / "README.md").read_text().split())
    demo = json.loads((ROOT / "bench" / "results" / "demo.json").read_text())
    assert (
        f"`make demo` traces the first 300 of these facts with the same options in "
        f"{demo['trace_seconds']['facts']:.0f} s" in text
    )
    example = next(c for c in COMMANDS if "--contexts builtin:facts --method attribution" in c)
    makefile = (ROOT / "Makefile").read_text()
    trace = re.search(r"^DEMO_TRACE\s*:=\s*(.*)$", makefile, re.M).group(1)
    assert "--batch-size 32" in trace and "--batch-size 32" in example
    assert re.search(r"^DEMO_FACTS \?= 300$", makefile, re.M)


FACTS = [
    ("The Eiffel Tower is located in the city of", "Paris", "landmark"),
    ("Tokyo is the capital of", "Japan", "capital"),
    ("The Colosseum is in the city of", "Rome", "landmark"),
    ("Berlin is the capital of", "Germany", "capital"),
    ("Big Ben is in the city of", "London", "landmark"),
    ("Madrid is the capital of", "Spain", "capital"),
    ("The Louvre is in the city of", "Paris", "landmark"),
    ("Lisbon is the capital of", "Portugal", "capital"),
]


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    """``runs/demo/{facts,wiki,wiki-events,wiki-layers}`` as ``make demo`` lays them out, on tiny-gpt2."""
    from neuronmap.graph.api import map_run
    from neuronmap.models.loader import load_model
    from neuronmap.trace.runner import trace_run

    root = tmp_path_factory.mktemp("readme")
    demo = root / DEMO
    facts = root / "facts.jsonl"
    facts.write_text("".join(json.dumps({"text": t, "target": y, "relation": r}) + "\n" for t, y, r in FACTS))
    lm = load_model("tiny-gpt2")
    common = {"model": "tiny-gpt2", "loaded": lm, "progress": False, "threads": 1}
    trace_run(out=demo / "facts", contexts=str(facts), keep="all", top_k=16, **common)
    trace_run(out=demo / "wiki", contexts="builtin:wiki:24", top_k=16, **common)
    trace_run(out=demo / "wiki-events", contexts="builtin:wiki:3", each_token=True, method="direct", **common)
    (demo / "wiki-layers").mkdir()
    for name in ("run.json", "contexts.parquet", "scores.parquet"):
        shutil.copy(demo / "wiki" / name, demo / "wiki-layers" / name)
    cheap = {"null_samples": 0, "stability_seeds": 0, "export": "none"}
    for name in ("facts", "wiki-events", "wiki"):
        map_run(demo / name, **cheap)
    map_run(demo / "wiki-layers", scope="within-layer", force=True, **cheap)
    assert {p.name for p in demo.iterdir()} == demo_folders()
    return root


def test_the_cheap_demo_commands_run_verbatim(tiny_demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_demo)
    ran, parsed = [], {}
    for command in ON_DEMO:
        why = _cheap(command)
        if why:
            _parse(shlex.split(command)[1:])
            parsed[command] = why
            continue
        result = CliRunner().invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
        ran.append(command)
    assert any(c.startswith("neuronmap map ") for c in ran) and any("explore" in c for c in ran), ran
    assert (tiny_demo / DEMO / "wiki" / "explorer.html").is_file()
