"""Scoring for the long-sequence forecasting protocol: the split's windows, MSE/MAE over every window, the
validation-fitted blend weight, and the window subset that published rows scored.

Shape legend: w windows, b batch, l input length, t horizon, c channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data.dataset import WindowDataset
from ..errors import ConfigError

__all__ = ["Metrics", "blend_weight", "drop_last_windows", "evaluate_forecaster",
           "evaluate_forecasters"]


@dataclass(frozen=True)
class Metrics:
    """Errors on the normalised scale over every (window, step, channel) entry scored."""

    mse: float
    mae: float
    n_windows: int


def evaluate_forecasters(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], windows: WindowDataset, *,
                         target_only: bool = False, batch_size: int = 256,
                         leading: int | None = None) -> dict[str, Metrics]:
    """MSE and MAE of each named forecast that `predict` returns, over every window of `windows` (no drop_last),
    accumulated in float64; forecasts computed together share one pass over the windows.

    Args:
        predict: x (b, l, c) -> {name: (b, t, c)}.
        windows: the split's windows.
        target_only: score the last channel only (features "MS").
        batch_size: windows per call (the last batch may be smaller; every window is scored).
        leading: also score each forecast on the first `leading` windows only, as "<name>@leading" (in the
            same pass; e.g. `drop_last_windows(len(windows), 128)`).
    """
    sums: dict[str, list[float]] = {}  # name -> [squared error sum, absolute error sum, entries, windows]

    def add(name: str, err: torch.Tensor) -> None:
        total = sums.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        total[0] += float(err.square().sum())
        total[1] += float(err.abs().sum())
        total[2] += err.numel()
        total[3] += err.shape[0]

    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            x, y = windows.batch(slice(start, start + batch_size))
            for name, forecast in predict(x).items():
                err = (forecast - y).double()  # (b, t, c)
                if target_only:
                    err = err[..., -1:]
                add(name, err)
                if leading is not None and start < leading:
                    add(f"{name}@leading", err[: leading - start])
    return {name: Metrics(mse=sq / count, mae=ab / count, n_windows=int(n))
            for name, (sq, ab, count, n) in sums.items()}


def evaluate_forecaster(predict: Callable[[torch.Tensor], torch.Tensor], windows: WindowDataset, *,
                        target_only: bool = False, batch_size: int = 256) -> Metrics:
    """MSE and MAE of `predict` (x (b, l, c) -> (b, t, c)) over every window of `windows`: `evaluate_forecasters`
    with one forecast."""
    return evaluate_forecasters(lambda x: {"": predict(x)}, windows, target_only=target_only,
                                batch_size=batch_size)[""]


def blend_weight(first: Callable[[torch.Tensor], torch.Tensor], second: Callable[[torch.Tensor], torch.Tensor],
                 windows: WindowDataset, *, target_only: bool = False, batch_size: int = 256) -> float:
    """The weight a in [0, 1] of `first` in a * first + (1 - a) * second that minimises MSE on `windows`.

    Least squares in one variable: with d = first - second and r = y - second over every scored entry,
    a* = <d, r> / <d, d>, clipped to [0, 1] (0 when the two forecasts coincide).
    """
    dr = dd = 0.0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            x, y = windows.batch(slice(start, start + batch_size))
            base = second(x).double()  # (b, t, c)
            d, r = first(x).double() - base, y.double() - base
            if target_only:
                d, r = d[..., -1:], r[..., -1:]
            dr += float((d * r).sum())
            dd += float(d.square().sum())
    return 0.0 if dd == 0.0 else min(1.0, max(0.0, dr / dd))


def drop_last_windows(n_windows: int, batch_size: int) -> int:
    """How many test windows a loader with `drop_last=True` and this batch size scores: n - n mod batch.

    PatchTST's supervised code builds its test loader this way (batch 128 on ETTh1, windows in
    time order), so its published ETTh1 rows leave out the last n mod 128 windows: the latest ones. Scoring our
    forecasts on the same leading windows compares like with like; the protocol's own score stays every window.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    return n_windows - n_windows % batch_size
