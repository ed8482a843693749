"""The files a command writes: atomic replacement, and no silent overwrite or write through a link; no torch.

The content goes to a temporary file in the target's own folder (same file system, so the rename is atomic), is
flushed to disk, and is renamed over the target with `os.replace`: a crash or an error leaves either the old file
or the complete new one, never half of it, and no temporary file behind. Missing folders are created. A new
file gets mode 0644; a replaced one keeps its mode.

A symbolic link is refused rather than replaced (the rename would swap the link for a plain file and leave its
target stale) or followed (a write through a link lands somewhere the caller did not name).

A command that writes `--out FILE` (or files inside `--out DIR`) checks its targets before any work is done
(`check_output_file`, `check_output_dir`): an existing file is replaced only with `--force`, and a symbolic link is
refused even then, because writing through it would change a file elsewhere.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import UserInputError

__all__ = ["IMAGE_SUFFIXES", "atomic_write", "atomic_write_bytes", "atomic_write_text", "check_image_file",
           "check_output_dir", "check_output_file"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Replace `path` atomically with what `write(temporary_path)` writes.

    Args:
        path: the target file; its folder is created if missing.
        write: writes the whole content to the path it is given (e.g. `frame.to_csv`, `save_file`).

    Returns:
        The target path.

    Raises:
        UserInputError: `path` is a symbolic link or a folder.
        Whatever `write` raises (the old file, if any, is then untouched and the temporary file removed).
    """
    path = Path(path)
    if path.is_symlink():
        raise UserInputError(f"{path} is a symbolic link: refusing to write through it; give the path of a "
                             "regular file (or remove the link)")
    if path.is_dir():
        raise UserInputError(f"{path} is a folder: name a file inside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name ends in the target's suffix, for writers that choose the format by it (matplotlib)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        # mkstemp makes the file private (0600); a written file should get ordinary permissions, or keep the old ones.
        os.chmod(temp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with open(temp, "rb") as written:
            os.fsync(written.fileno())  # the data must be on disk before the rename makes it visible
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Replace `path` atomically with `text` (see `atomic_write`)."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding=encoding))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace `path` atomically with `data` (see `atomic_write`)."""
    return atomic_write(path, lambda temp: temp.write_bytes(data))


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


IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".eps", ".ps")
"""Endings a plot may be written under: matplotlib picks the image format by the file name's ending."""


def check_image_file(path: str | os.PathLike[str], force: bool, option: str = "--plot") -> Path:
    """`check_output_file`, and a name whose ending says an image format matplotlib writes (checked before the
    work: matplotlib would refuse only once the plot is drawn, naming its temporary file).

    Raises:
        UserInputError: one line naming the path and the way out.
    """
    target = check_output_file(path, force, option)
    if target.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserInputError(f"{option} {target}: a plot is an image; end the name in .png (or .pdf, .svg, .jpg)")
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
