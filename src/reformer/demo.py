"""The offline end-to-end demo: fake exchange -> real client -> store -> train -> evaluate -> predict -> backtest.

Everything runs on this machine: a local fake Bybit exchange on 127.0.0.1 serves a deterministic synthetic market
(with a signal planted 150 bars before its effect), the real `BybitClient` fetches it into a fresh SQLite store,
a small LSH Reformer trains on it, and the report folder receives the metrics beside the baselines, the attention
plot, the prediction and a backtest of the test period beside buy & hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoResult", "PlantedSignalRecipe", "planted_signal_recipe", "run_demo"]

SYMBOL, INTERVAL, CATEGORY = "BTCUSDT", "60", "linear"


@dataclass(frozen=True)
class PlantedSignalRecipe:
    """The synthetic market, features, model and training that the demo and the long-range test share."""

    market: Any
    """`SyntheticMarketConfig`: events (volume spike, full-body candle of sign s) move the price by s * 6 bar
    volatilities 150 bars later."""
    spec: Any
    """`FeatureSpec`: log returns, volume z-score, candle ratios and the signed volume z-score."""
    model: dict[str, Any]
    """`ReformerConfig` overrides: a 1-layer LSH Reformer with a flattening head."""
    train: Any
    """`TrainConfig`: 10 epochs of 40 batches of 128 windows."""
    horizon: int
    """Forecast horizon in bars: the next 4 bars depend on the events 147..150 bars back."""


def planted_signal_recipe(n_bars: int = 20_000, seed: int = 0, epochs: int = 10) -> PlantedSignalRecipe:
    """The setup in which a window that reaches 150 bars back learns the planted signal (about 0.3 MSE skill
    against the zero forecast on the test split, measured) and a 64-bar window cannot (about 0)."""
    from .data.features import FeatureSpec
    from .data.synthetic import SyntheticMarketConfig
    from .training.loop import TrainConfig

    return PlantedSignalRecipe(
        market=SyntheticMarketConfig(n_bars=n_bars, seed=seed, event_rate=0.04, event_size=6.0,
                                     event_volume_mult=30.0),
        spec=FeatureSpec(groups=("log_return", "volume_z", "candle", "signed_volume")),
        model={"d_model": 8, "n_heads": 2, "n_layers": 1, "n_hash_rounds": 2, "n_buckets": 8, "chunk_size": 32,
               "attention_type": "lsh", "full_attention_threshold": 0,  # LSH at every seq_len (64 too)
               "dropout": 0.0, "pooling": "flatten", "seed": seed},
        train=TrainConfig(epochs=epochs, batch_size=128, lr=3e-3, weight_decay=0.0, max_batches_per_epoch=40,
                          patience=4, seed=seed, device="auto", loss="mse"),
        horizon=4)


@dataclass
class DemoResult:
    """Where the demo wrote its report, and the headline figures."""

    report_dir: Path
    rows_fetched: int
    kline_requests: int
    evaluation: dict[str, Any]
    latest: dict[str, Any]
    backtest: dict[str, Any]
    seconds: float


def run_demo(report_dir: str | Path, *, n_bars: int = 20_000, seq_len: int = 256, epochs: int = 10,
             seed: int = 0, say: Callable[[str], None] = print, progress: bool = True,
             force: bool = False) -> DemoResult:
    """Run the whole offline pipeline and write `report_dir`.

    Args:
        report_dir: folder for the report (created); the store and the run directory go inside it.
        n_bars: hourly candles of the synthetic market.
        seq_len: input window of the model, in bars (the planted signal acts 150 bars after its cause).
        epochs: training epochs (each a random sample of windows).
        seed: seeds the market, the model and the training.
        say: progress messages.
        progress: show the training loop's progress bar (on stderr, and only when it is a terminal).
        force: replace the report of an earlier demo in `report_dir` (otherwise refused).
    Returns:
        A `DemoResult`.

    Raises:
        UserInputError: `report_dir` holds an earlier demo's report and `force` is False.
    """
    from .api.fake import FakeExchange
    from .data.derivatives_store import DerivativesStore
    from .data.derivatives_sync import sync_derivatives_blocking
    from .data.sync import sync_klines_blocking
    from .data.synthetic import synthetic_klines
    from .pipelines.attention_plot import plot_attention
    from .pipelines.crypto import first_unseen_bar, predict_all, predict_latest, train_crypto
    from .strategy import BacktestConfig, Instrument, run_backtest, save_report

    started = time.perf_counter()
    out = Path(report_dir)
    _clear_earlier_report(out, force)
    out.mkdir(parents=True, exist_ok=True)
    recipe = planted_signal_recipe(n_bars, seed, epochs)
    klines = synthetic_klines(recipe.market)
    say(f"synthetic market: {len(klines)} hourly candles with a signal planted 150 bars before its effect")

    with FakeExchange({(CATEGORY, SYMBOL, INTERVAL): klines}) as fake:
        fake_url = fake.base_url
        say(f"fake Bybit exchange listening on {fake_url}")
        with DerivativesStore(out / "klines.sqlite") as store:
            report = sync_klines_blocking(SYMBOL, INTERVAL, store=store, base_url=fake_url, category=CATEGORY,
                                          start=klines[0].start_time, end=klines[-1].start_time)
            frame = store.load_frame(CATEGORY, SYMBOL, INTERVAL)
            sync_derivatives_blocking(SYMBOL, INTERVAL, store=store, base_url=fake_url, category=CATEGORY,
                                      start=int(frame["timestamp"].iloc[0]), end=int(frame["timestamp"].iloc[-1]))
            funding = store.load_funding(CATEGORY, SYMBOL)
            mark = store.load_mark_frame(CATEGORY, SYMBOL, INTERVAL)
            tiers = store.load_risk_tiers(CATEGORY, SYMBOL)
    say(f"fetched {report.rows_added} closed candles in {report.kline_requests} kline requests, {len(funding)} "
        f"funding settlements and the mark-price candles into {out / 'klines.sqlite'} (the last, still-open "
        "candle is not stored)")

    say(f"training a {recipe.model['n_layers']}-layer LSH Reformer, seq_len {seq_len}, horizon {recipe.horizon}, "
        "on the 70% train split")
    trained = train_crypto(frame, seq_len=seq_len, horizon=recipe.horizon, model_overrides=recipe.model,
                           train_config=recipe.train, spec=recipe.spec,
                           out_dir=out / "run", source={"symbol": SYMBOL, "interval": INTERVAL, "category": CATEGORY,
                                                        "origin": "demo fake exchange"}, progress=progress)
    evaluation = trained.evaluation
    latest = predict_latest(out / "run", frame)
    plot_attention(out / "run", frame, out / "attention.png")

    # backtest the model on the test period only: the bars no weight of it was fitted on
    test_start, _ = first_unseen_bar(out / "run")
    first_test = int(frame["timestamp"].searchsorted(test_start))
    # predict from just enough history before the test period (feature warm-up + one window), not the whole series
    history_from = max(0, first_test - seq_len - 2 * trained.data.prepared.spec.warmup)
    predictions = predict_all(out / "run", frame.iloc[history_from:].reset_index(drop=True))
    unseen = predictions[predictions["timestamp"] >= test_start].set_index("timestamp")["prediction"]
    bars = frame[frame["timestamp"] >= test_start].reset_index(drop=True)
    # Bybit's base-tier fees, funding on the mark price, the symbol's first risk tier for the margin
    rules = Instrument(SYMBOL, maintenance_margin_rate=tiers[0].maintenance_margin_rate if tiers else None)
    result = run_backtest(unseen, bars, BacktestConfig(position_size=0.5), funding_rates=funding,
                          mark=mark, instrument=rules)
    save_report(result, bars, out / "backtest")
    backtest = result.to_dict()
    latest_dict = {"timestamp": latest.timestamp, "predicted_return": latest.predicted_return,
                   "direction": latest.direction, "confidence": latest.confidence, "horizon": latest.horizon}
    summary = {"rows_fetched": report.rows_added, "kline_requests": report.kline_requests,
               "evaluation": evaluation, "latest_prediction": latest_dict, "backtest": backtest}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return DemoResult(out, report.rows_added, report.kline_requests, evaluation, latest_dict, backtest,
                      time.perf_counter() - started)


_REPORT_ENTRIES = ("klines.sqlite", "klines.sqlite-wal", "klines.sqlite-shm", "run", "attention.png", "backtest",
                   "summary.json")


def _clear_earlier_report(out: Path, force: bool) -> None:
    """A second demo into the same folder would find its candles already stored and its run already trained:
    refuse, or with `force` remove the earlier demo's own entries (nothing else in the folder)."""
    import shutil

    from .errors import UserInputError

    earlier = [out / name for name in _REPORT_ENTRIES if (out / name).exists() or (out / name).is_symlink()]
    if not earlier:
        return
    if not force:
        raise UserInputError(f"{out} holds an earlier demo's report ({earlier[0].name}, ...): pass --force to replace "
                             "it, or choose another --out")
    for path in earlier:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
