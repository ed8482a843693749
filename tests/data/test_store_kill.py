"""A writer killed with SIGKILL in the middle of a long run of page upserts leaves whole pages only.

A real child process stores pages into a temporary database and announces each page before storing it; the
test kills it at a seeded-random point, reopens the file and checks: every page is there completely or not at
all, no candle is duplicated, the stored values are exact, and storing the missing pages completes the source.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reformer.api.types import Kline
from reformer.data.store import KlineStore

SRC = Path(__file__).resolve().parents[2] / "src"
KEY = ("linear", "BTCUSDT", "1")

# Shared by the child and this test (exec'd in both), so both build byte-identical pages.
PAGES_SOURCE = '''
PAGE_SIZE, PAGE_COUNT, MINUTE = 500, 60, 60_000

def page(index):
    rows = []
    for offset in range(PAGE_SIZE):
        i = index * PAGE_SIZE + offset
        low = 20_000.0 + (i * 7919 % 10_007) / 3.0
        rows.append((i * MINUTE, low + 1.0 / 3.0, low + 10.0 / 7.0, low, low + 2.0 / 9.0, i / 11.0, i * 1.1))
    return rows
'''

CHILD = '''
import sys, time, types
src, db, mode = sys.argv[1], sys.argv[2], sys.argv[4]
# A bare package object stands in for reformer/__init__.py, so the child skips importing torch (seconds).
package = types.ModuleType("reformer")
package.__path__ = [src + "/reformer"]
sys.modules["reformer"] = package
from reformer.data.store import KlineStore
exec(sys.argv[3])


class HoldBeforeCommit:
    # Wraps the store's connection: on the chosen page it stops just before COMMIT, transaction open.
    def __init__(self, connection, page):
        self.connection, self.page, self.current = connection, page, -1

    def __getattr__(self, name):
        return getattr(self.connection, name)

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.current == self.page:
            print("holding", flush=True)
            time.sleep(60)
        return self.connection.execute(sql, *args)


with KlineStore(db) as store:
    if mode != "random":
        # A tiny page cache makes SQLite spill the open transaction into the WAL file before COMMIT,
        # so recovery must actively discard uncommitted frames, not just never see them.
        store._conn.execute("PRAGMA cache_size=5")
        store._conn = HoldBeforeCommit(store._conn, int(mode))
    for index in range(PAGE_COUNT):
        if mode != "random":
            store._conn.current = index
        print(index, flush=True)
        store.upsert("linear", "BTCUSDT", "1", page(index))
    print("done", flush=True)
'''

_pages: dict[str, object] = {}
exec(PAGES_SOURCE, _pages)
PAGE_SIZE: int = _pages["PAGE_SIZE"]  # type: ignore[assignment]
PAGE_COUNT: int = _pages["PAGE_COUNT"]  # type: ignore[assignment]


def page(index: int) -> list[Kline]:
    return [Kline(*row) for row in _pages["page"](index)]  # type: ignore[operator]


def run_and_kill(db: Path, mode: str, signal_line: str, delay_s: float) -> None:
    """Start the writer, wait for `signal_line` on its stdout, wait `delay_s`, SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(SRC), str(db), PAGES_SOURCE, mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == signal_line:
                break
        else:
            pytest.fail(f"child ended early: {child.stderr.read() if child.stderr else ''}")
        time.sleep(delay_s)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL


def check_whole_pages_then_complete(db: Path, pages_at_least: int) -> int:
    """Reopen after the kill; check whole pages only, exact values; store the rest. Returns pages found."""
    with KlineStore(db) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = store.load(*KEY)
        starts = [kline.start_time for kline in stored]
        assert len(starts) == len(set(starts)), "duplicate candles"
        assert len(stored) % PAGE_SIZE == 0, f"partial page: {len(stored)} rows"
        pages_done = len(stored) // PAGE_SIZE
        assert pages_at_least <= pages_done < PAGE_COUNT  # killed mid-run, after the announced page began
        assert stored == [kline for index in range(pages_done) for kline in page(index)]

        for index in range(pages_done, PAGE_COUNT):
            assert store.upsert(*KEY, page(index)) == PAGE_SIZE
        assert store.load(*KEY) == [kline for index in range(PAGE_COUNT) for kline in page(index)]
        assert store.gaps(*KEY) == []
    return pages_done


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_moment_leaves_whole_pages(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    kill_after_page = rng.randrange(3, PAGE_COUNT // 3)
    # About half of the writer's time is spent inside a transaction, so a random instant often lands in one.
    run_and_kill(tmp_path / "klines.sqlite", "random", str(kill_after_page), rng.uniform(0.0, 0.01))
    check_whole_pages_then_complete(tmp_path / "klines.sqlite", kill_after_page)


def test_sigkill_with_a_spilled_transaction_open_drops_that_page(tmp_path: Path) -> None:
    db = tmp_path / "klines.sqlite"
    run_and_kill(db, "7", "holding", 0.0)  # page 7 fully written into the WAL, COMMIT not reached
    assert check_whole_pages_then_complete(db, 7) == 7
