"""Every command's help shows its option texts whole: rich markup must not eat "[model]" or "[train].epochs"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from reformer.cli import app

_COMMAND = typer.main.get_command(app)


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every (sub)command with its argv path (typer's own vendored click: duck-typed on `.commands`)."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(_COMMAND), ids=lambda value: " ".join(value)
                         if isinstance(value, tuple) else "")
def test_help_shows_every_bracketed_word(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.replace("│", " ").split())
    texts = [(param.name, getattr(param, "help", None) or "") for param in command.params]
    for name, text in [("the command", command.help or ""), *texts]:
        for bracketed in re.findall(r"\[[^\]]*\][\w.]*", text.replace("\\[", "[")):
            assert bracketed in shown, f"{' '.join(path)}: {bracketed!r} of {name}'s help is not shown"


def test_train_help_names_the_config_tables() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    shown = " ".join(result.output.split())
    assert "[model], [train], [data] tables" in shown and "(overrides [train].epochs)" in shown


def test_a_path_that_cannot_be_written_is_one_line(synthetic_csv: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # an OSError of a path (a file where a folder is wanted) was a traceback; it is bad input like any other
    from reformer.cli import main

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["import", "--csv", str(synthetic_csv), "--symbol", "BTCUSDT", "--interval", "60",
                 "--db", str(a_file / "k.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "check the path" in err
