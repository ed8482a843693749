"""Run configuration files: a TOML with a `[model]` table (`ReformerConfig` fields), a `[train]` table
(`TrainConfig` fields) and optionally a `[data]` table (seq_len, horizon, task, class_threshold, normalization),
as in `configs/`. Read by `reformer train` and by library code and examples alike; only the standard library.

    tables = load_config_file("configs/btc_small.toml")
    model = ReformerConfig.from_dict({**tables["model"], "seq_len": tables["data"].get("seq_len", 168)})
    train = TrainConfig.from_dict(tables["train"])
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError, UserInputError

__all__ = ["DATA_KEYS", "load_config_file"]

DATA_KEYS = frozenset({"seq_len", "horizon", "task", "class_threshold", "normalization", "stride"})
"""The keys a `[data]` table may hold."""


def load_config_file(path: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """The `[model]`, `[train]` and `[data]` tables of a TOML config (empty tables if `path` is None).

    Raises:
        UserInputError: the file does not exist.
        ConfigError: not valid TOML, a table other than those three, or an unknown `[data]` key.
    """
    tables: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    if path is None:
        return tables
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"config file {path} does not exist: pass an existing .toml (e.g. configs/tiny.toml)"
                             ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
    unknown = sorted(set(document) - set(tables))
    if unknown:
        raise ConfigError(f"config file {path}: unknown tables {unknown}; use [model], [train] and [data]")
    for name in tables:
        tables[name] = dict(document.get(name, {}))
    bad = sorted(set(tables["data"]) - DATA_KEYS)
    if bad:
        raise ConfigError(f"config file {path}: unknown [data] keys {bad}; valid: {sorted(DATA_KEYS)}")
    return tables
