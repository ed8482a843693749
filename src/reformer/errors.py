"""The exception tree, grouped by how a caller must react.

    ReformerError                  base of everything this package raises on purpose
    ├── UserInputError (ValueError)   bad argument, config, file or symbol: fix the input, do not retry
    │   ├── ConfigError                  an impossible model / backtest configuration
    │   └── DataFormatError              a malformed CSV, export or checkpoint
    └── ExchangeError                 the exchange said no, or could not be reached (carries code / HTTP status)
        ├── RetryableExchangeError       transient (10006/429 rate limit, 10000, 10016, 5xx, timeout, reset,
        │                                truncated body): the client retries these itself with backoff
        ├── ExchangeUnavailableError     retries exhausted or host unreachable: try again later
        ├── ExchangeBannedError          HTTP 403, IP limit breached: stop all sessions, wait >= 10 minutes
        └── BadRequestError (+ UserInputError)   10001 and other parameter errors: fix the request
            ├── InvalidSymbolError           the exchange does not list this symbol
            └── InvalidIntervalError         not a Bybit interval (raised before any request)

The CLI turns any `ReformerError` into one line on stderr and exit code 2, never a traceback; scripts get the
same from `run_main` (the examples use it). `BadRequestError` also derives from `UserInputError`, so the CLI shows
it as an input error. `UserInputError` (and so `ConfigError`, `DataFormatError`) also derives from `ValueError`,
so `except ValueError` callers keep working; a plain `ValueError` from library internals is a bug and keeps its
traceback (exit 1).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

__all__ = [
    "BadRequestError",
    "ConfigError",
    "DataFormatError",
    "ExchangeBannedError",
    "ExchangeError",
    "ExchangeUnavailableError",
    "InvalidIntervalError",
    "InvalidSymbolError",
    "ReformerError",
    "RetryableExchangeError",
    "UserInputError",
    "first_line",
    "from_fields",
    "one_line",
    "run_main",
]


class ReformerError(Exception):
    """Base class: every deliberate error of the package."""


class UserInputError(ReformerError, ValueError):
    """The input is wrong (argument, file, symbol, config). Fix it; retrying will not help."""


class ConfigError(UserInputError):
    """An impossible configuration."""


class DataFormatError(UserInputError):
    """A file or payload that does not have the expected format."""


class ExchangeError(ReformerError):
    """The exchange refused a request or answered something unusable.

    Attributes:
        code: Bybit `retCode` when the answer carried one, else None.
        http_status: HTTP status of the answer, None when there was no answer (timeout, reset).
    """

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class RetryableExchangeError(ExchangeError):
    """A transient failure worth retrying after a pause (rate limit, server hiccup, network drop).

    Attributes:
        retry_at_ms: epoch ms from `X-Bapi-Limit-Reset-Timestamp` when the exchange sent it, else None.
    """

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None,
                 retry_at_ms: int | None = None) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.retry_at_ms = retry_at_ms


class ExchangeUnavailableError(ExchangeError):
    """The exchange could not be reached or kept failing after every retry; try again later."""


class ExchangeBannedError(ExchangeError):
    """HTTP 403: the IP limit was breached (or the region is blocked). Stop every session for >= 10 minutes."""


class BadRequestError(ExchangeError, UserInputError):
    """The exchange rejected the request's parameters; fix them, retrying will not help."""


class InvalidSymbolError(BadRequestError):
    """The exchange does not list the symbol in this category.

    Attributes:
        symbol: the rejected symbol.
    """

    def __init__(self, symbol: str, category: str = "linear", *, code: int | None = 10001) -> None:
        super().__init__(
            f"unknown symbol {symbol!r} in category {category!r}: use an uppercase symbol the exchange lists "
            f"there (e.g. 'BTCUSDT'; check instruments-info)",
            code=code,
        )
        self.symbol = symbol
        self.category = category


class InvalidIntervalError(BadRequestError):
    """The interval is not one Bybit knows (or cannot be used where it was given); raised before any request."""


_Config = TypeVar("_Config")


def from_fields(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
    """Build the dataclass `cls` from a dict (a TOML table or a checkpoint's JSON); an unknown key is a
    `ConfigError` naming it and the valid fields (typos in config files are never silently ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__} got unknown field(s) {unknown}: valid fields are {sorted(known)}")
    return cls(**data)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (for one-line errors)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str | None:
    """The one-line error for what bad input raises: a `ReformerError` (the package's own, raised on purpose), or
    an `OSError` of a path (a file where a folder is wanted, a missing folder); None for anything else. A plain
    `ValueError` or `TypeError` is not bad input but a bug (often deep inside numpy or torch): it keeps its
    traceback."""
    if isinstance(exc, ReformerError):
        return first_line(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or first_line(exc)}; check the path"
    return None


def run_main(main: Callable[[], object]) -> NoReturn:
    """Run a script's `main()` and exit: 0, or 2 with one line on stderr for bad input (`one_line`), as the CLI."""
    try:
        main()
    except Exception as exc:
        message = one_line(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(0)
