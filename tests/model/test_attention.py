"""Attention kernels: LSH against full attention, the error/rounds trade-off, maps, local windows, autocast."""

from __future__ import annotations

import pytest
import torch

from reformer import AttentionType, ReformerConfig, ReformerModel
from reformer.model import SharedQKAttention, lsh
from reformer.model.kernels import full_attention, local_attention
from reformer.model.lsh import bucket_factors, hash_vectors, lsh_attention, rotation_columns, sort_by_bucket


def _layer(config: ReformerConfig, qk_scale: float = 1.0) -> SharedQKAttention:
    torch.manual_seed(config.seed)
    layer = SharedQKAttention(config, layer_index=0).double().eval()
    with torch.no_grad():
        layer.to_qk.weight.mul_(qk_scale)
    return layer


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length", [64, 50])  # 50: padded to the chunk with a mask
def test_lsh_with_one_chunk_equals_full(causal: bool, length: int) -> None:
    config = ReformerConfig(d_model=32, n_heads=4, chunk_size=64, n_buckets=8, n_hash_rounds=3, causal=causal,
                            dropout=0.0, full_attention_threshold=0)
    layer = _layer(config)
    x = torch.randn(2, 64, 32, dtype=torch.float64)
    valid = torch.zeros(2, 64, dtype=torch.bool)
    valid[:, :length] = True
    lsh = layer(x, valid).out
    layer.attention_type = AttentionType.FULL
    full = layer(x, valid).out
    torch.testing.assert_close(lsh[:, :length], full[:, :length], rtol=0, atol=1e-6)


def test_lsh_error_falls_as_hash_rounds_grow() -> None:
    torch.manual_seed(0)
    errors = []
    x = torch.randn(2, 1024, 64, dtype=torch.float64)
    for rounds in (1, 2, 4, 8):
        config = ReformerConfig(d_model=64, n_heads=4, chunk_size=32, n_buckets=32, n_hash_rounds=rounds,
                                dropout=0.0, seed=3, full_attention_threshold=0)
        layer = _layer(config, qk_scale=4.0)  # peaked attention: the regime LSH approximates
        lsh = layer(x).out
        layer.attention_type = AttentionType.FULL
        full = layer(x).out
        errors.append(((lsh - full).norm() / full.norm()).item())
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[3] < 0.5 * errors[0], errors


