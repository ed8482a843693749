"""CSV dialect shared by every reader of user files (`data.csv_io`, `data.timeseries`, `strategy.io`); no torch.

Spreadsheets in many locales save "CSV" with semicolons (the comma being the decimal mark) or tabs. Read with
pandas' default comma, such a file is one column whose name is the whole header line, and the reader's error
("no time column (found: timestamp;open;...)") names the wrong problem. The separator is taken from the header.
"""

from __future__ import annotations

import os

__all__ = ["header_separator"]

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
