"""ReformerConfig: exact defaults, enum coercion, and one clear ValueError per impossible setting."""

from __future__ import annotations

import pytest

from reformer import AttentionType, ReformerConfig


def test_defaults_are_the_documented_ones() -> None:
    c = ReformerConfig()
    assert (c.seq_len, c.d_model, c.n_heads, c.n_layers, c.n_hash_rounds) == (168, 128, 8, 6, 4)
    assert (c.n_buckets, c.chunk_size, c.attention_type) == (32, 32, AttentionType.LSH)
    assert c.use_reversible_layers is True and c.dropout == 0.1
    assert c.causal is False and c.task == "regression" and c.ff_hidden == 512 and c.head_dim == 16


@pytest.mark.parametrize("text, member", [("full", AttentionType.FULL), ("LSH", AttentionType.LSH),
                                          (" local ", AttentionType.LOCAL)])
def test_attention_type_accepts_strings(text: str, member: AttentionType) -> None:
    assert ReformerConfig(attention_type=text).attention_type is member  # type: ignore[arg-type]
    assert AttentionType(text) is member


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"d_model": 100, "n_heads": 8}, "d_model"),
        ({"n_buckets": 31}, "n_buckets"),
        ({"n_buckets": 0}, "n_buckets"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"seq_len": 0}, "seq_len"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"n_hash_rounds": 0}, "n_hash_rounds"),
        ({"attention_type": "sparse"}, "attention_type"),
        ({"task": "ranking"}, "task"),
        ({"task": "classification", "n_classes": 1}, "n_classes"),
        ({"pooling": "max"}, "pooling"),
        ({"positional": "rotary"}, "positional"),
        ({"full_attention_threshold": -2}, "full_attention_threshold"),
        ({"full_attention_threshold": 1.5}, "full_attention_threshold"),
        ({"activation_budget_mb": -1}, "activation_budget_mb"),
        ({"activation_budget_mb": float("nan")}, "activation_budget_mb"),
        ({"activation_budget_mb": True}, "activation_budget_mb"),
    ],
)
def test_bad_config_names_field_value_and_fix(changes: dict, field: str) -> None:
    with pytest.raises(ValueError) as info:
        ReformerConfig(**changes)
    message = str(info.value)
    assert f"ReformerConfig.{field}=" in message
    assert ":" in message and "\n" not in message  # one line: the problem, then the fix


def test_seq_len_need_not_be_a_multiple_of_the_chunk() -> None:
    assert ReformerConfig(seq_len=167, chunk_size=32).seq_len == 167


def test_dict_round_trip_and_unknown_keys() -> None:
    c = ReformerConfig(seq_len=96, attention_type="local")  # type: ignore[arg-type]
    assert ReformerConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown field"):
        ReformerConfig.from_dict({"seq_length": 5})


def test_short_lsh_inputs_resolve_to_full_attention() -> None:
    c = ReformerConfig()  # chunk 32, 4 rounds: LSH would score 2 * 32 * 4 = 256 key slots per query
    assert c.full_attention_threshold == -1 and c.full_attention_below == 256
    assert c.kernel_for(168) is AttentionType.FULL and c.kernel_for(256) is AttentionType.FULL
    assert c.kernel_for(257) is AttentionType.LSH
    assert c.kernel_for(100, AttentionType.LOCAL) is AttentionType.LOCAL  # only LSH falls back
    never = c.replace(full_attention_threshold=0)
    assert never.full_attention_below == 0 and never.kernel_for(1) is AttentionType.LSH
    assert c.replace(full_attention_threshold=500).kernel_for(500) is AttentionType.FULL


def test_activation_budget_keeps_short_inputs_and_recomputes_long_ones() -> None:
    c = ReformerConfig()  # 256 MB: five of the default configuration's six layers store at batch 32
    per_layer = c.stored_layer_bytes(32, 168)
    assert 40 * 2**20 < per_layer < 60 * 2**20
    assert c.layers_to_store(32, 168) == int(256 * 2**20 // per_layer) == 5
    assert c.layers_to_store(1, 168) == 6  # capped at n_layers
    assert c.replace(activation_budget_mb=0).layers_to_store(1, 168) == 0
    long = ReformerConfig(seq_len=8760, d_model=256, n_heads=8, n_layers=6, n_hash_rounds=8, n_buckets=64,
                          chunk_size=64)
    assert long.layers_to_store(1, 8768) == 0  # the one-year configuration recomputes every layer
    # LSH keeps rounds x heads x 2 chunk scores per position: far more than the same length at full attention
    assert long.stored_layer_bytes(1, 8768) > 2 * long.stored_layer_bytes(1, 8768, AttentionType.FULL) > 0
