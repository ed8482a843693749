"""Only the package's own errors become one line: a `ReformerError` (or an `OSError` about a path) exits 2 with one
line on stderr, while a plain `ValueError` / `TypeError` from library internals is a bug and keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reformer.cli import main
from reformer.errors import ConfigError, DataFormatError, ReformerError, UserInputError, one_line
from reformer.model import ReformerConfig

CANDLES = "timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,4\n1704070800000,1.5,2,1,1.8,3\n"


@pytest.fixture
def candles(tmp_path: Path) -> Path:
    path = tmp_path / "candles.csv"
    path.write_text(CANDLES)
    return path


def _import_argv(candles: Path, tmp_path: Path) -> list[str]:
    return ["import", "--csv", str(candles), "--interval", "60", "--db", str(tmp_path / "klines.sqlite")]


def test_one_line_is_for_the_packages_own_errors_and_paths() -> None:
    assert one_line(ConfigError("--loss 'l3' is invalid: use mse\nmore")) == "--loss 'l3' is invalid: use mse"
    assert one_line(DataFormatError("bad.csv: line 3")) == "bad.csv: line 3"
    assert one_line(FileNotFoundError(2, "No such file or directory", "x.csv")) is not None
    assert one_line(ValueError("operands could not be broadcast together")) is None  # numpy's: a bug
    assert one_line(TypeError("unsupported operand")) is None
    assert one_line(OSError("no path")) is None


def test_config_errors_are_value_errors_for_old_callers() -> None:
    assert issubclass(ConfigError, ReformerError) and issubclass(ConfigError, ValueError)
    assert issubclass(UserInputError, ValueError)
    with pytest.raises(ConfigError, match=r"ReformerConfig\.d_model=0 is invalid") as caught:
        ReformerConfig(d_model=0)
    assert isinstance(caught.value, ValueError)  # `except ValueError` around a config keeps working


def test_an_internal_value_error_propagates_from_the_cli(candles: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import reformer.data.csv_io as csv_io  # `reformer import` reads its file through it, looked up at call time

    def broken(path: object) -> object:
        raise ValueError("internal")

    monkeypatch.setattr(csv_io, "read_klines", broken)
    with pytest.raises(ValueError, match="internal"):  # not swallowed into `error: internal` and exit 2
        main(_import_argv(candles, tmp_path))
    assert "error: internal" not in capsys.readouterr().err


def test_a_config_error_from_the_same_call_is_one_line_and_exit_2(candles: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import reformer.data.csv_io as csv_io  # `reformer import` reads its file through it, looked up at call time

    def refusing(path: object) -> object:
        raise ConfigError("interval 60 does not fit this file\n(detail)")

    monkeypatch.setattr(csv_io, "read_klines", refusing)
    assert main(_import_argv(candles, tmp_path)) == 2
    assert capsys.readouterr().err == "error: interval 60 does not fit this file\n"


def test_the_command_line_shows_the_traceback_of_an_internal_error(candles: Path, tmp_path: Path) -> None:
    script = ("import sys\n"
              "import reformer.data.csv_io as csv_io\n"
              "def broken(path):\n"
              "    raise ValueError('internal')\n"
              "csv_io.read_klines = broken\n"
              "from reformer.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, *_import_argv(candles, tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # Python's own exit for an uncaught exception, not the CLI's 2
    assert "Traceback (most recent call last)" in proc.stderr and "ValueError: internal" in proc.stderr
    assert "error: internal" not in proc.stderr
