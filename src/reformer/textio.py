"""What every reader of user CSV files (`data.csv_io`, `data.timeseries`, `strategy.io`, `predictions`) shares;
pandas, no torch.

The dialect (`header_separator`, `header_names`), the file checks (`check_csv_file`: a folder or a missing file
named as such; `binary_file_problem`, `first_non_utf8_line`: a file that is not UTF-8 text named as what it is), and
the cell validators (`finite_cells`, `epoch_ms_cells`), so a bad cell reads the same whichever file it is in:
"FILE: line 7, column 'close': 'abc' is not a finite number; fix or delete that row". Lines are numbered as an
editor shows them (the header is line 1); a `where` callable names rows of other sources ("row 6" of a frame).

Spreadsheets in many locales save "CSV" with semicolons (the comma being the decimal mark) or tabs. Read with
pandas' default comma, such a file is one column whose name is the whole header line, and the reader's error
("no time column (found: timestamp;open;...)") names the wrong problem. The separator is taken from the header.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .api.intervals import epoch_in_seconds
from .errors import DataFormatError, UserInputError

__all__ = ["Where", "binary_file_problem", "check_csv_file", "epoch_ms_cells", "file_line", "finite_cells",
           "first_non_utf8_line", "header_names", "header_separator", "show_cell"]

Where = Callable[[int], str]
"""Position (index label) of a data row -> where it is, for messages: "line 7", "row 6"."""

_ALTERNATIVES = (";", "\t")


def header_separator(path: str | os.PathLike[str]) -> str:
    """The field separator of a CSV: a comma, unless the header line has none and has semicolons or tabs."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            header = handle.readline()
    except OSError:
        return ","  # the caller's read reports the problem
    if "," in header:
        return ","
    return next((sep for sep in _ALTERNATIVES if sep in header), ",")


