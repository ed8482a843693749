"""Window attention as fused Triton kernels: one program per query chunk, the window scores never in global memory.

Shape legend: M chunks in the flat buffer, c queries per chunk, ck keys per key chunk, e head dim,
s = before + 1 + after key chunks per window, w = s * ck keys per window.

The same computation as `chunked.window_attention` (query chunk j attends to key chunks j - before .. j + after
of the flat buffer; the self penalty, the causal mask on original positions and the padding mask exactly as
`chunked.chunk_scores`), but where the reference walks over blocks of chunks with a handful of PyTorch kernels
each (scores, masks, exponentials, sums, products), every step here runs inside one kernel per pass, on tiles
held in registers and shared memory. Local attention passes its chunks with one padding chunk at each end of
every head, so that its windows are runs of neighbouring chunks of one buffer. (LSH attention has kernels of
its own, `fused_lsh.py`, which read the rows through the sorted order instead of from a sorted copy.)

This module also holds what both families share: the dispatch (`use_fused`), the float32 product mode
(`f32_dot`) and the autotuning (`tuned`).

Forward, per query chunk, by the online softmax (Milakov and Gimelshein 2018; FlashAttention, Dao et al. 2022),
over the key chunks t = 0 .. s-1 of its window:

    S_t = Q K_t^T (+ self penalty, masks),  m' = max(m, rowmax S_t),  l' = l e^(m - m') + rowsum e^(S_t - m'),
    A' = A e^(m - m') + e^(S_t - m') V_t;   out = A / l,  lse = m + ln l

Backward, from the saved m and ln l (no probability is stored), in two kernels that each own what they write, so no
atomic additions and bit-reproducible gradients (the reversible stack recomputes and differentiates each layer
and needs the same numbers every time):

    P = exp((S - m) - ln l),  D = rowsum(dO * O) - d_lse,  dS = P * (dO V^T - D)
    per key chunk i, over the query chunks whose windows hold it:  dV_i = sum P^T dO,  dK_i = sum dS^T Q
    per query chunk j, over its window:                             dQ_j = sum dS K

The `d_lse` term carries the gradient of the multi-round combination, as in the reference.

Triton is imported on first use, so importing the model needs no Triton. It runs on CUDA; with the environment
variable `TRITON_INTERPRET=1` set before that first use it also runs on the CPU, through Triton's interpreter,
which is how the tests check it against the reference on machines without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["KERNEL_ENV", "f32_dot", "fused_supported", "interpreter_active", "triton_available", "tuned",
           "use_fused", "window_attention_fused"]

# widest head dimension the kernels hold in one tile (the project's configurations use 16 .. 64)
_MAX_HEAD_DIM = 256
_MAX_CHUNK = 256


def triton_available() -> bool:
    """Whether Triton is installed (it is with PyTorch's CUDA wheels on Linux)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_active() -> bool:
    """Whether Triton's CPU interpreter is switched on (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def fused_supported(device: torch.device, head_dim: int, chunk_size: int) -> str | None:
    """None when the fused kernels can run these shapes on `device`, else the reason they cannot."""
    if not triton_available():
        return "Triton is not installed (pip install triton, or a CUDA build of PyTorch)"
    if device.type != "cuda" and not interpreter_active():
        return f"the fused kernels run on CUDA devices, not {device.type} (TRITON_INTERPRET=1 runs them on the CPU)"
    if head_dim > _MAX_HEAD_DIM:
        return f"head dimension {head_dim} is above the fused kernels' {_MAX_HEAD_DIM}"
    if chunk_size > _MAX_CHUNK:
        return f"chunk size {chunk_size} is above the fused kernels' {_MAX_CHUNK}"
    return None


KERNEL_ENV = "REFORMER_ATTENTION_KERNEL"
"""Environment variable that overrides `ReformerConfig.attention_kernel` ("auto", "fused" or "reference")."""


def use_fused(setting: str, device: torch.device, head_dim: int, chunk_size: int) -> bool:
    """Whether window attention runs the fused kernels, for a `ReformerConfig.attention_kernel` setting.

    `REFORMER_ATTENTION_KERNEL`, when set, takes the setting's place. "auto" is fused on CUDA where the kernels
    can run these shapes; "fused" where they cannot is an error naming why (the interpreter makes the CPU one
    of the places they can run).
    """
    choice = os.environ.get(KERNEL_ENV) or setting
    if choice not in ("auto", "fused", "reference"):
        raise ConfigError(f"{KERNEL_ENV}={choice!r} is invalid: use auto, fused or reference")
    if choice == "reference":
        return False
    reason = fused_supported(device, head_dim, chunk_size)
    if choice == "fused":
        if reason is not None:
            raise ConfigError(f"the fused attention kernel cannot run here: {reason}; use attention_kernel "
                              f"'auto' or 'reference' (or unset {KERNEL_ENV})")
        return True
    return device.type == "cuda" and reason is None


# (warps, pipeline stages) tried on a GPU: 4 warps leave the LSH backward a few spilled registers at chunk 64, 8 none
_TUNE_CONFIGS = ((4, 1), (4, 2), (8, 1), (8, 2))


def tuned(kernel: Any, key: list[str]) -> Any:
    """`kernel` autotuned on a GPU over `_TUNE_CONFIGS`, timed once per value of the `key` arguments and the
    argument dtypes; under the interpreter, which has neither warps nor stages, the kernel itself.

    Every configuration computes the same outputs by plain stores (no accumulation into its outputs), so the
    timing runs leave nothing behind, and once chosen a configuration stays: a reversible backward's recomputed
    forward runs the one its forward ran.
    """
    if interpreter_active():
        return kernel
    import triton

    configs = [triton.Config({}, num_warps=warps, num_stages=stages) for warps, stages in _TUNE_CONFIGS]
    hook = {"early_config_prune": _compiled_together(kernel)}
    return triton.autotune(configs=configs, key=key, prune_configs_by=hook)(kernel)


def _compiled_together(kernel: Any) -> Any:
    """An autotuner hook that compiles every configuration at once, on threads, before they are timed.

    The autotuner calls it once per new key, just before timing the configurations one after another, each
    compiled by its first launch: four compilations in a row, seconds each for the LSH backward, on the first
    step of every new shape. Triton compiles mostly outside Python's lock (its passes in C++, `ptxas` a process
    of its own), so on threads they take about as long as the slowest. `warmup` compiles for exactly the key that
    the launch will look up (the same arguments and options) and launches nothing; the configurations are
    returned unpruned. A Triton without asynchronous compilation keeps compiling each as it is timed.
    """
    def compile_all(configs: list[Any], named_args: dict[str, Any], **meta: Any) -> list[Any]:
        try:
            from triton.runtime._async_compile import AsyncCompileMode
        except ImportError:
            return configs
        args = list(named_args.values())  # the positional arguments, in order; the constexprs are in `meta`
        # a launch's own keywords come along with the constexprs (`kernel[grid](...)` runs the autotuner with
        # grid= and warmup=); `warmup` takes the grid itself
        meta.pop("warmup", None)
        grid = meta.pop("grid", (1,))
        # a configuration that fails to compile is left to the autotuner, which compiles it again as it times it
        # and sets it aside (its usual handling of a kernel that does not fit)
        with ThreadPoolExecutor(len(configs)) as pool, AsyncCompileMode(pool, ignore_errors=True):
            for config in configs:
                kernel.warmup(*args, grid=grid, **meta, **config.all_kwargs())
        return configs
    return compile_all


def f32_dot(dtype: torch.dtype, device: torch.device) -> str | None:
    """How the kernels multiply float32 tiles (None for 16-bit ones).

    "tf32x3" on GPUs with TF32 tensor cores (compute capability 8.0 on): each operand is split into a TF32 value
    and its TF32 remainder and three tensor-core products are summed, about float32's accuracy (plain TF32 keeps
    10 mantissa bits and would cost the 1e-5 match with the reference). The alternative, "ieee", multiplies on
    the ordinary float32 units, and at chunk 64 its tiles spill registers to memory in every kernel
    (`benchmarks/gpu/compile_check.py`). Older GPUs and the interpreter use "ieee".
    """
    if dtype != torch.float32:
        return None
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        if _capability(index) >= (8, 0):
            return "tf32x3"
    return "ieee"


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    # asked once per device: every float32 launch needs it
    return torch.cuda.get_device_capability(index)


def _tile(n: int) -> int:
    """Tile extent for n rows or columns: a power of two of at least 16 (`tl.dot`'s smallest operand)."""
    return max(16, 1 << (max(1, n) - 1).bit_length())


@functools.cache
def _kernels() -> Any:
    from . import _fused_kernels  # imports Triton

    return _fused_kernels


def _launch_args(q: torch.Tensor, k: torch.Tensor, before: int, after: int, causal: bool,
                 self_offset: int | None, has_valid: bool) -> dict[str, Any]:
    c, e, ck = q.shape[1], q.shape[2], k.shape[1]
    return {"SPAN": before + 1 + after, "BEFORE": before, "SELF_OFFSET": -1 if self_offset is None else self_offset,
            "POS_SELF": self_offset is None, "CAUSAL": causal, "HAS_VALID": has_valid,
            "F32_DOT": f32_dot(q.dtype, q.device), "BLOCK_C": _tile(c), "BLOCK_K": _tile(ck), "BLOCK_E": _tile(e)}


def _placeholder(t: torch.Tensor | None, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Triton needs a tensor for every pointer argument, even one a constexpr switch leaves unread; never read, so
    # left unfilled (filling it would be one more kernel launch a call)
    return like.new_empty(1, dtype=dtype) if t is None else t


class _FusedWindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor | None,
                k_pos: torch.Tensor | None, key_valid: torch.Tensor | None, before: int, after: int, causal: bool,
                self_offset: int | None) -> Any:
        m, c, e = q.shape
        ck = k.shape[1]
        out = torch.zeros(m, c, e, dtype=v.dtype, device=q.device)  # the edge chunks stay zero
        lse = torch.zeros(m, c, dtype=torch.float32, device=q.device)
        row_max, log_sum = torch.zeros_like(lse), torch.zeros_like(lse)
        q_pos_t = _placeholder(q_pos, q, torch.int64)
        k_pos_t = _placeholder(k_pos, q, torch.int64)
        valid_t = _placeholder(key_valid, q, torch.bool)  # Triton reads a bool tensor as bytes: no conversion
        meta = _launch_args(q, k, before, after, causal, self_offset, key_valid is not None)
        start, stop = before, m - after
        if stop > start:
            _kernels().forward[(stop - start,)](q, k, v, out, lse, row_max, log_sum, q_pos_t, k_pos_t, valid_t,
                                                c, ck, e, start, **meta)
        ctx.save_for_backward(q, k, v, out, row_max, log_sum, q_pos_t, k_pos_t, valid_t)
        ctx.meta = meta
        ctx.window = (start, stop)
        return out, lse

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor, d_lse: torch.Tensor) -> Any:
        q, k, v, out, row_max, log_sum, q_pos, k_pos, valid = ctx.saved_tensors
        start, stop = ctx.window
        m, c, e = q.shape
        ck = k.shape[1]
        d_out = d_out.contiguous().to(q.dtype)
        # D = rowsum(dO * O) - d_lse, (M, c) float32
        delta = (d_out.float() * out.float()).sum(dim=-1) - d_lse.float()
        dq = torch.zeros_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        kernels = _kernels()
        kernels.backward_kv[(m,)](q, k, v, d_out, row_max, log_sum, delta, dk, dv, q_pos, k_pos, valid, c, ck, e,
                                  start, stop, **ctx.meta)
        if stop > start:
            kernels.backward_q[(stop - start,)](q, k, v, d_out, row_max, log_sum, delta, dq, q_pos, k_pos, valid,
                                                c, ck, e, start, **ctx.meta)
        return dq, dk, dv, None, None, None, None, None, None, None


def window_attention_fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor | None,
                           k_pos: torch.Tensor | None, key_valid: torch.Tensor | None, before: int, after: int,
                           causal: bool = False, self_offset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`chunked.window_attention` in fused kernels: the same arguments, outputs and gradients.

    Args:
        q: queries (M, c, e); k: unit keys (M, ck, e); v: values (M, ck, e), one dtype (float32, bfloat16 or
            float16; accumulation is float32 throughout).
        q_pos, k_pos: original positions (M, c), (M, ck) int64, needed for `causal` or `self_offset=None`.
        key_valid: (M, ck) bool, False for padding keys; None = all valid.
        before, after, causal, self_offset: as `chunked.window_attention`.
    Returns:
        out (M, c, e) in v's dtype and lse (M, c) float32; zero for the first `before` and last `after` chunks.
    """
    def ready(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.contiguous()

    out, lse = _FusedWindowAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), ready(q_pos),
                                           ready(k_pos), ready(key_valid), before, after, causal, self_offset)
    return out, lse
