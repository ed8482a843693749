"""Reversible stack: same gradients as plain autograd (dropout on), memory flat in depth and linear in length,
and the activation budget (top layers store, the rest recompute)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from reformer import ReformerConfig, ReformerModel
from reformer.model import chunked
from reformer.model.reversible import run_plain


def _grads(model: ReformerModel, x: torch.Tensor, reversible: bool, seed: int = 11) -> list[torch.Tensor]:
    model.use_reversible_layers = reversible
    model.reseed(5)  # same LSH rotations in both runs
    torch.manual_seed(seed)  # same dropout masks in both runs
    x = x.clone().requires_grad_(True)
    loss = (model(x) ** 2).sum()
    params = list(model.parameters())
    return list(torch.autograd.grad(loss, [x, *params]))


@pytest.mark.parametrize("kind", ["lsh", "full", "local"])
@pytest.mark.parametrize("stored", [0, 1, 2])
def test_reversible_and_plain_gradients_match_with_dropout(kind: str, stored: int) -> None:
    """All three layers recompute (stored=0), or the top one or two keep activations under the budget."""
    config = ReformerConfig(seq_len=40, d_model=32, n_heads=4, n_layers=3, chunk_size=16, n_buckets=4,
                            n_hash_rounds=2, dropout=0.25, ff_chunks=3, n_features=3,
                            attention_type=kind, full_attention_threshold=0)  # type: ignore[arg-type]
    per_layer = config.stored_layer_bytes(2, 48 if kind != "full" else 40) / 2**20  # padded to 3 chunks
    config = config.replace(activation_budget_mb=(stored + 0.5) * per_layer if stored else 0)
    assert config.layers_to_store(2, 48 if kind != "full" else 40) == stored
    model = ReformerModel(config).double().train()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    reversible = _grads(model, x, reversible=True)
    plain = _grads(model, x, reversible=False)
    assert len(reversible) == len(plain) == 1 + len(list(model.parameters()))
    for got, want in zip(reversible, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    # dropout really was on: another seed gives other gradients
    other = _grads(model, x, reversible=True, seed=12)
    assert not torch.allclose(other[0], reversible[0])


@pytest.mark.parametrize("kind", ["lsh", "local"])
def test_recomputed_layers_keep_their_attention_probabilities_within_the_budget(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget below one layer's activations stores no layer, but each recomputed layer keeps its attention
    probabilities for its own backward: same gradients as plain autograd, fewer score computations."""
    config = ReformerConfig(seq_len=64, d_model=32, n_heads=4, n_layers=3, chunk_size=16, n_buckets=4,
                            n_hash_rounds=2, dropout=0.25, ff_chunks=2, n_features=3,
                            attention_type=kind, full_attention_threshold=0)  # type: ignore[arg-type]
    config = config.replace(activation_budget_mb=0.9 * config.stored_layer_bytes(2, 64) / 2**20)
    assert config.layers_to_store(2, 64) == 0
    model = ReformerModel(config).double().train()
    x = torch.randn(2, 64, 3, dtype=torch.float64)
    calls: list[int] = []
    real = chunked.chunk_scores
    monkeypatch.setattr(chunked, "chunk_scores", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    kept = _grads(model, x, reversible=True)
    kept_calls = len(calls)
    model.config = config.replace(activation_budget_mb=0)
    for layer in model.blocks:
        layer.attn.config = model.config
    calls.clear()
    recomputed = _grads(model, x, reversible=True)
    # forward, recomputed forward and backward each score every block without the budget; with it the backward
    # uses the kept probabilities
    assert kept_calls == 2 * len(calls) // 3, (kept_calls, len(calls))
    plain = _grads(model, x, reversible=False)
    for got, same, want in zip(kept, recomputed, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(same, want, rtol=1e-9, atol=1e-10)


def test_reversible_works_with_autograd_grad_and_accumulation() -> None:
    config = ReformerConfig(seq_len=32, d_model=16, n_heads=2, n_layers=2, chunk_size=8, n_buckets=4,
                            dropout=0.0, n_features=2, full_attention_threshold=0, activation_budget_mb=0)
    model = ReformerModel(config).double().train()
    x = torch.randn(3, 32, 2, dtype=torch.float64)
    model(x).sum().backward()
    first = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    model.reseed(0)
    model(x).sum().backward()  # accumulates
    for p, g in zip(model.parameters(), first, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, 2 * g)


def _bytes_saved_by(run: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct storages autograd saves for the backward while `run()` builds its graph."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return sum(storages.values()), out


def _saved_bytes(config: ReformerConfig, length: int, reversible: bool) -> int:
    model = ReformerModel(config).train()
    model.use_reversible_layers = reversible
    x = torch.randn(1, length, config.n_features)
    saved, loss = _bytes_saved_by(lambda: model(x).square().sum())
    loss.backward()
    return saved


def test_reversible_memory_does_not_grow_with_depth() -> None:
    # default width, heads, rounds, buckets; LSH (not the short-input full attention) at 256
    base = ReformerConfig(seq_len=256, n_features=4, dropout=0.1, full_attention_threshold=0,
                          activation_budget_mb=0)
    deep, shallow = base.replace(n_layers=12), base.replace(n_layers=2)
    ratio = _saved_bytes(deep, 256, reversible=True) / _saved_bytes(shallow, 256, reversible=True)
    assert ratio <= 1.3, ratio
    plain_ratio = _saved_bytes(deep, 256, reversible=False) / _saved_bytes(shallow, 256, reversible=False)
    assert plain_ratio > 4.0, plain_ratio  # what the reversible stack saves


def test_lsh_memory_is_linear_in_length() -> None:
    config = ReformerConfig(d_model=32, n_heads=2, n_layers=1, n_hash_rounds=2, chunk_size=32, n_buckets=64,
                            n_features=2, dropout=0.0, use_reversible_layers=False, seq_len=16384)
    ratio = _saved_bytes(config, 16384, reversible=False) / _saved_bytes(config, 4096, reversible=False)
    assert ratio <= 5.0, ratio
    full = config.replace(attention_type="full", seq_len=2048)  # type: ignore[arg-type]
    full_ratio = _saved_bytes(full, 2048, reversible=False) / _saved_bytes(full, 512, reversible=False)
    assert full_ratio > 8.0, full_ratio  # quadratic: what LSH avoids


def test_memory_figures_for_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the measured ratios (pytest -s) so the README's numbers can be reproduced."""
    base = ReformerConfig(seq_len=256, n_features=4, dropout=0.1, full_attention_threshold=0,
                          activation_budget_mb=0)
    deep = _saved_bytes(base.replace(n_layers=12), 256, reversible=True)
    shallow = _saved_bytes(base.replace(n_layers=2), 256, reversible=True)
    print(f"reversible saved bytes 12 vs 2 layers: {deep} / {shallow} = {deep / shallow:.3f}")
    assert deep > shallow  # buckets (1 byte per position, head and round) do grow with depth, slowly


@pytest.mark.parametrize(("changes", "batch", "length"), [
    ({}, 32, 168),  # the default configuration: full attention below the threshold
    ({"d_ff": 1024, "dropout": 0.0}, 16, 168),
    ({"seq_len": 2048}, 2, 2048),  # LSH
    ({"seq_len": 2048, "d_model": 256, "n_hash_rounds": 8, "chunk_size": 64, "n_buckets": 64}, 1, 2048),
    ({"seq_len": 2048, "attention_type": "local"}, 2, 2048),
])
def test_stored_layer_bytes_estimates_what_autograd_keeps(changes: dict, batch: int, length: int) -> None:
    """The budget's estimate is within 25% of the bytes one layer's ordinary autograd really saves."""
    config = ReformerConfig(n_features=2, use_reversible_layers=False, n_layers=1, **changes)
    model = ReformerModel(config).train()
    h = model.embed(torch.randn(batch, length, 2)).detach().requires_grad_(True)
    # the one layer alone (no embedding, norm or head)
    measured, _ = _bytes_saved_by(lambda: run_plain(model.blocks, h, h, None)[0])
    estimate = config.stored_layer_bytes(batch, length)
    assert 0.75 < estimate / measured < 1.25, (estimate, measured)


def test_activation_budget_bounds_the_stored_bytes() -> None:
    """Each stored layer adds about one layer's activations; budget 0 is the pure reversible stack."""
    base = ReformerConfig(seq_len=256, n_features=4, dropout=0.1, n_layers=6, full_attention_threshold=0,
                          activation_budget_mb=0)
    per_layer = base.stored_layer_bytes(1, 256)
    reversible = _saved_bytes(base, 256, reversible=True)
    two = _saved_bytes(base.replace(activation_budget_mb=2.5 * per_layer / 2**20), 256, reversible=True)
    everything = _saved_bytes(base.replace(activation_budget_mb=1e6), 256, reversible=True)
    plain = _saved_bytes(base, 256, reversible=False)
    assert 1.5 * per_layer < two - reversible < 2.5 * per_layer, (two - reversible, per_layer)
    assert everything > 0.9 * plain  # every layer stored: as much as ordinary autograd
