"""The exception tree, grouped by how a caller must react.

    ReformerError                  base of everything this package raises on purpose
    ├── UserInputError (ValueError)   bad argument, config, file or symbol: fix the input, do not retry
    │   ├── ConfigError                  an impossible model / backtest configuration
    │   └── DataFormatError              a malformed CSV, export or checkpoint
    └── (further groups, e.g. exchange errors, are added by the modules that raise them)

The CLI turns any `ReformerError` into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataFormatError", "ReformerError", "UserInputError"]


class ReformerError(Exception):
    """Base class: every deliberate error of the package."""


class UserInputError(ReformerError, ValueError):
    """The input is wrong (argument, file, symbol, config). Fix it; retrying will not help."""


class ConfigError(UserInputError):
    """An impossible configuration."""


class DataFormatError(UserInputError):
    """A file or payload that does not have the expected format."""
