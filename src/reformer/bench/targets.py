"""`reformer bench targets`: the default configuration's training step against an SDPA encoder, and its latency.

The project's speed targets for the default and the one-year configuration, measured in one process:

- training: one step (forward, loss = output.sum(), backward) of `ReformerModel(ReformerConfig())` (seq_len 168,
  LSH, reversible) at the training loop's batch size, against the same-size plain pre-norm Transformer on SDPA
  (`peers.SDPAEncoder`: d_model, heads, layers, FFN width and dropout of the default config, a linear head on the
  last position, fed the same (b, l, f) input through a linear embedding). Also timed, for the record: the same
  model with `activation_budget_mb=0`, every layer recomputed in the backward (`ours_recompute`). Steps rotate
  between the three, so slow drift of a shared machine's load falls on all alike; the target is sdpa time / ours
  >= 0.8.
- inference: `model(x)` in eval mode under `torch.no_grad()` at batch 1, many calls; the target is p50 < 10 ms.
- the one-year hourly configuration (`LONG_CONFIG`, seq_len 8760): one eval forward at batch 1, in float32 and
  under bfloat16 autocast (`torch.autocast("cpu", torch.bfloat16)`: matmuls in bfloat16, hashing, logits and the
  softmax in float32); the target is under 1 s.

Shape legend: b batch, l length, f input features, d model width.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..model import ReformerConfig, ReformerModel
from .peers import SDPAEncoder

__all__ = ["TargetSpec", "run_targets"]

TRAIN_RATIO_TARGET = 0.8
"""Target: the default configuration trains at least 0.8x as fast as the same-size SDPA encoder."""
LATENCY_TARGET_MS = 10.0
"""Target: inference of the default configuration at batch 1, p50 under 10 ms."""
LONG_FORWARD_TARGET_S = 1.0
"""Target: a forward pass of the seq_len-8760 configuration takes under 1 s."""
LONG_CONFIG = ReformerConfig(seq_len=8760, d_model=256, n_heads=8, n_layers=6, n_hash_rounds=8, n_buckets=64,
                             chunk_size=64, use_reversible_layers=True)
"""One year of hourly bars in one window, as in examples/long_sequence.py."""


@dataclass(frozen=True)
class TargetSpec:
    """Settings of `run_targets`."""

    batch: int = 32
    """Training batch (the training loop's default)."""
    train_steps: int = 20
    """Timed training steps per implementation (after two warm-up steps each)."""
    latency_calls: int = 200
    """Timed batch-1 inference calls (after ten warm-up calls)."""
    long_calls: int = 3
    """Timed eval forwards of `LONG_CONFIG` per precision (after one warm-up each); 0 skips them."""
    threads: int = 1
    """torch threads; 0 = torch's default."""
    seed: int = 0


class _SDPAModel(nn.Module):
    """The same-size full-attention model: (b, l, f) -> linear embedding -> SDPAEncoder -> last position -> (b, o)."""

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(config.n_features, config.d_model)
        self.encoder = SDPAEncoder(config.d_model, config.n_heads, config.n_layers, config.dropout)
        self.head = nn.Linear(config.d_model, config.output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x))[:, -1])  # (b, o)


def _train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    params = list(model.parameters())

    def step() -> None:
        model(x).sum().backward()
        for p in params:
            p.grad = None

    return step


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_targets(spec: TargetSpec, config: ReformerConfig | None = None) -> dict[str, Any]:
    """Measure both targets; returns a JSON-ready dict with every timing, the medians and whether each is met."""
    config = config if config is not None else ReformerConfig()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    ours, sdpa = ReformerModel(config).train(), _SDPAModel(config).train()
    recompute = ReformerModel(config.replace(activation_budget_mb=0)).train()
    x = torch.randn(spec.batch, config.seq_len, config.n_features,
                    generator=torch.Generator().manual_seed(spec.seed))
    steps = {"ours": _train_step(ours, x), "sdpa": _train_step(sdpa, x),
             "ours_recompute": _train_step(recompute, x)}
    for step in steps.values():
        step()
        step()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(spec.train_steps):
        for name in names[i % 3:] + names[:i % 3]:
            times[name].append(_timed(steps[name]))
    ratio = statistics.median(s / o for s, o in zip(times["sdpa"], times["ours"], strict=True))
    recompute_ratio = statistics.median(s / o for s, o in zip(times["sdpa"], times["ours_recompute"], strict=True))

    ours.eval()
    one = x[:1]

    def infer() -> None:
        with torch.no_grad():
            ours(one)

    for _ in range(10):
        infer()
    latencies = sorted(_timed(infer) * 1e3 for _ in range(spec.latency_calls))
    p50 = statistics.median(latencies)
    p90 = latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))]
    long = _long_forward(spec) if spec.long_calls else None
    return {
        "config": config.to_dict(), "batch": spec.batch, "threads": torch.get_num_threads(),
        "train": {"ours_s": statistics.median(times["ours"]), "sdpa_s": statistics.median(times["sdpa"]),
                  "ours_recompute_s": statistics.median(times["ours_recompute"]),
                  "stored_layers": config.layers_to_store(spec.batch, config.seq_len),
                  "sdpa_over_ours": ratio, "sdpa_over_ours_recompute": recompute_ratio, "times": times,
                  "target": TRAIN_RATIO_TARGET, "met": ratio >= TRAIN_RATIO_TARGET},
        "inference": {"p50_ms": p50, "p90_ms": p90, "min_ms": latencies[0], "calls": len(latencies),
                      "target_ms": LATENCY_TARGET_MS, "met": p50 < LATENCY_TARGET_MS},
        "long_forward": long,
    }


def _long_forward(spec: TargetSpec) -> dict[str, Any]:
    """Median eval forward time of `LONG_CONFIG` at batch 1, float32 and bfloat16 autocast, alternating."""
    model = ReformerModel(LONG_CONFIG).eval()
    x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features,
                    generator=torch.Generator().manual_seed(spec.seed))  # (1, 8760, 1)
    outputs: dict[str, torch.Tensor] = {}

    def forward(name: str) -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bfloat16"):
            outputs[name] = model(x).float()

    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for name in times:
        forward(name)
    for _ in range(spec.long_calls):
        for name, values in times.items():
            values.append(_timed(lambda name=name: forward(name)))  # type: ignore[misc]
    medians = {name: statistics.median(values) for name, values in times.items()}
    best = min(medians.values())
    return {"config": LONG_CONFIG.to_dict(), "float32_s": medians["float32"], "bfloat16_s": medians["bfloat16"],
            "times": times, "bf16_abs_diff": float((outputs["bfloat16"] - outputs["float32"]).abs().max()),
            "target_s": LONG_FORWARD_TARGET_S, "met": best < LONG_FORWARD_TARGET_S}
