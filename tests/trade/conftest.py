"""What the paper-trading tests share: a market of synthetic hourly candles and a tiny model trained on its first
900 (a module may serve a longer `market` of its own; the model is still trained on its first 900)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reformer.api import Kline

from .paper_helpers import train_checkpoint


@pytest.fixture(scope="module")
def market(synthetic_year: list[Kline]) -> list[Kline]:
    return synthetic_year[: 24 * 50]


@pytest.fixture(scope="module")
def checkpoint(market: list[Kline], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_checkpoint(market[:900], tmp_path_factory.mktemp("run"))
