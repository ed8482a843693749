"""The cheap CPU dropout: rate, scaling, gradient, seeding, and the reversible replay."""

from __future__ import annotations

import pytest
import torch

from reformer.model.dropout import Dropout, dropout_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_and_inverted_scaling(p: float) -> None:
    torch.manual_seed(0)
    y = Dropout(p).train()(torch.ones(2_000_000))
    rate = (y == 0).float().mean().item()
    assert abs(rate - p) < 0.002  # binomial sd ~3e-4
    assert abs(y.mean().item() - 1.0) < 0.004
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - round(p * 65536) / 65536)))


def test_mask_bits_are_independent_of_position_in_the_word() -> None:
    # each int64 word feeds four consecutive elements: every lane must drop at rate p
    torch.manual_seed(1)
    keep, _ = dropout_mask((400_000, 4), 0.25)
    lane_rates = 1 - keep.float().mean(dim=0)
    assert torch.all((lane_rates - 0.25).abs() < 0.005), lane_rates


def test_gradient_is_the_same_mask_and_scale() -> None:
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(2)
    y = Dropout(0.2).train()(x)
    y.backward(torch.ones_like(y))
    assert x.grad is not None
    assert torch.equal(x.grad != 0, y != 0)
    assert torch.allclose(x.grad[y != 0], torch.tensor(1 / (1 - round(0.2 * 65536) / 65536)))


def test_seeded_and_identity_in_eval() -> None:
    x = torch.randn(10, 20)
    drop = Dropout(0.3).train()
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    assert torch.equal(a, drop(x))
    assert not torch.equal(a, drop(x))
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
