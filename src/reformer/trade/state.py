"""A paper-trading run's whole state in one SQLite file (`--state DIR` holds `state.sqlite`).

    meta         key -> JSON: the run's settings (symbols, interval, category, checkpoint, BacktestConfig)
    candles      every processed candle per symbol: OHLCV, the mark candle, the funding settled at its open and
                 inside it, in processing order (`step`, the merged time's number)
    predictions  per symbol and candle: the model's prediction, its confidence and the target position decided
                 at that candle's close (filled at the next open)
    trades       closed round trips, as the backtest's trade table
    equity       per merged time: the account's equity and each symbol's units at the close
    engine       one row: the engine's snapshot (`reformer.strategy.engine.Engine.snapshot`) after the last step

A candle's processing is one transaction: its row, the engine step, the trades it closed, the equity and the
snapshot, the prediction and the target. A process killed at any moment leaves the state as it was after the last
whole candle, and a restart resumes from there. The file is written by one trader at a time and read by any
number of readers (the dashboard, `reformer trade report`), which WAL mode lets run beside the writer.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataFormatError, UserInputError

__all__ = ["STATE_FILE", "PaperState", "check_state_dir", "state_path"]

STATE_FILE = "state.sqlite"
_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, start_time INTEGER NOT NULL, step INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    turnover REAL, mark_open REAL, mark_high REAL, mark_low REAL, mark_close REAL,
    funding_open REAL NOT NULL DEFAULT 0, funding_inside REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, start_time));
CREATE TABLE IF NOT EXISTS predictions (
    symbol TEXT NOT NULL, start_time INTEGER NOT NULL, prediction REAL, confidence REAL, target REAL NOT NULL,
    attention TEXT, PRIMARY KEY (symbol, start_time));
CREATE TABLE IF NOT EXISTS trades (
    id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, entry_time INTEGER NOT NULL, exit_time INTEGER NOT NULL,
    side TEXT NOT NULL, units REAL NOT NULL, entry_price REAL NOT NULL, exit_price REAL NOT NULL, pnl REAL NOT NULL,
    return REAL NOT NULL, fees REAL NOT NULL, funding REAL NOT NULL, exit_reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS equity (
    step INTEGER PRIMARY KEY, time INTEGER NOT NULL, equity REAL NOT NULL, units TEXT NOT NULL,
    exposed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS engine (id INTEGER PRIMARY KEY CHECK (id = 1), snapshot TEXT NOT NULL);
"""


def state_path(directory: str | os.PathLike[str]) -> Path:
    """The state file of a `--state` folder."""
    return Path(directory) / STATE_FILE


def check_state_dir(directory: str | os.PathLike[str]) -> Path:
    """`directory` as a `--state` folder: absent (the trader creates it) or a folder, never a file, nor inside one.

    Raises:
        UserInputError: one line naming the file in the way.
    """
    folder = Path(directory)
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise UserInputError(f"{path} is a file: --state must be a folder (a new one, or a run's state)")
            break
    return folder


