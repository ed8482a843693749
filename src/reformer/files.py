"""Atomic file writes: the one way this package replaces a file (exports, checkpoints, training logs); no torch.

The content goes to a temporary file in the target's own folder (same file system, so the rename is atomic), is
flushed to disk, and is renamed over the target with `os.replace`: a crash or an error leaves either the old file
or the complete new one, never half of it, and no temporary file behind. Missing folders are created. A new
file gets mode 0644; a replaced one keeps its mode.

A symbolic link is refused rather than replaced (the rename would swap the link for a plain file and leave its
target stale) or followed (a write through a link lands somewhere the caller did not name).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UserInputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


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
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
