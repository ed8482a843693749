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


@pytest.fixture
def float64_route(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Sends every `Linear` (float64 included) through the oneDNN autograd Function, with `_product` replaced by
    an exact float64 stand-in, so its backward is checked to float64 precision. Records each product's post-op."""
    seen: list[str] = []

    def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                post: str = "none") -> torch.Tensor:
        seen.append(post)
        out = F.linear(x, weight, bias)
        return F.gelu(out) if post == "gelu" else out

    monkeypatch.setattr(linear, "onednn_ready", lambda x, weight: True)
    monkeypatch.setattr(linear, "_product", product)
    return seen


def _penalty_grads(first: torch.nn.Linear, second: torch.nn.Linear, x: torch.Tensor) -> list[torch.Tensor]:
    """Weight and first-bias gradients of the gradient penalty |d sum(second(tanh(first(x)))) / dx|^2 (the
    second bias does not reach d/dx)."""
    params = [first.weight, first.bias, second.weight]
    for p in [*params, second.bias]:
        p.grad = None
    y = second(torch.tanh(first(x)))
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)  # the upstream gradient (ones) needs no grad
    gx.pow(2).sum().backward()
    grads = [p.grad for p in params if p is not None and p.grad is not None]
    assert len(grads) == 3  # a dropped term would show as a missing gradient or a wrong value
    return [g.clone() for g in grads]


@pytest.mark.parametrize("first_is_ours", [True, False])
def test_gradient_penalty_matches_f_linear_in_float64(float64_route: list[str], first_is_ours: bool) -> None:
    torch.manual_seed(0)
    first = (Linear if first_is_ours else torch.nn.Linear)(6, 5).double()
    second = Linear(5, 3).double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    got = _penalty_grads(first, second, x)
    assert "none" in float64_route  # the autograd Function was taken
    plain_first, plain_second = torch.nn.Linear(6, 5).double(), torch.nn.Linear(5, 3).double()
    plain_first.load_state_dict(first.state_dict())
    plain_second.load_state_dict(second.state_dict())
    want = _penalty_grads(plain_first, plain_second, x)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_gradgradcheck_through_the_onednn_function(float64_route: list[str], bias: bool) -> None:
    torch.manual_seed(0)
    layer = Linear(4, 3, bias=bias).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    inputs = (x, layer.weight) if layer.bias is None else (x, layer.weight, layer.bias)

    def fn(x: torch.Tensor, weight: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = linear._OneDNNLinear.apply(x, weight, rest[0] if rest else None)
        return out

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
    assert float64_route  # the stand-in product ran


@pytest.mark.skipif(not linear._ONEDNN, reason="this PyTorch build has no oneDNN")
def test_gradient_penalty_on_the_real_onednn_route(calls: list[str]) -> None:
    torch.manual_seed(0)
    first, second = Linear(6, 5), Linear(5, 3)
    x = torch.randn(4, 6, requires_grad=True)
    got = _penalty_grads(first, second, x)
    # both forwards on oneDNN; the graph-building backward takes matmuls; the penalty's backward through the first
    # layer's forward (tanh' depends on it) is a plain backward, dx and dW on oneDNN again
    assert calls == ["none"] * 4
    plain_first, plain_second = torch.nn.Linear(6, 5), torch.nn.Linear(5, 3)
    plain_first.load_state_dict(first.state_dict())
    plain_second.load_state_dict(second.state_dict())
    want = _penalty_grads(plain_first, plain_second, x)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


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