class PaperState:
    """The state file, opened for the trader (`writable=True`: created if missing) or for reading."""

    def __init__(self, directory: str | os.PathLike[str], *, writable: bool = False) -> None:
        check_state_dir(directory)
        self.path = state_path(directory)
        if not writable and not self.path.is_file():
            raise UserInputError(f"{Path(directory)} holds no paper-trading state ({STATE_FILE}): start one with "
                                 "`reformer trade --paper --state DIR ...`")
        if writable:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=FULL")  # a committed candle survives a power cut too
            self.connection.executescript(_SCHEMA)
        else:
            self.connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                              timeout=30.0)
        self.connection.row_factory = sqlite3.Row

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PaperState:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One candle's writes: all of them or none."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # ---- settings -------------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any] | None:
        """The run's settings, or None for a new state."""
        row = self.connection.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            return None
        settings: dict[str, Any] = json.loads(row["value"])
        if settings.get("version") != _VERSION:
            raise DataFormatError(f"{self.path}: state version {settings.get('version')!r} is not {_VERSION}; start a "
                                  "new state folder")
        return settings

    def save_settings(self, settings: Mapping[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('settings', ?)",
                       (json.dumps({**settings, "version": _VERSION}, sort_keys=True),))

    # ---- what a candle's transaction writes -----------------------------------------------------------------
    @staticmethod
    def write_candle(db: sqlite3.Connection, symbol: str, step: int, row: Sequence[Any]) -> None:
        """`row`: start_time, open, high, low, close, volume, turnover, mark o/h/l/c, funding at open, inside."""
        db.execute("INSERT INTO candles (symbol, start_time, step, open, high, low, close, volume, turnover, "
                   "mark_open, mark_high, mark_low, mark_close, funding_open, funding_inside) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (symbol, row[0], step, *row[1:]))

    @staticmethod
    def write_prediction(db: sqlite3.Connection, symbol: str, start_time: int, prediction: float | None,
                         confidence: float | None, target: float, attention: Sequence[float] | None) -> None:
        db.execute("INSERT INTO predictions (symbol, start_time, prediction, confidence, target, attention) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (symbol, start_time, prediction, confidence, target,
                                                 None if attention is None else json.dumps(list(attention))))

    @staticmethod
    def write_trades(db: sqlite3.Connection, trades: pd.DataFrame) -> None:
        columns = ["symbol", "entry_time", "exit_time", "side", "units", "entry_price", "exit_price", "pnl", "return",
                   "fees", "funding", "exit_reason"]
        for row in trades[columns].itertuples(index=False, name=None):
            db.execute("INSERT INTO trades (symbol, entry_time, exit_time, side, units, entry_price, exit_price, "
                       "pnl, return, fees, funding, exit_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (row[0], _ms(row[1]), _ms(row[2]), *row[3:]))

    @staticmethod
    def write_step(db: sqlite3.Connection, step: int, time_ms: int, equity: float, units: Mapping[str, float],
                   exposed: Mapping[str, bool], snapshot: Mapping[str, Any]) -> None:
        db.execute("INSERT INTO equity (step, time, equity, units, exposed) VALUES (?, ?, ?, ?, ?)",
                   (step, time_ms, equity, json.dumps(dict(units)), json.dumps(dict(exposed))))
        db.execute("INSERT OR REPLACE INTO engine (id, snapshot) VALUES (1, ?)", (json.dumps(snapshot),))

    # ---- reading ----------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any] | None:
        row = self.connection.execute("SELECT snapshot FROM engine WHERE id = 1").fetchone()
        return None if row is None else dict(json.loads(row["snapshot"]))

    def last_step(self) -> int:
        """The number of merged times processed so far."""
        row = self.connection.execute("SELECT MAX(step) AS step FROM equity").fetchone()
        return -1 if row["step"] is None else int(row["step"])

    def last_candle(self, symbol: str) -> int | None:
        """Open time (epoch ms) of the symbol's last processed candle."""
        row = self.connection.execute("SELECT MAX(start_time) AS t FROM candles WHERE symbol = ?", (symbol,)).fetchone()
        return None if row["t"] is None else int(row["t"])

    def candles(self, symbol: str) -> pd.DataFrame:
        """The symbol's processed candles (timestamp in epoch ms, OHLCV, turnover, mark_*, funding_*), in order."""
        frame = pd.read_sql_query("SELECT * FROM candles WHERE symbol = ? ORDER BY start_time", self.connection,
                                  params=(symbol,))
        return frame.rename(columns={"start_time": "timestamp"}).drop(columns=["symbol"])

    def predictions(self, symbol: str) -> pd.DataFrame:
        """timestamp (the candle at whose close it was made), prediction, confidence, target."""
        frame = pd.read_sql_query("SELECT start_time AS timestamp, prediction, confidence, target FROM predictions "
                                  "WHERE symbol = ? ORDER BY start_time", self.connection, params=(symbol,))
        return frame

    def latest_prediction(self, symbol: str) -> dict[str, Any] | None:
        """The newest prediction with its confidence, target and attention weights (the last position's, over
        the window's bars), or None."""
        row = self.connection.execute("SELECT * FROM predictions WHERE symbol = ? ORDER BY start_time DESC LIMIT 1",
                                      (symbol,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["attention"] = None if row["attention"] is None else json.loads(row["attention"])
        return out

    def trades(self) -> pd.DataFrame:
        """Closed round trips (times as epoch ms)."""
        return pd.read_sql_query("SELECT * FROM trades ORDER BY id", self.connection).drop(columns=["id"])

    def equity(self) -> pd.DataFrame:
        """Per merged time: time (epoch ms), equity, units (per symbol), exposed (per symbol)."""
        frame = pd.read_sql_query("SELECT * FROM equity ORDER BY step", self.connection)
        frame["units"] = frame["units"].map(json.loads)
        frame["exposed"] = frame["exposed"].map(json.loads)
        return frame

    def latest_equity(self) -> dict[str, Any] | None:
        """The last step's row (step, time, equity, units, exposed), or None before the first: one row, so a
        page can poll it every second."""
        row = self.connection.execute("SELECT * FROM equity ORDER BY step DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return {**dict(row), "units": json.loads(row["units"]), "exposed": json.loads(row["exposed"])}


def _ms(value: Any) -> int:
    return int(pd.Timestamp(value).value // 1_000_000)
