"""A command's output files: no silent overwrite, never through a symbolic link.

A command that writes `--out FILE` (or files inside `--out DIR`) checks its targets before any work is done
(`check_output_file`, `check_output_dir`): an existing file is replaced only with `--force`, and a symbolic link is
refused even then, because writing through it would change a file elsewhere (a link planted in a shared report
folder could point at anything the user may write). The files are then written with `files.atomic_write`, which
refuses a link made after the check too; `atomic_write_as` is that for writers that choose the format by the
file's suffix (matplotlib's `savefig`). Stdlib only: every layer may use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import UserInputError
from .files import atomic_write

__all__ = ["atomic_write_as", "check_output_dir", "check_output_file"]


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise UserInputError(f"{path} is a symbolic link: refusing to write through it (even with --force); remove "
                             "the link or choose another path")


def check_output_file(path: str | os.PathLike[str], force: bool, option: str = "--out") -> Path:
    """`path` as a file the command may write: absent, or an existing file with `force`; never a link or a folder.

    Raises:
        UserInputError: one line naming the path and the way out.
    """
    target = Path(path)
    _refuse_link(target)
    if target.is_dir():
        raise UserInputError(f"{target} is a folder: give {option} a file path")
    if target.exists() and not force:
        raise UserInputError(f"{target} exists: pass --force to replace it, or choose another {option}")
    return target


def check_output_dir(folder: str | os.PathLike[str], names: Iterable[str], force: bool,
                     option: str = "--out") -> Path:
    """`folder` as a folder the command may write `names` into: absent or empty, or any folder with `force`; the
    folder and each of the files it will write must not be links, and none of those files may be a folder.

    Raises:
        UserInputError: one line naming the path and the way out.
    """
    target = Path(folder)
    _refuse_link(target)
    if target.exists() and not target.is_dir():
        raise UserInputError(f"{target} is a file: give {option} a folder (new or empty)")
    if not target.exists():
        return target
    for name in names:
        inside = target / name
        _refuse_link(inside)
        if inside.is_dir():
            raise UserInputError(f"{inside} is a folder where the report writes a file: remove it or choose another "
                                 f"{option}")
    if not force and any(target.iterdir()):
        raise UserInputError(f"{target} is not empty: pass --force to replace its report files, or choose a new or "
                             f"empty {option} folder")
    return target


def atomic_write_as(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """`files.atomic_write`, but `write` is given a temporary path that ends in `path`'s suffix (".png"), for a
    writer that picks the format by it; returns `path`."""
    target = Path(path)

    def named(temp: Path) -> None:
        suffixed = temp.with_name(temp.name + target.suffix)
        try:
            write(suffixed)
            os.replace(suffixed, temp)
        finally:
            suffixed.unlink(missing_ok=True)

    return atomic_write(target, named)
