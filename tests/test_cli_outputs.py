"""Every command that writes an --out result file refuses to replace one unasked, checks before the work (a
benchmark or a training that ran for an hour must not end in a refusal), and never writes through a link."""

from __future__ import annotations

from pathlib import Path

import pytest

from reformer.cli import main

COMMANDS = {
    "evaluate": ["evaluate", "--csv", "missing.csv"],
    "export": ["export", "--interval", "60", "--db", "missing.sqlite"],
    "bench attention": ["bench", "attention", "--lengths", "64"],
    "bench compare": ["bench", "compare", "--lengths", "64"],
    "bench attention-scaling": ["bench", "attention-scaling", "--lengths", "64"],
    "bench targets": ["bench", "targets"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_an_existing_out_file_is_refused_before_any_work(name: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    out.write_text("earlier result")
    assert main([*COMMANDS[name], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} exists: pass --force" in err, err  # not "missing.csv" nor a run
    assert out.read_text() == "earlier result"


@pytest.mark.parametrize("name", ["evaluate", "export", "bench targets"])
def test_a_symbolic_link_is_refused_even_with_force(name: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    link = tmp_path / "result.json"
    link.symlink_to(precious)
    assert main([*COMMANDS[name], "--out", str(link), "--force"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert precious.read_text() == "keep me" and link.is_symlink()


def test_force_lets_the_command_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    out.write_text("earlier result")
    assert main([*COMMANDS["export"], "--out", str(out), "--force"]) == 2  # past the check: the store is missing
    assert "no kline store" in capsys.readouterr().err
