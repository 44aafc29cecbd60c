"""Every command's --help reads well at 80 and 120 columns: its paragraphs wrap to the
terminal (no line broken early where the docstring was), every option says what it
does, and `bench --version` answers."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

import bench
from bench import cli


def commands() -> list[tuple[str, ...]]:
    """Every command path, `()` for bench itself, from the real CLI."""
    out: list[tuple[str, ...]] = []

    def walk(cmd, path: tuple[str, ...]) -> None:
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli.app), ())
    return out


COMMANDS = commands()


def help_of(path: tuple[str, ...], width: int) -> str:
    p = CliRunner(env={"COLUMNS": str(width), "TERMINAL_WIDTH": None}).invoke(
        cli.app, [*path, "--help"]
    )
    assert p.exit_code == 0, p.output
    return p.output


def description(text: str) -> list[list[str]]:
    """The paragraphs between the usage line and the first panel, as lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
    paragraphs: list[list[str]] = [[]]
    for line in lines[start:end]:
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def test_every_command_is_seen():
    names = {" ".join(p) for p in COMMANDS}
    assert {"run", "ab", "validate", "compare", "report", "doctor", "clean", "schema"} <= names
    assert "images build" in names


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "bench")
def test_paragraphs_wrap_to_the_terminal(path, width):
    paragraphs = description(help_of(path, width))
    assert paragraphs, "no description"
    for paragraph in paragraphs:
        for line, following in zip(paragraph, paragraph[1:], strict=False):
            assert len(line) <= width
            word = following.split()[0]
            # Rich pads one column each side: the next word would have fit here.
            assert len(line) + 1 + len(word) > width - 1, f"broken early: {line!r}"


def test_the_check_catches_a_docstring_broken_by_hand():
    text = " Usage: bench x\n\n Prints a summary; the last line is the\n run directory.\n╭─"
    paragraph = description(text)[0]
    assert len(paragraph[0]) + 1 + len("run") <= 80 - 1


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "bench")
def test_every_option_and_argument_has_help(path):
    cmd = typer.main.get_command(cli.app)
    for name in path:
        cmd = cmd.commands[name]
    ctx = typer.Context(cmd)
    for param in cmd.get_params(ctx):
        if not getattr(param, "hidden", False):
            assert getattr(param, "help", None), f"{' '.join(path)}: {param.name} has no help"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "bench")
def test_flags_show_no_value_and_options_name_theirs(path):
    """A flag takes no value: typer's `--dry-run <bool>` read as if it took one."""
    text = help_of(path, 120)
    assert "<bool>" not in text
    # An option's metavar says what to give (RUN_ID, PLATFORM), not just "<str>".
    assert not re.search(r"--[a-z-]+ +<str>", text), text


@pytest.mark.parametrize("path", [("doctor",), ("clean",), ("images", "build")])
def test_backend_options_show_their_help(path):
    text = help_of(path, 120)
    assert "Docker Engine address" in text
    assert "podman service address" in text


def test_version():
    p = CliRunner().invoke(cli.app, ["--version"])
    assert p.exit_code == 0
    assert p.output == f"bench {bench.__version__}\n"


def test_the_readme_commands_table_names_every_option():
    """Each command's row in the README's Commands table names all its options (those of
    the backends included): none exists undocumented."""
    import re

    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Commands") : readme.index("## Scenario files")]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `bench ([a-z]+(?: [a-z]+)?)", line)
        if m:
            rows[m.group(1)] = line
    root = typer.main.get_command(cli.app)
    for path in COMMANDS:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        if hasattr(cmd, "commands"):
            continue  # a group: its subcommands have the rows
        name = " ".join(path)
        row = next((r for key, r in rows.items() if name == key.split(" [")[0]), None)
        assert row is not None, f"no row for bench {name}"
        for param in cmd.get_params(typer.Context(cmd)):
            if getattr(param, "hidden", False):
                continue
            for flag in param.opts:
                if flag.startswith("--") and flag != "--help":
                    assert flag in row, f"bench {name} {flag} is not in its README row"
    for flag in ("--debug", "--version"):
        assert flag in section
