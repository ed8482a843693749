"""Where the kline store lives and whether it may be written: its path, its folder, and what SQLite refusing
the file means for the user (permissions, a read-only place, or not a kline store at all)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import DataFormatError, UserInputError

FIX_PERMISSIONS = "choose another --db or fix its permissions"


def resolve_path(path: str | os.PathLike[str] | None, default: Path) -> Path:
    """`path`, else `$REFORMER_DB`, else `default`, with `~` expanded; a folder is refused."""
    if path is None:
        path = os.environ.get("REFORMER_DB") or default
    resolved = Path(path).expanduser()
    if resolved.is_dir():
        raise UserInputError(f"path={str(resolved)!r} is a folder; pass a database file, e.g. "
                             f"{resolved / 'klines.sqlite'}")
    return resolved


def make_folder(folder: Path) -> None:
    """Create the store's folder, or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise UserInputError(f"{existing} is a file, not a folder: check the path or choose another --db") from None
        # no permission, or a read-only filesystem
        raise UserInputError(f"the folder {existing} is not writable ({exc.strerror}): {FIX_PERMISSIONS}") from None


def writable(path: Path) -> bool:
    """Whether SQLite can write the store: the file, and its folder (for the -wal and -shm files a write
    creates) unless those exist and are writable."""
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    return os.access(path, os.W_OK) and (os.access(path.parent, os.W_OK)
                                         or all(os.access(p, os.W_OK) for p in sidecars))


def open_error(path: Path, read_only: bool, exc: sqlite3.DatabaseError) -> UserInputError:
    """What SQLite refusing the file means for the user: permissions, or not a kline store."""
    if not getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        return DataFormatError(f"database {str(path)!r} is not a reformer kline store ({exc}); "
                               "pass another path (--db / REFORMER_DB) or move the file away")
    if not read_only:
        return UserInputError(f"the store {path} cannot be opened for writing ({exc}): {FIX_PERMISSIONS}")
    # SQLite reads a WAL database only through its -shm index, which it creates beside the file when missing.
    return UserInputError(f"the store {path} is read-only and SQLite cannot read it there: it needs to "
                          f"create {path.name}-shm in {path.parent}, which is not writable; copy the "
                          "store to a writable folder or fix the folder's permissions")
