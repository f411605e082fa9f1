"""The documentation works as written.

Every `schedctl ...` command in the README, in docs/*.md and in the examples of every
command's --help is extracted; each must parse (Click resolves the command and parses its
arguments without running it), and the safe ones run: --help, --version, `node gpu`,
`loadgen plan`, `keys generate` into a relative directory, and `status` against nothing,
which must fail with one clear line. The experiment file in cli/experiment/spec.py's
docstring must load, and docs/configuration.md must be what its generator writes.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

try:  # typer >= 0.22 carries its own copy of Click
    from typer._click import Context
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on Click itself
    from click import ClickException, Context  # type: ignore[no-redef]

from cli.config_reference import OUTPUT, render
from cli.experiment import spec as spec_module
from cli.experiment.spec import load_file
from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
SCHEDCTL = str(Path(sys.executable).with_name("schedctl"))
FENCE = re.compile(r"^```[\w-]*\n(.*?)^```", re.M | re.S)
# An inline `schedctl ... --flag ...` span in prose or a table (a bare `schedctl start node` names a
# command, it is no example); spans with placeholders ([--flag], A|B, ...) are left out.
INLINE = re.compile(r"(?<!`)`(schedctl [^`]* -[^`]*)`(?!`)")
PLACEHOLDER = re.compile(r"\[|\||\.\.\.|\b[A-Z]{2,}\b")  # [--flag], A|B, ..., FILE, ROLE
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*schedctl(?:\s|$)")


def command_lines(text: str) -> list[str]:
    """`schedctl ...` lines of a text, continuation lines joined, prompts and comments dropped."""
    out: list[str] = []
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        words = shlex.split(line, comments=True) if COMMAND.match(line) else []
        while words and ENV.match(words[0]):
            words = words[1:]
        if words[:1] == ["schedctl"]:
            out.append(shlex.join(words))
    return out


@functools.cache
def root_command() -> Any:
    return typer.main.get_command(app)


def walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        found += walk(sub, (*path, name))
    return found


def documented() -> list[tuple[str, str]]:
    """(where, command) for every documented command."""
    found: list[tuple[str, str]] = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for block in FENCE.findall(text):
            found += [(doc.name, c) for c in command_lines(block)]
        found += [(doc.name, c) for span in INLINE.findall(FENCE.sub("", text))
                  if not PLACEHOLDER.search(span) for c in command_lines(" ".join(span.split()))]
    for path, cmd in walk(root_command()):
        found += [(f"schedctl {' '.join(path)} --help", c) for c in command_lines(cmd.help or "")]
    for source in sorted(p for top in ("cli", "daemons", "scripts") for p in (ROOT / top).rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                found += [(str(source.relative_to(ROOT)), c) for c in command_lines(ast.get_docstring(node) or "")]
    return list({c: (where, c) for where, c in reversed(found)}.values())[::-1]  # each command once, first place


COMMANDS = documented()


def parse(words: list[str]) -> None:
    """Resolve the command and parse its arguments, as Click would before running it."""
    cmd, args, name = root_command(), words[1:], "schedctl"
    while getattr(cmd, "commands", None) and args and not args[0].startswith("-"):
        assert args[0] in cmd.commands, f"no command {args[0]!r} under {name}"
        cmd, name, args = cmd.commands[args[0]], f"{name} {args[0]}", args[1:]
    with contextlib.suppress(typer.Exit):  # --help, --version: eager options that end parsing
        cmd.make_context(name, list(args))


def test_request_ids_are_the_products() -> None:
    """The schedule names requests r000000, r000001, ... (WorkloadSpec.id_prefix + six digits)."""
    for where, command in COMMANDS:
        words = shlex.split(command)
        for flag in ("--request-id", "-r"):
            if flag in words and words[1] == "logs":
                assert re.fullmatch(r"r\d{6}", words[words.index(flag) + 1]), f"{where}: `{command}`"


def test_there_are_documented_commands_everywhere() -> None:
    wheres = {w.split(" ")[0] for w, _ in COMMANDS}
    assert {"README.md", "schedctl"} <= wheres
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w}: {c}"[:100] for w, c in COMMANDS])
def test_every_documented_command_parses(where: str, command: str) -> None:
    try:
        parse(shlex.split(command))
    except ClickException as exc:
        pytest.fail(f"{where}: `{command}` does not parse: {exc.format_message()}")


def safe(words: list[str]) -> bool:
    if "--help" in words or "--list-profiles" in words or words[1:] == ["--version"]:
        return True
    if words[1:3] == ["node", "gpu"]:
        return "nvml" not in words  # a GPU host's example
    if words[1:3] == ["loadgen", "plan"]:  # into the test's directory; not a trace the reader would fetch first
        return "--trace" not in words and not _value(words, "-o", "--out").startswith("/")
    if words[1:3] == ["keys", "generate"]:
        return not _value(words, "-d", "--dir").startswith("/")
    return words[1:] == ["status"]


def _value(words: list[str], *flags: str) -> str:
    at = [i for i, w in enumerate(words) if w in flags]
    return words[at[-1] + 1] if at and at[-1] + 1 < len(words) else ""


SAFE = sorted({c for _, c in COMMANDS if safe(shlex.split(c))})


def test_the_safe_ones_are_many() -> None:
    assert len(SAFE) >= 6, SAFE


@pytest.mark.parametrize("command", SAFE)
def test_the_safe_ones_run_as_written(command: str, tmp_path: Path) -> None:
    words = shlex.split(command)
    out = subprocess.run([SCHEDCTL, *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    if words[1:] == ["status"]:  # nothing is running: one line naming the fix
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.startswith("error: no coordinator answered") and len(out.stderr.splitlines()) == 1
        return
    assert out.returncode == 0, f"`{command}` exited {out.returncode}: {out.stderr}"
    assert "Traceback" not in out.stderr


def test_the_experiment_file_example_loads(tmp_path: Path) -> None:
    doc = spec_module.__doc__ or ""
    example = doc[doc.index("    [experiment]"):doc.index("Every key, with its default")]
    path = tmp_path / "experiment.toml"
    path.write_text("\n".join(line.removeprefix("    ") for line in example.splitlines()))
    spec = load_file(path)
    assert spec.name == "my_comparison" and spec.faults == ("5:kill:node-1",)


def test_help_examples_are_kept_as_lines() -> None:
    """Examples sit in Click's \\b paragraphs, so no terminal width joins or wraps them."""
    for path, cmd in walk(root_command()):
        help_text = cmd.help or ""
        if "schedctl " in help_text and "Example" in help_text:
            assert "\b" in help_text, f"schedctl {' '.join(path)}: its examples are not in a \\b paragraph"
        ctx = Context(cmd, info_name="schedctl", terminal_width=60, max_content_width=60)
        rendered = cmd.get_help(ctx)
        assert not re.search(r"\S {3,}schedctl ", rendered), f"schedctl {' '.join(path)}: examples run together"


def test_the_configuration_reference_is_generated() -> None:
    committed = (ROOT / OUTPUT).read_text(encoding="utf-8")
    assert committed == render(), f"{OUTPUT} is out of date: run `python scripts/config_reference.py`"


# Paths the docs name that the reader makes: a deployment's keys, an inventory, an example profile.
MADE_BY_THE_READER = ("ansible/.keys/", "ansible/inventory/my.yml", "daemons/profiles/models/mistral-7b.toml")
REPO_PATH = re.compile(r"(?<![\w/.-])((?:docs|daemons|cli|scripts|tests|etc|ansible)/[\w./@-]*\w\."
                       r"(?:md|py|toml|yml|sh|service|j2|json))")


def test_every_file_the_docs_name_exists() -> None:
    docs = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = [f"{doc.name}: {path}" for doc in docs for path in sorted(set(REPO_PATH.findall(doc.read_text())))
               if not (ROOT / path).exists() and not path.startswith(MADE_BY_THE_READER)]
    assert not missing, missing
