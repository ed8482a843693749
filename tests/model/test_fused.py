"""The fused Triton window-attention kernels against the reference kernels: outputs and gradients, every mask,
through Triton's CPU interpreter (CI has no GPU), bfloat16 as `tests/triton_bf16.py` teaches it to compute.

The reference is evaluated in float64, so that each float32 result is measured against exact arithmetic: the
reference's own float32 path rounds in places the fused one does not (its CPU exponential is exp2 of a rescaled
argument, which costs ~1e-4 on a self-only row, whose logit carries the -1e4 self penalty), so comparing two float32
runs would measure the reference's rounding as well.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

triton = pytest.importorskip("triton", reason="the fused kernels need Triton (pip install triton)")
# tests/conftest.py switches Triton's interpreter on where there is no GPU, before Triton is first imported
assert torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"

from reformer import ReformerConfig, ReformerModel  # noqa: E402
from reformer.errors import ConfigError  # noqa: E402
from reformer.model import fused as fused_module  # noqa: E402
from reformer.model import fused_lsh  # noqa: E402
from reformer.model.attention import kernel_in_use  # noqa: E402
from reformer.model.chunked import window_attention  # noqa: E402
from reformer.model.fused import KERNEL_ENV, use_fused  # noqa: E402
from reformer.model.kernels import local_attention  # noqa: E402
from reformer.model.lsh import hash_vectors, lsh_attention, rotation_columns  # noqa: E402

from ..triton_bf16 import BF16_DEVICE, bfloat16_runs  # noqa: E402


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute error over the largest magnitude of the exact result."""
    return float((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-300))


def _attend(kind: str, qk: torch.Tensor, v: torch.Tensor, buckets: torch.Tensor | None, chunk: int,
            valid: torch.Tensor | None, causal: bool, fused: bool) -> torch.Tensor:
    if kind == "lsh":
        assert buckets is not None
        return lsh_attention(qk, v, buckets, chunk, valid, causal, fused=fused)[0]
    return local_attention(qk, v, chunk, valid, causal, fused=fused)[0]


