"""ReformerModel: shapes, causality, padding, determinism, reproducibility, learning, attention maps."""

from __future__ import annotations

import pytest
import torch

from reformer import AttentionType, ReformerConfig, ReformerModel
from reformer.errors import ConfigError


def _config(**changes: object) -> ReformerConfig:
    base = ReformerConfig(seq_len=70, d_model=32, n_heads=4, n_layers=2, chunk_size=16, n_buckets=8,
                          n_hash_rounds=2, n_features=3, dropout=0.0, full_attention_threshold=0)
    return base.replace(**changes)


@pytest.mark.parametrize("kind", ["full", "lsh", "local"])
def test_forward_shapes_for_regression_and_classification(kind: str) -> None:
    x = torch.randn(4, 70, 3)
    assert ReformerModel(_config(attention_type=kind, n_outputs=2))(x).shape == (4, 2)
    logits = ReformerModel(_config(attention_type=kind, task="classification", n_classes=3))(x)
    assert logits.shape == (4, 3)
    assert ReformerModel(_config(attention_type=kind, pooling="mean", positional="learned"))(x).shape == (4, 1)
    flat = ReformerModel(_config(attention_type=kind, pooling="flatten", n_outputs=24))
    assert flat(x).shape == (4, 24)
    with pytest.raises(ValueError, match="seq_len=70"):
        flat(x[:, :60])


def test_wrong_input_is_a_clear_error() -> None:
    model = ReformerModel(_config())
    with pytest.raises(ValueError, match="n_features=3"):
        model(torch.randn(2, 70, 5))
    with pytest.raises(ValueError, match="learned position table"):
        ReformerModel(_config(positional="learned"))(torch.randn(1, 71, 3))


@pytest.mark.parametrize("kind", ["full", "lsh", "local"])
def test_causal_outputs_ignore_the_future(kind: str) -> None:
    """Perturbing inputs after t leaves the outputs at and before t unchanged (per-position, last pooling)."""
    config = _config(attention_type=kind, causal=True)
    model = ReformerModel(config).double().eval()
    x = torch.randn(1, 70, 3, dtype=torch.float64)
    for t in (0, 20, 47):
        perturbed = x.clone()
        perturbed[:, t + 1:] += torch.randn_like(perturbed[:, t + 1:]) * 5
        # the prediction from the prefix ending at t: mask everything after t as padding
        mask = torch.zeros(1, 70, dtype=torch.bool)
        mask[:, : t + 1] = True
        torch.testing.assert_close(model(x, mask), model(perturbed, mask), rtol=0, atol=1e-10)
        # and without a mask, the prefix alone gives the same answer as the full causal run truncated at t
        torch.testing.assert_close(model(x[:, : t + 1]), model(perturbed[:, : t + 1]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["full", "lsh", "local"])
def test_padded_values_do_not_change_the_output(kind: str) -> None:
    model = ReformerModel(_config(attention_type=kind)).double().eval()
    x = torch.randn(2, 70, 3, dtype=torch.float64)
    mask = torch.ones(2, 70, dtype=torch.bool)
    mask[0, :2] = False  # left padding at positions 0 and 1 (trax's unmaskable positions)
    mask[1, 60:] = False  # right padding
    junk = x.clone()
    junk[~mask] = torch.randn(int((~mask).sum()), 3, dtype=torch.float64) * 100
    torch.testing.assert_close(model(x, mask), model(junk, mask), rtol=0, atol=1e-10)


def test_eval_mode_is_deterministic_and_training_hashes_afresh() -> None:
    model = ReformerModel(_config(dropout=0.1)).eval()
    x = torch.randn(2, 70, 3)
    assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_eval_rotations_are_drawn_once_and_are_those_of_the_seed() -> None:
    model = ReformerModel(_config()).eval()
    layer = model.blocks[0].attn
    first = layer.rotations(torch.device("cpu"))
    assert layer.rotations(torch.device("cpu")) is first  # kept: not drawn and copied on every call
    fresh = ReformerModel(_config()).eval().blocks[0].attn  # the same seed, nothing kept yet
    assert torch.equal(fresh.rotations(torch.device("cpu")), first)
    other = ReformerModel(_config(seed=_config().seed + 1)).eval().blocks[0].attn
    assert not torch.equal(other.rotations(torch.device("cpu")), first)
    model.train()
    assert not torch.equal(layer.rotations(torch.device("cpu")), layer.rotations(torch.device("cpu")))


def test_rotations_kept_from_an_inference_mode_call_serve_a_later_gradient() -> None:
    model = ReformerModel(_config()).eval()
    x = torch.randn(2, 70, 3)
    with torch.inference_mode():
        expected = model(x)
    x.requires_grad_(True)
    out = model(x)  # eval, gradients on: reads the rotations an inference-mode call drew
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=1e-6)  # no_grad reads one position: rounding