def header_names(path: str | os.PathLike[str], separator: str) -> list[str]:
    """The header row's cells as the file writes them (a byte-order mark and blanks after a separator dropped, as
    pandas reads them), repeats included: pandas renames a repeated name ("OT", "OT.1"), so its columns cannot
    tell a repeat from a column really named "OT.1". Empty for an empty file."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle, delimiter=separator, skipinitialspace=True), [])


# a file that starts like one of these is no text at all: named as what it is, since a decoding error is no help
_BINARY_KINDS = ((b"PAR1", "a Parquet file, but this command reads CSV only; export it as CSV"),
                 (b"PK\x03\x04", "a zip archive (an Excel workbook?), not CSV text; export it as CSV (UTF-8)"),
                 (b"\xff\xfe", "UTF-16 text, not UTF-8; re-save it as UTF-8 CSV"),
                 (b"\xfe\xff", "UTF-16 text, not UTF-8; re-save it as UTF-8 CSV"))


def binary_file_problem(path: str | os.PathLike[str]) -> str | None:
    """What a file is when its first bytes show it is no UTF-8 text (Parquet, zip/Excel, UTF-16, any file with NUL
    bytes), as "what it is; the fix" for "{path} is {problem}"; None for a file that may be text (or is unreadable:
    the caller's read reports that)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    kind = next((problem for magic, problem in _BINARY_KINDS if head.startswith(magic)), None)
    if kind is None and b"\x00" in head:  # UTF-8 text never holds NUL; UTF-16 without a byte-order mark does
        kind = "not UTF-8 text (it holds NUL bytes: UTF-16 or a binary file); re-save it as UTF-8 CSV"
    return kind


def first_non_utf8_line(path: str | os.PathLike[str]) -> int | None:
    """The 1-based line of the first bytes that are not UTF-8 (a Latin-1 or Windows-1252 export), or None.

    A multi-byte UTF-8 character never holds the newline byte, so decoding line by line is exact.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def file_line(position: int) -> str:
    """The editor line of the data row at 0-based `position` under a one-line header: "line {position + 2}"."""
    return f"line {position + 2}"


def check_csv_file(path: str | os.PathLike[str], fix: str = "check the path") -> Path:
    """`path` as a Path when it is a file; else a `UserInputError`: a folder is named as one ("X is a folder:
    give the CSV file inside it"), anything else is "X: no such file; {fix}"."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{path} is a folder: give the CSV file inside it")
    if not path.is_file():
        raise UserInputError(f"{path}: no such file; {fix}")
    return path


def show_cell(value: object) -> str:
    """A cell as messages show it: "empty" for blank text, "empty (or NaN)" for a missing value (pandas reads a
    blank cell and "nan" alike), other text quoted (blanks and stray characters visible), numbers (numpy scalars
    too, and text that spells one, as a reader of text cells has it) plain."""
    if isinstance(value, str):
        if not value.strip():
            return "empty"
        try:
            float(value)
        except ValueError:
            return repr(value)
        return value.strip()
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return "empty (or NaN)"
    return str(value)


def finite_cells(values: pd.Series, name: str, source: str, *, where: Where = file_line, optional: bool = False,
                 text_fix: str | None = None) -> np.ndarray:
    """A column of numbers as float64, every cell checked.

    Args:
        values: the column as read (text or numbers); its index labels are the rows' positions for `where`.
        name: the column's name in messages.
        source: the file (or what the values are) in messages.
        where: names a row by its index label; default `file_line`.
        optional: blank or NaN cells are allowed (they stay NaN); text and infinities are still refused.
        text_fix: when given, a column of more than one row in which no cell is a number is named as a text
            column ("column 'label' holds text, not numbers (e.g. ...); {text_fix}") rather than by its first cell.

    Returns:
        `[n]` float64.

    Raises:
        DataFormatError: "{source}: {where}, column {name!r}: {cell} is not a finite number[ (k bad cells in this
            column)]; fix or delete that row" for the first cell that is text, +-inf, or blank (unless optional).
    """
    numbers = values if pd.api.types.is_numeric_dtype(values) else pd.to_numeric(values, errors="coerce")
    floats = np.asarray(numbers, dtype=np.float64)
    cells = values.to_numpy()
    blank = values.isna().to_numpy() | np.array([isinstance(c, str) and not c.strip() for c in cells], dtype=bool)
    nan = np.isnan(floats)
    bad = (nan & ~blank) | np.isinf(floats) | (nan & blank & (not optional))
    if not bad.any():
        return floats
    if text_fix is not None and bad.all() and len(bad) > 1:
        raise DataFormatError(f"{source}: column {name!r} holds text, not numbers (e.g. {values.iloc[0]!r}); "
                              f"{text_fix}")
    rows = np.flatnonzero(bad)
    row = int(rows[0])
    count = f" ({rows.size} bad cells in this column)" if rows.size > 1 else ""
    fix = "fix or delete those rows" if rows.size > 1 else "fix or delete that row"
    raise DataFormatError(f"{source}: {where(values.index[row])}, column {name!r}: {show_cell(cells[row])} is not a "
                          f"finite number{count}; {fix}")


def epoch_ms_cells(values: pd.Series, numbers: np.ndarray, name: str, source: str, where: Where = file_line
                   ) -> np.ndarray:
    """Epoch numbers as int64 epoch milliseconds: seconds or milliseconds as `epoch_in_seconds` judges the first
    cell; every other cell must be in the same unit, and milliseconds must be whole (seconds may have fractions,
    rounded to the millisecond).

    Args:
        values: the cells as read (for messages; index labels as in `finite_cells`).
        numbers: their finite float values, `[n]`, n >= 1.
        name, source, where: as `finite_cells`.

    Raises:
        DataFormatError: naming the first cell in the other unit, or the first fractional millisecond.
    """
    seconds = np.asarray(epoch_in_seconds(numbers), dtype=bool)
    for mask, problem, fix in (
        (seconds != seconds[0], f"is in {'milliseconds' if seconds[0] else 'seconds'} unlike the first row",
         "use one unit for the whole column"),
        (~seconds & (numbers != np.floor(numbers)), "is not a whole number of milliseconds", "round it"),
    ):
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            raise DataFormatError(f"{source}: {where(values.index[row])}, column {name!r}: "
                                  f"{show_cell(values.iat[row])} {problem}; {fix}")
    if seconds[0]:
        return np.rint(numbers * 1000.0).astype(np.int64)
    return numbers.astype(np.int64)
