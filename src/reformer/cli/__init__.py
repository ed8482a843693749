"""The `reformer` command line: thin commands over the library; errors become one line on stderr.

Each command module exposes `register(app)`; the list below wires them in. `reformer` (or a group such as
`reformer bench`) without a command prints its help and exits 0.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

# Before torch is imported (the command modules import it): torch's CPU allocator then backs allocations of 2 MiB
# and more with transparent huge pages (PyTorch's opt-in `THP_MEM_ALLOC_ENABLE`). Tensors above glibc's 32 MiB
# mmap ceiling are otherwise page-faulted in 4 KiB at a time on every allocation; see `reformer.runtime`.
# Inherited by the benchmark workers, so every implementation they run gets it alike.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import typer

from . import backtest, bench, bench_compare, dashboard, data, demo, evaluate, fake, trade, train
from .common import App

__all__ = ["app", "main", "version"]

app = App(
    name="reformer",
    help="Reformer (LSH attention, reversible layers) for long-sequence crypto forecasting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (backtest, bench, bench_compare, dashboard, data, demo, evaluate, fake, trade, train):
    _module.register(app)


def version() -> str:
    """The installed distribution's version (`reformer.__version__` when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("reformer-crypto")
    except PackageNotFoundError:
        import reformer

        return str(getattr(reformer, "__version__", "unknown"))


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"reformer-crypto {version()}")
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                               callback=_print_version)] = False,
) -> None:
    del show_version  # handled by its callback, before any command runs


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input (`errors.one_line`: a `ReformerError` or a path's `OSError`) exits 2 with one line on
    stderr. Anything else (a plain `ValueError` from numpy or torch is a bug) propagates with its traceback."""
    from ..errors import one_line
    from ..runtime import tune_malloc

    tune_malloc()  # keep freed blocks in the heap: long sequences otherwise page-fault every temporary
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            returned = app(args=argv, prog_name="reformer", standalone_mode=False)
        if returned == 130:  # typer answers Ctrl-C inside a command with 130 instead of raising
            print("interrupted", file=sys.stderr)
            return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `reformer`, `reformer bench`: the help, already printed
            return 0
        message = one_line(exc)  # bad input: a ReformerError or a path's OSError
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return 2
        # usage errors of the click layer typer ships: one line, exit 2
        format_message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if callable(format_message) and isinstance(exit_code, int):
            print(f"error: {format_message()} (see `reformer --help`)", file=sys.stderr)
            return exit_code
        if type(exc).__name__ == "Abort":
            return 1
        raise
    return 0


_PACKAGE = str(Path(__file__).resolve().parent.parent)
_default_show = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """The project's own warnings (a gap left out of the windows, ...) as one `warning: ...` line, like its
    errors; a library's keep Python's format, whose source line says where they come from."""
    if filename.startswith(_PACKAGE):
        print(f"warning: {message}", file=sys.stderr if file is None else file)
    else:
        _default_show(message, category, filename, lineno, file, line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
