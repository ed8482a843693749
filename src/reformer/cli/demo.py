"""`reformer demo`: the offline main job.

Until the data and training layers exist it builds the default model, runs one forward and backward pass,
and runs the attention benchmark at small sizes.
"""

from __future__ import annotations

import time

import typer
from rich.console import Console

from ..bench.attention import BenchSpec, run_suite
from .bench import attention_table

__all__ = ["register"]


def demo() -> None:
    """Build the default Reformer, run it, and benchmark attention at small sizes (offline, ~1 minute)."""
    import torch

    from ..model import ReformerConfig, ReformerModel

    console = Console(width=160)
    config = ReformerConfig(n_features=8)
    model = ReformerModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"default model: {config.attention_type.value} attention, {config.n_layers} layers, "
                  f"d_model {config.d_model}, {n_params:,} parameters, seq_len {config.seq_len}")
    x = torch.randn(4, config.seq_len, config.n_features)
    start = time.perf_counter()
    loss = model(x).square().mean()
    loss.backward()
    console.print(f"one training step (batch 4, reversible): {time.perf_counter() - start:.3f} s")
    model.eval()
    with torch.no_grad():
        pred, attention = model.predict_with_attention(x[:1])
    console.print(f"prediction {pred.item():+.4f}; layer 0 attends to {attention[0].map.indices.shape[-1]} "
                  f"keys per position (of {config.seq_len})")
    lengths = [512, 2048]
    results = run_suite(lengths, BenchSpec(repeats=2), budget_bytes=4 * 2**30)
    console.print(attention_table(results, lengths))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
