"""Reversible stack: same gradients as plain autograd (dropout on), memory flat in depth and linear in length."""

from __future__ import annotations

import pytest
import torch

from reformer import ReformerConfig, ReformerModel


def _grads(model: ReformerModel, x: torch.Tensor, reversible: bool, seed: int = 11) -> list[torch.Tensor]:
    model.use_reversible_layers = reversible
    model.reseed(5)  # same LSH rotations in both runs
    torch.manual_seed(seed)  # same dropout masks in both runs
    x = x.clone().requires_grad_(True)
    loss = (model(x) ** 2).sum()
    params = list(model.parameters())
    return list(torch.autograd.grad(loss, [x, *params]))


@pytest.mark.parametrize("kind", ["lsh", "full", "local"])
def test_reversible_and_plain_gradients_match_with_dropout(kind: str) -> None:
    config = ReformerConfig(seq_len=40, d_model=32, n_heads=4, n_layers=3, chunk_size=16, n_buckets=4,
                            n_hash_rounds=2, dropout=0.25, ff_chunks=3, n_features=3,
                            attention_type=kind, full_attention_threshold=0)  # type: ignore[arg-type]
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


def test_reversible_works_with_autograd_grad_and_accumulation() -> None:
    config = ReformerConfig(seq_len=32, d_model=16, n_heads=2, n_layers=2, chunk_size=8, n_buckets=4,
                            dropout=0.0, n_features=2, full_attention_threshold=0)
    model = ReformerModel(config).double().train()
    x = torch.randn(3, 32, 2, dtype=torch.float64)
    model(x).sum().backward()
    first = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    model.reseed(0)
    model(x).sum().backward()  # accumulates
    for p, g in zip(model.parameters(), first, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, 2 * g)


def _saved_bytes(config: ReformerConfig, length: int, reversible: bool) -> int:
    model = ReformerModel(config).train()
    model.use_reversible_layers = reversible
    x = torch.randn(1, length, config.n_features)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().sum()
    loss.backward()
    return sum(storages.values())


def test_reversible_memory_does_not_grow_with_depth() -> None:
    # default width, heads, rounds, buckets; LSH (not the short-input full attention) at 256
    base = ReformerConfig(seq_len=256, n_features=4, dropout=0.1, full_attention_threshold=0)
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
    base = ReformerConfig(seq_len=256, n_features=4, dropout=0.1, full_attention_threshold=0)
    deep = _saved_bytes(base.replace(n_layers=12), 256, reversible=True)
    shallow = _saved_bytes(base.replace(n_layers=2), 256, reversible=True)
    print(f"reversible saved bytes 12 vs 2 layers: {deep} / {shallow} = {deep / shallow:.3f}")
    assert deep > shallow  # buckets (1 byte per position, head and round) do grow with depth, slowly