def _outputs_and_grads(kind: str, dtype: torch.dtype, fused: bool, chunk: int, rounds: int, causal: bool,
                       padded: bool, device: str = "cpu") -> list[torch.Tensor]:
    """Output and d(qk), d(v) under a fixed random upstream gradient: (b, h, l, e) each, on the CPU."""
    b, h, n, e = 2, 2, 3, 16
    l = n * chunk
    gen = torch.Generator().manual_seed(chunk + rounds + 7 * causal + 3 * padded)
    qk64 = torch.randn(b, h, l, e, generator=gen, dtype=torch.float64)
    v64 = torch.randn(b, h, l, e, generator=gen, dtype=torch.float64)
    upstream = torch.randn(b, h, l, e, generator=gen, dtype=torch.float64)
    valid = None
    if padded:  # the second row ends a chunk and a half early: whole padding chunks and a partly padded one
        valid = torch.ones(b, l, dtype=torch.bool)
        valid[1, l - chunk - chunk // 2:] = False
    buckets = None
    if kind == "lsh":
        n_buckets = 4
        rotations = torch.randn(h, e, rounds, rotation_columns(n_buckets), generator=gen)
        buckets = hash_vectors(qk64, rotations, n_buckets, valid)
    qk = qk64.to(device, dtype).requires_grad_(True)
    v = v64.to(device, dtype).requires_grad_(True)
    valid = None if valid is None else valid.to(device)
    buckets = None if buckets is None else buckets.to(device)
    out = _attend(kind, qk, v, buckets, chunk, valid, causal, fused)
    grads = torch.autograd.grad((out.double() * upstream.to(device)).sum(), [qk, v])
    return [t.detach().cpu() for t in (out, *grads)]


# every chunk size, round count, mask and kernel appears; 1 round has no rounds to combine, 8 many
CASES = [
    ("lsh", 32, 1, False, False), ("lsh", 32, 8, True, True), ("lsh", 64, 2, True, False),
    ("lsh", 64, 4, False, True), ("lsh", 128, 2, False, False), ("lsh", 128, 8, True, True),
    ("local", 32, 1, False, True), ("local", 64, 1, True, True), ("local", 128, 1, True, False),
]


@pytest.mark.parametrize(("kind", "chunk", "rounds", "causal", "padded"), CASES)
def test_fused_float32_equals_the_reference(kind: str, chunk: int, rounds: int, causal: bool, padded: bool) -> None:
    exact = _outputs_and_grads(kind, torch.float64, False, chunk, rounds, causal, padded)
    fused = _outputs_and_grads(kind, torch.float32, True, chunk, rounds, causal, padded)
    for name, got, want in zip(("out", "d_qk", "d_v"), fused, exact, strict=True):
        assert _relative(got, want) < 1e-5, name


@pytest.mark.parametrize(("kind", "chunk", "rounds", "causal", "padded"), [CASES[1], CASES[7]])
def test_fused_float16_is_as_close_as_the_reference_in_float16(kind: str, chunk: int, rounds: int, causal: bool,
                                                               padded: bool) -> None:
    """float16 holds 11 significant bits (unit roundoff 2^-11 ~ 4.9e-4); both kernels round the inputs, the
    probabilities before P V and the output to it, so each lands a few units from exact arithmetic. The fused
    kernel may not be worse than twice the reference's own float16 error plus one unit, nor above four units."""
    exact = _outputs_and_grads(kind, torch.float64, False, chunk, rounds, causal, padded)
    reference = _outputs_and_grads(kind, torch.float16, False, chunk, rounds, causal, padded)
    fused = _outputs_and_grads(kind, torch.float16, True, chunk, rounds, causal, padded)
    unit = 2.0 ** -11
    for name, got, ref, want in zip(("out", "d_qk", "d_v"), fused, reference, exact, strict=True):
        error = _relative(got, want)
        assert error < 4 * unit, name
        assert error < 2 * _relative(ref, want) + unit, name


@bfloat16_runs()
@pytest.mark.parametrize(("kind", "chunk", "rounds", "causal", "padded"), [CASES[1], CASES[3], CASES[7]])
def test_fused_bfloat16_is_as_close_as_the_reference_in_bfloat16(kind: str, chunk: int, rounds: int,
                                                                 causal: bool, padded: bool) -> None:
    """bfloat16 keeps 8 significant bits (unit roundoff 2^-8): the same bounds as float16, in its units."""
    exact = _outputs_and_grads(kind, torch.float64, False, chunk, rounds, causal, padded)
    reference = _outputs_and_grads(kind, torch.bfloat16, False, chunk, rounds, causal, padded, BF16_DEVICE)
    fused = _outputs_and_grads(kind, torch.bfloat16, True, chunk, rounds, causal, padded, BF16_DEVICE)
    unit = 2.0 ** -8
    for name, got, ref, want in zip(("out", "d_qk", "d_v"), fused, reference, exact, strict=True):
        error = _relative(got, want)
        assert error < 4 * unit, name
        assert error < 2 * _relative(ref, want) + unit, name


@pytest.mark.parametrize("case", ["one chunk", "uneven tiles", "strided", "int64 offsets"])
def test_fused_lsh_edge_shapes_equal_the_reference(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LSH kernels read rows through the sorted order from (b, h, l, e) tensors as the model hands them over:
    a single chunk per round (no look-back), a chunk and head size that fill no power-of-two tile, a view with the
    model's (b, l, h, e) strides, and int64 offsets (what lengths past int32's reach take)."""
    b, h, rounds, chunk, n, e = 2, 2, 3, 32, 3, 16
    if case == "one chunk":
        n = 1
    if case == "uneven tiles":
        chunk, e = 24, 20
    if case == "int64 offsets":
        monkeypatch.setattr(fused_lsh, "_NARROW_LIMIT", 0)
    l = n * chunk
    gen = torch.Generator().manual_seed(5)
    qk64 = torch.randn(b, l, h, e, generator=gen, dtype=torch.float64).transpose(1, 2)  # (b, h, l, e) view
    v64 = torch.randn(b, l, h, e, generator=gen, dtype=torch.float64).transpose(1, 2)
    if case != "strided":
        qk64, v64 = qk64.contiguous(), v64.contiguous()
    upstream = torch.randn(b, h, l, e, generator=gen, dtype=torch.float64)
    valid = torch.ones(b, l, dtype=torch.bool)
    valid[0, l - chunk // 2:] = False
    buckets = hash_vectors(qk64, torch.randn(h, e, rounds, rotation_columns(4), generator=gen), 4, valid)
    runs = []
    for dtype, fused in ((torch.float64, False), (torch.float32, True)):
        qk, v = qk64.to(dtype).detach().requires_grad_(True), v64.to(dtype).detach().requires_grad_(True)
        assert qk.is_contiguous() == (case != "strided")
        out = lsh_attention(qk, v, buckets, chunk, valid, causal=True, fused=fused)[0]
        runs.append([out.detach(), *torch.autograd.grad((out.double() * upstream).sum(), [qk, v])])
    for name, got, want in zip(("out", "d_qk", "d_v"), runs[1], runs[0], strict=True):
        assert _relative(got, want) < 1e-5, name


def test_window_lse_and_a_fully_masked_row_match_exact_arithmetic() -> None:
    """The logsumexp output carries the round weights' gradient; a row whose keys are all padding (its
    lse ~ -1e9, where float32 steps by 64) still gets the exact uniform probabilities in the backward."""
    gen = torch.Generator().manual_seed(3)
    m, c, e = 6, 32, 16
    q, k, v = (torch.randn(m, c, e, generator=gen, dtype=torch.float64) for _ in range(3))
    k = k / k.norm(dim=-1, keepdim=True)
    valid = torch.rand(m, c, generator=gen) > 0.3
    valid[2:4] = False  # chunk 3's window (chunks 2 and 3) holds no valid key
    upstream = torch.randn(m, c, e, generator=gen, dtype=torch.float64)
    lse_upstream = torch.randn(m, c, generator=gen, dtype=torch.float64)
    results = []
    for dtype, fused in ((torch.float64, False), (torch.float32, True)):
        tensors = [t.to(dtype).requires_grad_(True) for t in (q, k, v)]
        out, lse = window_attention(*tensors, None, None, valid, 1, 0, False, c, fused=fused)
        loss = (out.double() * upstream).sum() + (lse.double() * lse_upstream).sum()
        results.append([out.detach(), lse.detach(), *torch.autograd.grad(loss, tensors)])
    exact, fused_run = results
    assert _relative(fused_run[1], exact[1]) < 1e-7  # lse, relative to its largest magnitude (1e9)
    for got, want in zip(fused_run[2:], exact[2:], strict=True):
        assert _relative(got, want) < 1e-5


def test_reversible_backward_with_dropout_stays_exact_with_the_fused_kernel() -> None:
    """The fused kernels are deterministic (no atomic additions), so the reversible stack's recomputation in the
    backward sees the forward's numbers: its gradients equal plain autograd's to float32 rounding."""
    config = ReformerConfig(seq_len=40, d_model=32, n_heads=2, n_layers=2, chunk_size=16, n_buckets=4,
                            n_hash_rounds=2, dropout=0.25, n_features=3, full_attention_threshold=0,
                            activation_budget_mb=0, attention_kernel="fused")
    model = ReformerModel(config).train()
    x = torch.randn(2, 40, 3, generator=torch.Generator().manual_seed(0))

    def grads(reversible: bool, seed: int = 11) -> list[torch.Tensor]:
        model.use_reversible_layers = reversible
        model.reseed(5)
        torch.manual_seed(seed)
        inputs = x.clone().requires_grad_(True)
        return list(torch.autograd.grad((model(inputs) ** 2).sum(), [inputs, *model.parameters()]))

    reversible, plain = grads(True), grads(False)
    for got, want in zip(reversible, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-6)
    assert not torch.allclose(grads(True, seed=12)[0], reversible[0])  # dropout really was on
    first = model.eval()(x)
    assert torch.equal(first, model(x))  # bit-identical repeats


def test_whole_model_fused_equals_reference() -> None:
    config = ReformerConfig(seq_len=40, d_model=32, n_heads=2, n_layers=2, chunk_size=16, n_buckets=4,
                            n_hash_rounds=2, dropout=0.0, n_features=3, full_attention_threshold=0, causal=True)
    x = torch.randn(2, 40, 3, generator=torch.Generator().manual_seed(1))
    runs = []
    for kernel, dtype in (("reference", torch.float64), ("fused", torch.float32)):
        model = ReformerModel(config.replace(attention_kernel=kernel)).to(dtype).train()
        model.reseed(5)
        inputs = x.to(dtype).requires_grad_(True)
        runs.append(torch.autograd.grad((model(inputs) ** 2).sum(), [inputs, *model.parameters()]))
    for got, want in zip(runs[1], runs[0], strict=True):
        assert _relative(got, want) < 1e-5


def test_a_fused_training_step_never_makes_the_host_wait() -> None:
    """A host-device sync (a tensor read back into Python, as `bool(t.all())` does) stalls a GPU's queue of
    kernels and makes a step impossible to capture in a CUDA graph. Reading a value back always goes through
    `aten._local_scalar_dense`, so a dispatch mode sees it on the CPU too: a padded batch's training step
    through the fused kernels, LSH or local, makes none."""
    reads: list[str] = []

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func.overloadpacket in (torch.ops.aten._local_scalar_dense, torch.ops.aten.nonzero):
                reads.append(str(func))
            return func(*args, **(kwargs or {}))

    config = ReformerConfig(seq_len=40, d_model=32, n_heads=2, n_layers=2, chunk_size=16, n_buckets=4,
                            n_hash_rounds=2, dropout=0.0, n_features=3, full_attention_threshold=0)
    x = torch.randn(2, 40, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)  # padded to 48
    for kernel, kind in (("reference", "lsh"), ("fused", "lsh"), ("fused", "local")):
        model = ReformerModel(config.replace(attention_kernel=kernel, attention_type=kind)).train()
        reads.clear()
        with Reads():
            model(x).sum().backward()
        assert (len(reads) == 0) == (kernel == "fused"), (kernel, kind, reads)  # the reference checks its padding


def test_the_gpu_autotuner_keys_on_the_kernels_own_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the LSH kernels are autotuned (`fused.tuned`), which the interpreter skips; a key that names no
    argument would be ignored silently, and one configuration would then serve every length."""
    monkeypatch.setattr(fused_module, "interpreter_active", lambda: False)
    fused_lsh._kernels.cache_clear()
    try:
        kernels = fused_lsh._kernels()
        for tuner in (kernels.forward, kernels.backward):
            assert isinstance(tuner, triton.runtime.Autotuner)
            assert "L" in tuner.keys and set(tuner.keys) <= set(tuner.arg_names)
            assert {(c.num_warps, c.num_stages) for c in tuner.configs} == set(fused_module._TUNE_CONFIGS)
    finally:
        fused_lsh._kernels.cache_clear()  # the interpreted kernels again for the other tests