def test_the_position_table_is_made_once_and_sliced_for_shorter_inputs() -> None:
    from reformer.model.embedding import sinusoidal_positions

    model = ReformerModel(_config()).eval()
    embed = model.embed
    table = embed.sinusoidal_table(40, torch.device("cpu"), torch.float32)
    assert embed.sinusoidal_table(70, torch.device("cpu"), torch.float32).data_ptr() == table.data_ptr()  # kept
    assert torch.equal(table, sinusoidal_positions(40, 32))  # a slice of the longer table: the same values
    longer = embed.sinusoidal_table(100, torch.device("cpu"), torch.float32)  # past seq_len: made afresh
    assert torch.equal(longer, sinusoidal_positions(100, 32))
    wide = embed.sinusoidal_table(70, torch.device("cpu"), torch.float64)  # from float64 for a float64 model
    assert wide.dtype == torch.float64 and torch.equal(wide, sinusoidal_positions(70, 32, dtype=torch.float64))
    half = embed.sinusoidal_table(70, torch.device("cpu"), torch.bfloat16)
    assert torch.equal(half, sinusoidal_positions(70, 32).to(torch.bfloat16))
    assert "_table" not in str(list(model.state_dict()))  # not part of a checkpoint
    x = torch.randn(2, 70, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ReformerModel(_config()).eval()(x), rtol=0, atol=0)


