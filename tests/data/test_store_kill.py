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
import sys, types
src, db = sys.argv[1], sys.argv[2]
# A bare package object stands in for reformer/__init__.py, so the child skips importing torch (seconds).
package = types.ModuleType("reformer")
package.__path__ = [src + "/reformer"]
sys.modules["reformer"] = package
from reformer.data.store import KlineStore
exec(sys.argv[3])
with KlineStore(db) as store:
    for index in range(PAGE_COUNT):
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_during_upserts_leaves_whole_pages(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "klines.sqlite"
    kill_after_page = rng.randrange(3, PAGE_COUNT // 3)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(SRC), str(db), PAGES_SOURCE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == str(kill_after_page):
                break
        else:
            pytest.fail(f"child ended early: {child.stderr.read() if child.stderr else ''}")
        time.sleep(rng.uniform(0.0, 0.01))  # land somewhere inside (or between) the next upserts
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    with KlineStore(db) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = store.load(*KEY)
        starts = [kline.start_time for kline in stored]
        assert len(starts) == len(set(starts)), "duplicate candles"
        assert len(stored) % PAGE_SIZE == 0, f"partial page: {len(stored)} rows"
        pages_done = len(stored) // PAGE_SIZE
        assert kill_after_page <= pages_done < PAGE_COUNT  # killed mid-run, after the announced page began
        assert stored == [kline for index in range(pages_done) for kline in page(index)]

        for index in range(pages_done, PAGE_COUNT):
            assert store.upsert(*KEY, page(index)) == PAGE_SIZE
        assert store.load(*KEY) == [kline for index in range(PAGE_COUNT) for kline in page(index)]
        assert store.gaps(*KEY) == []
