"""The layers only look down. `lint-imports` (pyproject.toml `[tool.importlinter]`, run by `make test`) checks the
package; these check what it cannot see: examples/ and benchmarks/, and what importing a layer loads at run time."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SHELL_IMPORT = re.compile(r"\bfrom\s+reformer\.cli\b|\bimport\s+reformer\.cli\b|"
                           r"\bfrom\s+reformer\s+import\s+[^\n;]*\bcli\b")


def _cli_imports(path: Path, root: Path = ROOT) -> list[str]:
    """The imports of `reformer.cli` in one file, function-local ones included, as "path:line"."""
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    if path.suffix != ".py":  # shell scripts: inline Python (`python -m reformer.cli` runs the CLI: fine)
        return [f"{where}:{text.count(chr(10), 0, m.start()) + 1}" for m in _SHELL_IMPORT.finditer(text)]
    found: list[int] = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(name == "reformer.cli" or name.startswith("reformer.cli.") for name in names):
            found.append(node.lineno)
    return [f"{where}:{line}" for line in sorted(found)]


@pytest.mark.parametrize("folder", ["examples", "benchmarks"])
def test_examples_and_benchmarks_do_not_import_the_cli(folder: str) -> None:
    # library code is what they show: what they need from a command belongs in a library module
    files = sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh") and p.is_file())
    assert files, f"no scripts found under {folder}/"
    offenders = [hit for path in files for hit in _cli_imports(path)]
    assert not offenders, f"these import reformer.cli (move what they need into the library): {offenders}"


def test_the_check_sees_function_local_and_from_imports(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text("def main():\n    from reformer.cli.train import register\n\nfrom reformer import cli\n")
    (tmp_path / "probe.sh").write_text('python -m reformer.cli demo\npython -c "import reformer.cli.data"\n')
    assert _cli_imports(script, tmp_path) == ["probe.py:2", "probe.py:4"]
    assert _cli_imports(tmp_path / "probe.sh", tmp_path) == ["probe.sh:2"]


@pytest.mark.parametrize("statement", [
    "import reformer.strategy",
    "from reformer.strategy import BacktestConfig, run_backtest, backtest_positions",
    "from reformer import BacktestConfig, run_backtest",  # the pipelines' run_backtest: torch only for a model
])
def test_the_strategy_layer_loads_no_torch(statement: str) -> None:
    code = f"import sys\n{statement}\nassert 'torch' not in sys.modules, 'torch was loaded'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["fetch", "--help"], ["bench", "compare", "--help"],
                                  ["fake-exchange", "--help"]])
def test_the_command_line_starts_without_torch_or_pandas(argv: list[str]) -> None:
    # every command's module is loaded to build the help, so what they import at the top is paid by every call,
    # `--help` and a mistyped option included: torch and pandas (~2.5 s of a 2-core machine's start) wait for
    # the commands that compute
    code = ("import sys\nfrom reformer.cli import main\ncode = main(sys.argv[1:])\n"
            "heavy = sorted({'torch', 'pandas', 'matplotlib'} & set(sys.modules))\n"
            "assert code == 0 and not heavy, (code, heavy)\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_no_command_function_is_over_60_lines() -> None:
    # commands are thin (parse, build the options, call one pipeline function, print): what decides and runs lives
    # in reformer.pipelines; a command, or a printing helper beside it, that outgrows 60 lines (its signature
    # included) has taken on work of its own
    too_long = [f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
                for path in sorted((ROOT / "src" / "reformer" / "cli").glob("*.py"))
                for node in ast.parse(path.read_text(encoding="utf-8")).body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
                and node.end_lineno - node.lineno + 1 > 60]
    assert not too_long, f"move the work of these into reformer.pipelines: {too_long}"
