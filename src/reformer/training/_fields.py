"""Reading a checkpoint's JSON fields with their types checked: one line naming the file and the key for anything
missing or mistyped (`reformer.training.meta` builds its records with these)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from reformer.errors import DataFormatError, ReformerError

_T = TypeVar("_T")
_CORRUPT = "the checkpoint is corrupt or from another version, retrain or restore it"


def _bad(where: object, key: str, what: str) -> DataFormatError:
    return DataFormatError(f"{where}: {key!r} must be {what}; {_CORRUPT}")


def _get(doc: Mapping[str, Any], key: str, kind: type[_T] | tuple[type, ...], where: object, what: str, *,
         default: Any = ..., optional: bool = False) -> Any:
    """`doc[key]` if it is a `kind` (bools are not numbers), else one error naming `where` and `key`."""
    if key not in doc:
        if default is not ...:
            return default
        raise DataFormatError(f"{where}: missing key {key!r}; {_CORRUPT}")
    value = doc[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _bad(where, key, what)
    if not isinstance(value, kind):
        raise _bad(where, key, what)
    return value


def _int(doc: Mapping[str, Any], key: str, where: object, *, optional: bool = False, default: Any = ...) -> Any:
    value = _get(doc, key, int, where, "an integer" + (" or null" if optional else ""), optional=optional,
                 default=default)
    if value is not None and value < 0:
        raise _bad(where, key, "a non-negative integer")
    return value


def _names(doc: Mapping[str, Any], key: str, where: object) -> tuple[str, ...]:
    value = _get(doc, key, list, where, "a list of column names")
    if not value or not all(isinstance(name, str) for name in value):
        raise _bad(where, key, "a non-empty list of column names")
    return tuple(value)


def _parsed(where: object, key: str, parse: Any, doc: Mapping[str, Any]) -> Any:
    """`parse(doc[key])`, its own error (a `from_dict` refusing the dict) turned into one naming the file and key."""
    value = _get(doc, key, dict, where, "an object")
    if not isinstance(value, dict):
        raise _bad(where, key, "an object")
    try:
        return parse(value)
    except (ReformerError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFormatError(f"{where}: bad {key!r} ({reason}); {_CORRUPT}") from None


_DATA_EXTENT = ("first_timestamp", "last_timestamp", "n_bars", "rows")


def data_difference(saved: Any, new: Any) -> str | None:
    """How the data of a checkpoint's `data` block and of a new run's differ in extent (first and last time, bars
    or rows), as "from 1778536800000 to ... (5000 bars)" against the new run's, or None when they agree (or either
    says nothing of it). The source's path may differ: a moved file holds the same data."""
    if not isinstance(saved, Mapping) or not isinstance(new, Mapping):
        return None
    keys = [key for key in _DATA_EXTENT if key in saved and key in new]
    if all(saved[key] == new[key] for key in keys):
        return None

    def extent(block: Mapping[str, Any]) -> str:
        first, last = (_utc(block.get(key)) for key in ("first_timestamp", "last_timestamp"))
        count = block.get("n_bars", block.get("rows"))
        return f"{first} .. {last} ({count} {'bars' if 'n_bars' in block else 'rows'})"

    return f"{extent(saved)}, this run on {extent(new)}"


def _utc(ms: Any) -> str:
    if not isinstance(ms, int):
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
