"""`Linear`: `nn.Linear` whose float32 CPU products run on oneDNN's kernels instead of the BLAS that `F.linear`
calls.

    forward   y = x W^T + b                  x (n, i), W (o, i), b (o) -> y (n, o)   (leading dims of x kept)
    backward  dx = dy W,  dW = dy^T x,  db = sum_n dy

PyTorch's CPU build sends float32 `F.linear` / `mm` to MKL; on the AMD EPYC machines this project is measured on,
MKL's float32 GEMM runs at about half the rate of oneDNN's (`torch.ops.mkldnn._linear_pointwise`, the kernel
PyTorch's own compiler emits for CPU linear layers): 8,768 x 256 -> 1,024, 2 threads, 23.6 against 12.3 ms
forward, 23.4 against 11.2 ms for dx; dW 1.0-1.8x. All three products of a layer are
routed there; a GELU that follows the first FFN layer is fused into its kernel in eval mode (`linear_gelu`).
A backward that builds a graph (`create_graph=True`, e.g. a gradient penalty) computes dx, dW and db with
autograd-tracked matmuls instead, so a double backward is exact; a plain backward keeps the oneDNN products.

Anything else (float64 for the reference tests, bfloat16 autocast, CUDA, a build without oneDNN) takes
`F.linear`, so results and gradients there are unchanged. Parameters and state-dict keys are `nn.Linear`'s:
checkpoints load either way.

Shapes: x (..., i) -> (..., o).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Linear", "linear", "linear_gelu", "onednn_ready"]

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_ready(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when `x @ weight^T` may run on oneDNN: float32 on the CPU, no autocast, oneDNN built in."""
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.numel() > 0 and not torch.is_autocast_enabled("cpu"))


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, post: str = "none") -> torch.Tensor:
    """oneDNN's x W^T (+ b), with an optional fused pointwise `post` ("none" or "gelu")."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post, [], "none")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with all three products on oneDNN (see the module docstring for the equations)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_2d = grad.reshape(-1, grad.shape[-1])  # (n, o)
        grad_x = grad_w = grad_b = None
        if torch.is_grad_enabled():
            # create_graph: a double backward (a gradient penalty) will differentiate these products, so they are
            # autograd-tracked matmuls of the saved x and W (the raw oneDNN op has no derivative of its own)
            if ctx.needs_input_grad[0]:
                grad_x = grad @ weight
            if ctx.needs_input_grad[1]:
                grad_w = grad_2d.t() @ x.reshape(-1, x.shape[-1])
        else:
            if ctx.needs_input_grad[0]:
                # dx = dy W = dy (W^T)^T: oneDNN's product with the transposed weight (o x i floats, a small copy)
                grad_x = _product(grad_2d, weight.t().contiguous(), None).view(x.shape)
            if ctx.needs_input_grad[1]:
                # dW = dy^T x = (dy^T) (x^T)^T, the transposes as strided views
                grad_w = _product(grad_2d.t(), x.reshape(-1, x.shape[-1]).t(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_2d.sum(0)
        return grad_x, grad_w, grad_b


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, init and state-dict keys) that runs float32 CPU products on oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, on oneDNN where `onednn_ready` (what `Linear` runs; for weights made on the fly, such as two
    layers' weights stacked into one product)."""
    if not onednn_ready(x, weight):
        return F.linear(x, weight, bias)
    if _needs_grad(x, weight, bias):
        return _OneDNNLinear.apply(x, weight, bias)
    return _product(x, weight, bias)


def _needs_grad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether autograd must see this product (the raw oneDNN op has no autograd kernel of its own)."""
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))


def linear_gelu(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """GELU(layer(x)) (exact erf GELU), as one oneDNN kernel when nothing needs gradients, else the two ops.
    Callers use it in eval mode only: a reversible layer's training forward runs without gradients and is then
    recomputed with them, and both must take the same kernels for the inversion to be exact."""
    if onednn_ready(x, layer.weight) and not _needs_grad(x, layer.weight, layer.bias):
        return _product(x, layer.weight, layer.bias, "gelu")
    return F.gelu(layer(x))