def _train(seed: int, steps: int = 3) -> list[float]:
    torch.manual_seed(123)  # data and dropout
    model = ReformerModel(_config(seed=seed, dropout=0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(8, 70, 3), torch.randn(8, 1)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_fixed_seed_reproduces_training() -> None:
    assert _train(seed=7) == _train(seed=7)
    assert _train(seed=7) != _train(seed=8)


def test_model_construction_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ReformerModel(_config())
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("reversible", [True, False])
def test_overfits_a_tiny_batch(reversible: bool) -> None:
    torch.manual_seed(0)
    model = ReformerModel(_config(use_reversible_layers=reversible, activation_budget_mb=0))
    x, y = torch.randn(4, 70, 3), torch.randn(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first, (first, loss.item())


def test_weights_trained_with_one_type_run_with_another() -> None:
    lsh = ReformerModel(_config(attention_type="lsh"))
    full = ReformerModel(_config(attention_type="full", seed=99))
    full.load_state_dict(lsh.state_dict())  # identical parameterisation: strict load succeeds
    lsh.set_attention_type(AttentionType.FULL)
    x = torch.randn(2, 70, 3)
    torch.testing.assert_close(lsh.eval()(x), full.eval()(x))
    assert lsh.attention_type is AttentionType.FULL and lsh.config.attention_type is AttentionType.LSH
    with pytest.raises(ConfigError, match="attention type 'sparse' is invalid: use \"full\", \"lsh\" or \"local\""):
        lsh.set_attention_type("sparse")
    assert lsh.attention_type is AttentionType.FULL  # unchanged


@pytest.mark.parametrize("kind", ["full", "lsh", "local"])
def test_predict_with_attention(kind: str) -> None:
    model = ReformerModel(_config(attention_type=kind)).eval()
    x = torch.randn(2, 70, 3)
    pred, layers = model.predict_with_attention(x)
    torch.testing.assert_close(pred, model(x))
    assert [a.layer for a in layers] == [0, 1]
    dense = layers[0].to_dense()
    assert dense.shape == (2, 4, 70, 70)  # padding removed
    torch.testing.assert_close(dense.sum(-1), torch.ones(2, 4, 70), atol=1e-5, rtol=0)
    if kind == "lsh":  # sparse: rounds x (chunk + look-back) keys per position, not 70
        assert layers[0].map.indices.shape[-1] == 2 * 2 * 16


def test_lsh_at_or_below_the_threshold_is_exact_full_attention() -> None:
    # threshold 2 * chunk * rounds = 64: at 64 positions the LSH model computes full attention (no padding, no
    # buckets), identical to the same weights run as FULL; at 70 it hashes and its output differs
    lsh = ReformerModel(_config(full_attention_threshold=-1, pooling="mean")).eval()
    full = ReformerModel(_config(full_attention_threshold=-1, pooling="mean", attention_type="full")).eval()
    full.load_state_dict(lsh.state_dict())
    x = torch.randn(2, 70, 3)
    torch.testing.assert_close(lsh(x[:, :64]), full(x[:, :64]))
    assert lsh.blocks[0].attn(torch.randn(2, 64, 32)).buckets is None
    assert lsh.blocks[0].attn(torch.randn(2, 80, 32)).buckets is not None  # 80 > 64: hashed
    assert not torch.allclose(lsh(x), full(x), atol=1e-4)
    train = ReformerModel(_config(full_attention_threshold=-1, activation_budget_mb=0)).train()  # reversible, short
    train(x[:, :64]).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in train.parameters())


def test_eval_feed_forward_runs_in_cache_sized_slices_with_the_same_result() -> None:
    """Without autograd, in eval, the FFN slices the sequence so one slice's hidden activations stay ~8 MiB."""
    long = ReformerConfig(seq_len=8760, d_model=256, n_heads=8, n_layers=1, n_hash_rounds=8, n_buckets=64,
                          chunk_size=64)
    ff = ReformerModel(long).blocks[0].ff.eval()
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert ff.inference_chunks(1, 8768, cpu) == 5  # 8768 x 1024 hidden values in slices of at most 2**21
    assert ff.inference_chunks(1, 168, cpu) == 1 and ff.inference_chunks(256, 168, cpu) == 2  # >= 64 a slice
    # a GPU slices by its larger block (fewer launches), whatever ff_chunks: one slice here, and as many as keep
    # each slice's hidden activations within 2**25 values
    assert ff.inference_chunks(1, 8768, cuda) == 1
    wide = ReformerModel(long.replace(ff_chunks=8)).blocks[0].ff.eval()
    assert wide.inference_chunks(1, 8768, cuda) == 1
    assert wide.inference_chunks(8, 8768, cuda) == 3 and wide.inference_chunks(64, 8768, cuda) == 18
    x = torch.randn(1, 8768, 256)
    with torch.no_grad():
        sliced = ff(x)
        whole = ff.apply_chunk(x)  # one slice
    torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-6)
    calls: list[int] = []
    apply = ff.apply_chunk

    def counted(part: torch.Tensor) -> torch.Tensor:
        calls.append(part.shape[1])
        return apply(part)

    ff.apply_chunk = counted  # type: ignore[method-assign]
    with torch.no_grad():
        ff(x)
        assert calls == [1754, 1753, 1754, 1753, 1754]
        calls.clear()
        ff.train()  # training keeps the configured slicing: the reversible backward replays dropout slice by slice
        ff(x)
    assert calls == [8768]


@pytest.mark.parametrize("kind", ["full", "lsh", "local"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_inference_computes_the_last_layer_at_the_read_position_only(kind: str, causal: bool, masked: bool) -> None:
    """In eval without autograd, a pooling="last" model runs its last layer at the last real position only: the
    same prediction as the full computation (float64, to rounding), with padding and causal masks, one and several
    LSH chunks per round."""
    for seq_len, chunk in [(70, 16), (30, 32)]:
        model = ReformerModel(_config(attention_type=kind, causal=causal, seq_len=seq_len, chunk_size=chunk,
                                      n_layers=3)).double().eval()
        x = torch.randn(3, seq_len, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        mask = None
        if masked:
            mask = torch.ones(3, seq_len, dtype=torch.bool)
            mask[1, -9:] = False  # row 1's last real position is seq_len - 10
            mask[2, :5] = False
        with torch.no_grad():
            fast = model(x, mask)
            full, maps = model._encode(x, mask, return_maps=True)  # every layer at every position, then pooled
        assert len(maps) == 3 and all(m is not None for m in maps)
        torch.testing.assert_close(fast, full, rtol=1e-10, atol=1e-10)


def test_the_last_layer_runs_at_one_position_and_training_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ReformerModel(_config(n_layers=2)).eval()
    seen: list[int] = []
    forward = model.blocks[-1].ff.forward

    def counted(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[1])
        return forward(x)

    monkeypatch.setattr(model.blocks[-1].ff, "forward", counted)
    x = torch.randn(2, 70, 3)
    with torch.no_grad():
        model(x)
    assert seen == [1]
    seen.clear()
    model.train()
    model(x).sum().backward()
    assert seen == [80]  # training: every (padded) position


def test_training_slices_follow_ff_chunks_on_the_cpu_and_merge_on_a_gpu() -> None:
    """On a GPU each FFN slice is launches, not arithmetic: slices merge up to 2**25 hidden values (a constant
    bound, so memory stays linear in length); on the CPU the configured `ff_chunks` stands."""
    ff = ReformerModel(ReformerConfig(seq_len=32768, d_model=256, n_heads=8, n_layers=1, n_buckets=1024,
                                      chunk_size=64, ff_chunks=32)).blocks[0].ff
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object only: nothing runs on it here
    assert ff.training_chunks(1, 32768, cpu) == 32
    assert ff.training_chunks(1, 32768, gpu) == 1  # 32768 x 1024 = 2**25 hidden values
    assert ff.training_chunks(4, 32768, gpu) == 4 and ff.training_chunks(64, 32768, gpu) == 32  # never above ff_chunks
    assert ff.training_chunks(1, 40000, gpu) == 2
