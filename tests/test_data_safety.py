"""Stores in places that cannot be written: a read-only folder, a read-only store file, a store whose folder is
read-only. Each ends in one line on stderr with exit code 2 (reads working where SQLite allows them), and the
store is left as it was.

The tests may run as root, which writes through any chmod (CAP_DAC_OVERRIDE). So the commands run in a forked
child that drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from all its capability sets: it stays uid 0 (it still
reads the interpreter's files under /root) but meets permission bits like any other owner, and `os.access`
agrees with what `open` then does. As an ordinary user the child just runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import pickle
import stat
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from reformer.api import FakeExchange, Kline
from reformer.cli import main
from reformer.data.csv_io import read_klines, write_klines
from reformer.data.store import KlineStore

KEY = ("linear", "BTCUSDT", "60")
FIX = "choose another --db or fix its permissions"
T = TypeVar("T")


class _NoPermissionModel(Exception):
    """Permission bits cannot be made to bind in this process (the reason is the skip message)."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_dac_capabilities() -> None:
    """Remove CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from this process for good."""
    if not sys.platform.startswith("linux"):
        raise _NoPermissionModel("running as root off Linux: chmod does not stop root's writes here")
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise _NoPermissionModel(f"capget failed: {os.strerror(ctypes.get_errno())}")
    keep = ~((1 << 1) | (1 << 2)) & 0xFFFF_FFFF
    data[0].effective &= keep
    data[0].permitted &= keep  # access() checks root against its permitted set
    data[0].inheritable &= keep
    if libc.capset(ctypes.byref(header), data) != 0:
        raise _NoPermissionModel(f"capset failed: {os.strerror(ctypes.get_errno())}")


def unprivileged(work: Callable[[], T]) -> T:
    """`work()` run in a forked child that permission bits bind (see the module's notes); its result comes back
    pickled. A child that cannot drop root's override skips the test, naming why."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            try:
                if os.geteuid() == 0:
                    _drop_dac_capabilities()
                answer: tuple[str, object] = ("ok", work())
            except _NoPermissionModel as exc:
                answer = ("skip", str(exc))
            except BaseException:
                answer = ("error", traceback.format_exc())
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(answer, pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        pytest.fail("the unprivileged child died before answering")
    kind, value = pickle.loads(data)
    if kind == "skip":
        pytest.skip(str(value))
    if kind == "error":
        pytest.fail(f"the command raised instead of exiting 2 with one line:\n{value}")
    return value  # type: ignore[no-any-return]


def cli(*args: object) -> tuple[int, str, str]:
    """`reformer ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """chmod a-w for the block, restored after (so tmp_path can be cleaned up)."""
    modes = [path.stat().st_mode for path in paths]
    for path, mode in zip(paths, modes, strict=True):
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield
    finally:
        for path, mode in zip(paths, modes, strict=True):
            path.chmod(mode)


@pytest.fixture(scope="module")
def fake(synthetic_year: list[Kline]) -> Iterator[FakeExchange]:
    with FakeExchange({KEY: synthetic_year[:100]}) as served:
        yield served


def fetch_args(fake: FakeExchange, db: Path) -> list[object]:
    return ["fetch", "--symbol", "BTCUSDT", "--interval", "60", "--limit", 5, "--base-url", fake.base_url, "--db", db]


@pytest.mark.parametrize("below", ["k.sqlite", "new/k.sqlite"])
def test_fetch_into_a_read_only_folder_is_one_line(tmp_path: Path, fake: FakeExchange, below: str) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        code, _, err = unprivileged(lambda: cli(*fetch_args(fake, folder / below)))
    assert code == 2, err
    assert err.startswith(f"error: the folder {folder} is not writable") and err.endswith(f": {FIX}\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(folder.iterdir()) == []


def test_a_read_only_store_is_read_but_never_written(tmp_path: Path, fake: FakeExchange,
                                                     synthetic_year: list[Kline]) -> None:
    db = tmp_path / "k.sqlite"
    with KlineStore(db) as store:
        store.upsert(*KEY, synthetic_year[:10])
    csv = tmp_path / "more.csv"
    write_klines(synthetic_year[10:12], csv)
    out = tmp_path / "out.csv"
    before = digest(db)

    def attempts() -> list[object]:
        results: list[object] = [
            cli("export", "--symbol", "BTCUSDT", "--interval", "60", "--db", db, "--out", out),
            cli(*fetch_args(fake, db)),
            cli("import", "--csv", csv, "--symbol", "BTCUSDT", "--interval", "60", "--db", db)]
        with KlineStore(db) as opened:
            return [(opened.read_only, len(opened.load(*KEY))), *results]

    with read_only(db):
        seen, exported, *writes = unprivileged(attempts)
    assert seen == (True, 10)
    assert exported[0] == 0 and read_klines(out) == synthetic_year[:10], exported
    for code, _, err in writes:
        assert (code, err) == (2, f"error: the store {db} is read-only: {FIX}\n")
    assert digest(db) == before


def test_a_store_in_a_read_only_folder_says_why_it_cannot_be_read(tmp_path: Path, fake: FakeExchange,
                                                                  synthetic_year: list[Kline]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "k.sqlite"
    with KlineStore(db) as store:
        store.upsert(*KEY, synthetic_year[:10])
    assert sorted(p.name for p in folder.iterdir()) == ["k.sqlite"], "closing removes the -wal and -shm files"
    before = digest(db)

    def attempts() -> list[tuple[int, str, str]]:
        return [cli("export", "--symbol", "BTCUSDT", "--interval", "60", "--db", db, "--out", tmp_path / "out.csv"),
                cli(*fetch_args(fake, db))]

    with read_only(folder):
        results = unprivileged(attempts)
    for code, _, err in results:
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: the store {db} is read-only and SQLite cannot read it there: it needs to "
                              f"create k.sqlite-shm in {folder}, which is not writable"), err
    assert digest(db) == before and not (tmp_path / "out.csv").exists()
