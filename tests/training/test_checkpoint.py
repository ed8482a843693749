"""Checkpoints: exact round trip, one-line errors naming the file, and no unpickling anywhere in loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from reformer.errors import DataFormatError, UserInputError
from reformer.model import ReformerConfig, ReformerModel
from reformer.training import load_checkpoint, load_optimizer_state, save_checkpoint

CONFIG = ReformerConfig(seq_len=16, d_model=8, n_heads=2, n_layers=2, n_hash_rounds=2, n_buckets=4, chunk_size=8,
                        n_features=3, seed=3, full_attention_threshold=0)  # LSH even at 16 (its eval rotations)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, ReformerModel, torch.optim.Optimizer]:
    model = ReformerModel(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 16, 3)).square().mean().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "ckpt", model, {"horizon": 24, "note": "x"}, optimizer)
    return tmp_path / "ckpt", model, optimizer


def test_round_trip_reproduces_predictions(saved: tuple[Path, ReformerModel, torch.optim.Optimizer]) -> None:
    path, model, optimizer = saved
    loaded, meta = load_checkpoint(path)
    assert meta["horizon"] == 24 and meta["model_config"] == CONFIG.to_dict()
    x = torch.randn(5, 16, 3)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    fresh = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    load_optimizer_state(path, fresh)
    before, after = optimizer.state_dict(), fresh.state_dict()
    assert before["param_groups"] == after["param_groups"]
    for index, state in before["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(after["state"][index][key]))


def test_loading_never_unpickles(saved: tuple[Path, ReformerModel, torch.optim.Optimizer],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle / torch.load used while loading a checkpoint")

    for target, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    path = saved[0]
    loaded, _ = load_checkpoint(path)
    load_optimizer_state(path, torch.optim.AdamW(loaded.parameters()))


def _one_line(exc: pytest.ExceptionInfo[BaseException], name: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and name in message


def test_truncated_weights(saved: tuple[Path, ReformerModel, torch.optim.Optimizer]) -> None:
    path = saved[0]
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as exc:
        load_checkpoint(path)
    _one_line(exc, "model.safetensors")


def test_garbage_weights_and_optimizer(saved: tuple[Path, ReformerModel, torch.optim.Optimizer]) -> None:
    path, model, _ = saved
    (path / "optimizer.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(DataFormatError) as exc:
        load_optimizer_state(path, torch.optim.AdamW(model.parameters()))
    _one_line(exc, "optimizer.safetensors")


@pytest.mark.parametrize("edit", ["bad_json", "no_model_config", "version", "wrong_shape", "bad_field"])
def test_edited_json(saved: tuple[Path, ReformerModel, torch.optim.Optimizer], edit: str) -> None:
    path = saved[0]
    meta_path = path / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    if edit == "bad_json":
        meta_path.write_text(meta_path.read_text()[:-20])
    else:
        if edit == "no_model_config":
            del meta["model_config"]
        elif edit == "version":
            meta["format_version"] = 99
        elif edit == "wrong_shape":
            meta["model_config"]["d_model"] = 16
        else:
            meta["model_config"]["n_layerz"] = 1
        meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError) as exc:
        load_checkpoint(path)
    _one_line(exc, "model.safetensors" if edit == "wrong_shape" else "checkpoint.json")


def test_missing_checkpoint_and_resolution(saved: tuple[Path, ReformerModel, torch.optim.Optimizer],
                                           tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(UserInputError, match=r"holds no checkpoint\.json"):
        load_checkpoint(tmp_path)
    # a file inside the checkpoint and a run directory with best/ both resolve
    assert load_checkpoint(saved[0] / "model.safetensors")[1]["note"] == "x"
    run = tmp_path / "run"
    save_checkpoint(run / "best", saved[1], {"note": "best"})
    assert load_checkpoint(run)[1]["note"] == "best"