def test_dispatch_is_automatic_visible_and_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    assert not use_fused("auto", cpu, 16, 64)  # the CPU keeps its blocked kernels, even with the interpreter on
    assert use_fused("fused", cpu, 16, 64)  # forced, through the interpreter
    assert not use_fused("auto", cuda, 512, 64)  # a head too wide for one tile: the reference, automatically
    monkeypatch.setenv(KERNEL_ENV, "reference")
    assert not use_fused("fused", cpu, 16, 64)  # the environment forces the reference
    monkeypatch.setenv(KERNEL_ENV, "fast")
    with pytest.raises(ConfigError, match=KERNEL_ENV):
        use_fused("auto", cpu, 16, 64)
    monkeypatch.delenv(KERNEL_ENV)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="CUDA"):
        use_fused("fused", cpu, 16, 64)
    with pytest.raises(ConfigError, match="attention_kernel"):
        ReformerConfig(attention_kernel="triton")
    config = ReformerConfig(seq_len=4096, chunk_size=64, d_model=256, n_heads=8, attention_kernel="auto")
    assert kernel_in_use(config, "cpu", 4096) == "lsh/reference"
    assert kernel_in_use(config, "cpu", 64) == "full/sdpa"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernel_in_use(config.replace(attention_kernel="fused"), "cpu", 4096) == "lsh/fused"
    assert kernel_in_use(config.replace(attention_type="local"), "cpu", 4096) == "local/reference"
