"""`reformer bench paper`: a paper trader's latency, from a candle's close arriving on the stream to its candle
committed in the state (the engine's step, the forecast and the next target included).

A checkpoint of the default configuration (`ReformerConfig()`: seq_len 168, d_model 128, 6 layers, LSH,
reversible; trained for two batches, since only its speed matters here) trades the demo's synthetic market on
the local fake exchange, replayed live so that an hour candle closes every `period` seconds. The trader follows
the stream as `reformer trade --paper` does: each close makes it ask REST for the new candle, its mark candle and
funding, step the engine, forecast and write one transaction. The target is under 100 ms at the median.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["LATENCY_TARGET_S", "run_paper_bench"]

LATENCY_TARGET_S = 0.100


def run_paper_bench(closes: int = 40, period: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Latencies of `closes` consecutive closes, one every `period` seconds of wall time."""
    from ..api import FakeExchange
    from ..data.dataset import klines_to_frame
    from ..data.synthetic import SyntheticMarketConfig, synthetic_klines
    from ..pipelines import train_crypto
    from ..strategy import BacktestConfig
    from ..trade.paper import PaperSettings, PaperTrader, run_paper
    from ..training import TrainConfig

    market = synthetic_klines(SyntheticMarketConfig(n_bars=3000, seed=seed))
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        train_crypto(klines_to_frame(market[:2200]), seq_len=168, horizon=24, out_dir=run_dir, progress=False,
                     train_config=TrainConfig(epochs=1, batch_size=32, max_batches_per_epoch=2, device="cpu"),
                     source={"symbol": "BTCUSDT", "interval": "60", "category": "linear"})
        settings = PaperSettings(str(run_dir), ("BTCUSDT",), "60", "linear",
                                 BacktestConfig(leverage=3, position_size=1))
        start = market[2400].start_time
        with FakeExchange({("linear", "BTCUSDT", "60"): market}, now_ms=start) as fake:
            trader = PaperTrader(Path(folder) / "state", settings, say=lambda line: None)
            try:
                asyncio.run(run_paper(trader, fake.base_url, follow=False))  # the warm-up
                fake.replay(start, speed=3_600_000 / (period * 1000))
                asyncio.run(run_paper(trader, fake.base_url, ws_url=fake.ws_url, max_steps=closes,
                                      on_step=latencies.append))
            finally:
                trader.close()
    ordered = sorted(latencies)
    return {"closes": len(latencies), "period_s": period, "p50_s": statistics.median(ordered),
            "p90_s": ordered[int(0.9 * (len(ordered) - 1))], "max_s": ordered[-1], "target_p50_s": LATENCY_TARGET_S}