def test_lsh_never_builds_a_length_squared_tensor() -> None:
    b, h, l, e, c = 1, 2, 4096, 8, 32
    qk, v = torch.randn(b, h, l, e), torch.randn(b, h, l, e)
    buckets = hash_vectors(qk, torch.randn(h, e, 2, 16), 32, None)
    largest = 0

    def track(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        largest = max(largest, tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(track, lambda t: t):
        lsh_attention(qk.requires_grad_(), v.requires_grad_(), buckets, c)[0].sum().backward()
    assert largest < l * l // 8, largest  # (b, h, r, n, c, 2c) = 2*2*4096*64 = l*l/8 at most


def test_attention_map_sums_to_one_and_matches_full_when_exact() -> None:
    qk, v = torch.randn(1, 2, 32, 8, dtype=torch.float64), torch.randn(1, 2, 32, 8, dtype=torch.float64)
    buckets = hash_vectors(qk, torch.randn(2, 8, 4, 4, dtype=torch.float64), 8, None)
    _, lsh_map = lsh_attention(qk, v, buckets, chunk_size=32, return_map=True)
    _, full_map = full_attention(qk, v, return_map=True)
    assert lsh_map is not None and full_map is not None
    dense = lsh_map.to_dense()
    torch.testing.assert_close(dense.sum(-1), torch.ones(1, 2, 32, dtype=torch.float64))
    torch.testing.assert_close(dense, full_map.to_dense())


def test_lsh_map_is_sparse_and_in_original_order() -> None:
    qk, v = torch.randn(1, 1, 256, 8, dtype=torch.float64), torch.randn(1, 1, 256, 8, dtype=torch.float64)
    buckets = hash_vectors(qk, torch.randn(1, 8, 2, 8, dtype=torch.float64), 16, None)
    out, amap = lsh_attention(qk, v, buckets, chunk_size=16, return_map=True)
    assert amap is not None and amap.indices.shape == (1, 1, 256, 2 * 32)
    # the map reproduces the output: out_i = sum_j w_ij v_j
    rebuilt = amap.to_dense() @ v
    torch.testing.assert_close(rebuilt, out)


def test_local_attention_window_and_causality() -> None:
    qk, v = torch.randn(1, 2, 96, 8, dtype=torch.float64), torch.randn(1, 2, 96, 8, dtype=torch.float64)
    _, amap = local_attention(qk, v, chunk_size=32, causal=True, return_map=True)
    assert amap is not None
    dense = amap.to_dense()[0, 0]
    rows, cols = torch.nonzero(dense > 1e-12, as_tuple=True)
    assert bool((cols <= rows).all()), "causal local attention looked ahead"
    assert bool((rows - cols < 64).all()), "window is the chunk and the one before it"
    # with the window covering everything, local equals full
    out_local, _ = local_attention(qk[:, :, :32], v[:, :, :32], chunk_size=32)
    out_full, _ = full_attention(qk[:, :, :32], v[:, :, :32])
    torch.testing.assert_close(out_local, out_full)


@pytest.mark.parametrize("kind", ["full", "lsh", "local"])
def test_bfloat16_autocast_is_finite_with_padding(kind: str) -> None:
    config = ReformerConfig(d_model=32, n_heads=4, chunk_size=16, n_buckets=8, attention_type=kind,  # type: ignore[arg-type]
                            dropout=0.0, full_attention_threshold=0)
    layer = SharedQKAttention(config, layer_index=0).eval()
    x = torch.randn(2, 64, 32)
    valid = torch.ones(2, 64, dtype=torch.bool)
    valid[:, 40:] = False
    valid[1, :2] = False  # left padding at positions 0 and 1 too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x, valid).out
    assert torch.isfinite(out.float()).all()


def test_large_bucket_counts_are_hashed_as_two_factors() -> None:
    assert bucket_factors(64) == (64,) and bucket_factors(128) == (128,)  # at or below FACTOR_ABOVE: one hash
    assert bucket_factors(130) == (130,)  # not divisible by 4: one hash
    assert bucket_factors(256) == (16, 16) and bucket_factors(200) == (10, 20) and bucket_factors(4096) == (64, 64)
    assert rotation_columns(256) == 16 and rotation_columns(64) == 32

    gen = torch.Generator().manual_seed(0)
    qk = torch.randn(2, 3, 500, 16, generator=gen)  # (b, h, l, e)
    rotations = torch.randn(3, 16, 2, rotation_columns(256), generator=gen)  # (h, e, r, 8 + 8)
    buckets = hash_vectors(qk, rotations, 256, None).long()  # (b, h, r, l)
    # each factor is the plain angular hash on its own columns; the bucket is a + 16 * b
    first = hash_vectors(qk, rotations[..., :8].contiguous(), 16, None).long()
    second = hash_vectors(qk, rotations[..., 8:].contiguous(), 16, None).long()
    assert torch.equal(buckets, first + 16 * second)
    assert buckets.min() >= 0 and buckets.max() < 256 and len(buckets.unique()) > 200

    # still locality-sensitive: near neighbours share a bucket far more often than independent vectors
    near = qk + 0.05 * torch.randn(qk.shape, generator=gen)
    far = torch.randn(qk.shape, generator=gen)
    same_near = (hash_vectors(near, rotations, 256, None).long() == buckets).float().mean()
    same_far = (hash_vectors(far, rotations, 256, None).long() == buckets).float().mean()
    assert same_near > 0.6 and same_far < 0.02


@pytest.mark.parametrize("n_buckets", [20, 258])  # column ids in int8 (10 columns) and in int16 (129 columns)
def test_hash_is_the_argmax_over_plus_and_minus_projections(n_buckets: int) -> None:
    # Reformer eq. 3 written out: h(x) = argmax([xR; -xR]), per head and round; padding gets the extra bucket
    gen = torch.Generator().manual_seed(1)
    qk = torch.randn(2, 3, 300, 8, generator=gen)  # (b, h, l, e)
    assert rotation_columns(n_buckets) == n_buckets // 2  # one hash, not factorised
    rotations = torch.randn(3, 8, 4, n_buckets // 2, generator=gen)  # (h, e, r, u)
    valid = torch.ones(2, 300, dtype=torch.bool)
    valid[1, 290:] = False
    rotated = torch.einsum("bhle,heru->bhrlu", qk, rotations)
    expected = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (b, h, r, l)
    expected[1, :, :, 290:] = n_buckets
    assert torch.equal(hash_vectors(qk, rotations, n_buckets, valid).long(), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # hashed in float32 whatever the compute dtype
        assert torch.equal(hash_vectors(qk, rotations, n_buckets, valid).long(), expected)


@pytest.mark.parametrize(("dtype", "top"), [(torch.uint8, 65), (torch.int16, 1025), (torch.int64, 65)])
def test_sort_by_bucket_is_a_stable_sort_of_each_round(dtype: torch.dtype, top: int) -> None:
    # every round in (bucket, position) order: the flat radix-sorted keys (uint8, int16) and the row-wise
    # fallback (other dtypes) both give exactly a stable argsort of each row, with many ties per bucket
    gen = torch.Generator().manual_seed(3)
    buckets = torch.randint(0, top, (2, 3, 4, 777), generator=gen).to(dtype)  # (b, h, r, l)
    buckets[1, 2, 3] = 7  # a round with every position in one bucket
    got = sort_by_bucket(buckets)
    assert got.dtype == torch.int64 and got.shape == buckets.shape
    expected = torch.stack([torch.tensor(sorted(range(777), key=lambda i, row=row: (int(row[i]), i)))
                            for row in buckets.reshape(-1, 777)]).view(buckets.shape)
    assert torch.equal(got, expected)
    # flat: the same order as positions of the flattened rows, row * l + position (what the fused kernels read)
    rows = torch.arange(2 * 3 * 4).view(2, 3, 4, 1) * 777
    assert torch.equal(sort_by_bucket(buckets, flat=True), expected + rows)
    assert torch.equal(sort_by_bucket(buckets), expected)  # the kept row offsets are not changed by use


def test_bfloat16_autocast_model_output_is_close_to_float32() -> None:
    config = ReformerConfig(seq_len=300, d_model=32, n_heads=4, n_layers=2, chunk_size=32, n_buckets=8,
                            n_features=3, dropout=0.0, full_attention_threshold=0)
    model = ReformerModel(config).eval()
    x = torch.randn(4, 300, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        exact = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
    assert torch.isfinite(low).all()
    assert (low - exact).abs().max() < 0.05 * exact.abs().max() + 0.02, (low, exact)


def _padded(qk: torch.Tensor, v: torch.Tensor, length: int, gen: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qk, v (1, h, R, e) padded with random values to `length`, and the (1, length) validity mask."""
    h, real, e = qk.shape[1:]
    pad = length - real
    fill = [torch.randn(1, h, pad, e, generator=gen, dtype=torch.float64) for _ in range(2)]
    valid = torch.zeros(1, length, dtype=torch.bool)
    valid[:, :real] = True
    return torch.cat([qk, fill[0]], dim=2), torch.cat([v, fill[1]], dim=2), valid


@pytest.mark.parametrize("causal", [False, True])
def test_an_lsh_output_does_not_depend_on_how_far_the_batch_pads(causal: bool) -> None:
    # padding sorts last; each round's first chunk used to look back at the round's last chunk, which holds real
    # keys or only padding depending on the padded length (up to 0.37 apart); now the last chunk with a real key
    gen = torch.Generator().manual_seed(5)
    qk = torch.randn(1, 2, 40, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 2, 40, 8, generator=gen, dtype=torch.float64)
    rotations = torch.randn(2, 8, 2, 2, generator=gen, dtype=torch.float64)  # 4 buckets, 2 rounds
    outs, grads = [], []
    for length in (48, 64, 96):
        q_pad, v_pad, valid = _padded(qk, v, length, gen)
        q_pad.requires_grad_(True)
        v_pad.requires_grad_(True)
        buckets = hash_vectors(q_pad, rotations, 4, valid)
        out, _ = lsh_attention(q_pad, v_pad, buckets, 16, valid, causal)
        (out[:, :, :40] * torch.linspace(-1, 1, 8, dtype=torch.float64)).sum().backward()
        outs.append(out[:, :, :40].detach())
        grads.append((q_pad.grad[:, :, :40], v_pad.grad[:, :, :40], q_pad.grad[:, :, 40:], v_pad.grad[:, :, 40:]))
    for other, other_grads in zip(outs[1:], grads[1:], strict=True):
        torch.testing.assert_close(other, outs[0], rtol=0, atol=1e-12)
        for got, want in zip(other_grads[:2], grads[0][:2], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        assert float(other_grads[2].abs().max()) == float(other_grads[3].abs().max()) == 0.0  # padding: none


def test_wrap_targets_are_kept_on_the_mask_until_it_changes() -> None:
    """Every layer asks with the same mask: the targets are computed once, and again after an in-place write, for
    another chunk size, or for an inference-mode mask (which counts no writes)."""
    valid = torch.ones(2, 64, dtype=torch.bool)
    valid[1, 20:] = False
    first = lsh.wrap_targets(valid, 64, 8)
    assert first is not None and first.tolist() == [7, 2]
    assert lsh.wrap_targets(valid, 64, 8) is first
    assert lsh.wrap_targets(valid, 64, 16).tolist() == [3, 1]  # (20 + 15) // 16 - 1
    valid[1, 20:40] = True  # in place: the kept targets no longer hold
    assert lsh.wrap_targets(valid, 64, 8).tolist() == [7, 4]
    with torch.inference_mode():
        frozen = torch.ones(1, 64, dtype=torch.bool)
        assert lsh.wrap_targets(frozen, 64, 8).tolist() == [7]
        frozen[0, 9:] = False
        assert lsh.wrap_targets(frozen, 64, 8).tolist() == [1]


def test_the_wrapped_look_back_has_exact_gradients() -> None:
    # the copied look-back chunk comes from a different sorted position in each batch row; its gradient is
    # folded back there (gradcheck of the real positions' outputs, float64, rows padded by 0, 1 and 2 chunks)
    gen = torch.Generator().manual_seed(6)
    qk = torch.randn(3, 1, 32, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, 1, 32, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(3, 32, dtype=torch.bool)
    valid[1, 24:] = False
    valid[2, 16:] = False
    buckets = hash_vectors(qk.detach(), torch.randn(1, 4, 2, 2, generator=gen, dtype=torch.float64), 4, valid)
    assert torch.equal(lsh.wrap_chunks(valid, 32, 8), torch.tensor([3, 2, 1]))
    real = valid[:, None, :, None]  # the outputs at padded positions are never read (their windows may be
    # padding only, a degenerate softmax that gradcheck does not hold before or after this change)
    assert torch.autograd.gradcheck(lambda a, b: lsh_attention(a, b, buckets, 8, valid)[0] * real, (qk, v))


def test_a_model_gives_a_padded_sequence_the_output_it_gives_it_alone() -> None:
    config = ReformerConfig(seq_len=64, d_model=16, n_heads=2, n_layers=2, chunk_size=8, n_buckets=4,
                            n_hash_rounds=2, n_features=3, dropout=0.0, pooling="last")
    model = ReformerModel(config).double().eval()
    assert config.kernel_for(40, AttentionType.LSH) is AttentionType.LSH
    gen = torch.Generator().manual_seed(7)
    short = torch.randn(1, 40, 3, generator=gen, dtype=torch.float64)
    batch = torch.randn(2, 64, 3, generator=gen, dtype=torch.float64)
    batch[0, :40] = short[0]
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[0, 40:] = False
    with torch.no_grad():
        torch.testing.assert_close(model(batch, mask)[0], model(short)[0], rtol=0, atol=1e-12)


def test_key_normalisation_backward_is_f_normalize_s() -> None:
    import torch.nn.functional as F

    from reformer.model.masking import normalize_keys

    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(normalize_keys, (x,))
    y = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    y[0, 0, 0] = 1e-9  # a key whose norm is clamped at eps
    y.requires_grad_(True)
    grad = torch.randn_like(y)
    ours, = torch.autograd.grad(normalize_keys(y), y, grad)
    reference, = torch.autograd.grad(F.normalize(y, p=2.0, dim=-1, eps=1e-6), y, grad)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(normalize_keys(y), F.normalize(y, p=2.0, dim=-1, eps=1e-6))
