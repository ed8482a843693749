"""`model.linear.Linear`: the oneDNN route gives `F.linear`'s outputs and gradients, and is taken only where it
should be (float32 on the CPU, no autocast)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from reformer.model import linear
from reformer.model.linear import Linear, linear_gelu


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every oneDNN product (its pointwise post-op)."""
    seen: list[str] = []
    real: Callable[..., torch.Tensor] = linear._product

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(args[3] if len(args) > 3 else kwargs.get("post", "none"))
        return real(*args, **kwargs)

    monkeypatch.setattr(linear, "_product", counting)
    return seen


@pytest.mark.skipif(not linear._ONEDNN, reason="this PyTorch build has no oneDNN")
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_route_matches_f_linear_with_gradients(calls: list[str], bias: bool) -> None:
    torch.manual_seed(0)
    layer = Linear(96, 160, bias=bias)
    x = torch.randn(2, 300, 96, requires_grad=True)
    grad = torch.randn(2, 300, 160)
    out = layer(x)
    out.backward(grad)
    assert calls == ["none", "none", "none"]  # forward, dx, dW: all three on oneDNN
    got = (out.detach(), x.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad)
    x.grad, layer.weight.grad = None, None
    if layer.bias is not None:
        layer.bias.grad = None
    ref_out = F.linear(x, layer.weight, layer.bias)
    ref_out.backward(grad)
    want = (ref_out.detach(), x.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad)
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not linear._ONEDNN, reason="this PyTorch build has no oneDNN")
def test_gelu_is_fused_in_inference_only(calls: list[str]) -> None:
    torch.manual_seed(0)
    layer = Linear(32, 64)
    x = torch.randn(4, 50, 32)
    with torch.no_grad():
        fused = linear_gelu(layer, x)
    assert calls == ["gelu"]
    torch.testing.assert_close(fused, F.gelu(F.linear(x, layer.weight, layer.bias)), rtol=1e-5, atol=1e-5)
    calls.clear()
    x.requires_grad_(True)
    linear_gelu(layer, x).sum().backward()  # training: the product on oneDNN, GELU separate (its backward needs it)
    assert calls == ["none", "none", "none"] and x.grad is not None


def test_other_dtypes_and_autocast_take_f_linear(calls: list[str]) -> None:
    layer = Linear(16, 8).double()
    x = torch.randn(5, 16, dtype=torch.float64)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer = Linear(16, 8)
    x32 = torch.randn(5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x32)
    assert out.dtype == torch.bfloat16
    assert calls == []


def test_state_dict_is_nn_linears() -> None:
    ours, plain = Linear(12, 7), torch.nn.Linear(12, 7)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(3, 12)
    torch.testing.assert_close(ours(x), plain(x))


def test_a_trainable_bias_alone_gets_its_gradient() -> None:
    layer = Linear(8, 4)
    layer.weight.requires_grad_(False)
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.bias is not None and layer.bias.grad is not None
    torch.testing.assert_close(layer.bias.grad, torch.full((4,), 3.0))
    with torch.no_grad():
        x = torch.randn(3, 8)
    assert linear_gelu(layer, x).requires_grad  # the bias still needs the autograd path


@pytest.mark.skipif(not linear._ONEDNN, reason="this PyTorch build has no oneDNN")
def test_double_backward_fails_loudly() -> None:
    layer = Linear(6, 5)
    x = torch.randn(4, 6, requires_grad=True)
    (first,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        first.sum().backward()


def test_the_reversible_training_forward_matches_its_recomputation() -> None:
    from reformer.model import ReformerConfig, ReformerModel

    torch.manual_seed(0)
    model = ReformerModel(ReformerConfig(seq_len=64, d_model=32, n_heads=2, n_layers=3, attention_type="full",
                                         n_features=3, n_outputs=1, dropout=0.0, activation_budget_mb=0.0))
    model.train()
    x = torch.randn(2, 64, 3, requires_grad=True)
    model(x).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    plain = ReformerModel(model.config.replace(use_reversible_layers=False))
    plain.load_state_dict(model.state_dict())
    plain.train()
    x2 = x.detach().clone().requires_grad_(True)
    plain(x2).sum().backward()
    for name, p in plain.named_parameters():
        if p.grad is not None and name in grads:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5)
