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


def _built_on_meta_only(monkeypatch: pytest.MonkeyPatch, cls: type[torch.nn.Module]) -> list[str]:
    """Make `cls(...)` fail unless it is built on the meta device (which allocates nothing); returns the devices
    it was built on."""
    devices: list[str] = []
    real = cls.__init__

    def guarded(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        devices.append(torch.empty(0).device.type)
        if devices[-1] != "meta":
            raise AssertionError(f"{cls.__name__} built at full size before its weights were checked")
        real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", guarded)
    return devices


HUGE = {"d_model": 4096, "n_layers": 6, "d_ff": 16384}  # about 1.1 billion parameters, 4.4 GB of float32


def _edit_config(path: Path, **fields: object) -> None:
    meta = json.loads((path / "checkpoint.json").read_text())
    meta["model_config"].update(fields)
    (path / "checkpoint.json").write_text(json.dumps(meta))


def test_a_json_edited_to_a_huge_model_fails_before_the_model_is_built(
        saved: tuple[Path, ReformerModel, torch.optim.Optimizer], monkeypatch: pytest.MonkeyPatch) -> None:
    # the weights are the small model's; the JSON now describes a 4 GB one. Loading used to build it (4.6 GB,
    # 36 s) and only then compare shapes: the header is compared with the config's shapes before anything is built
    path = saved[0]
    _edit_config(path, **HUGE)
    devices = _built_on_meta_only(monkeypatch, ReformerModel)
    with pytest.raises(DataFormatError) as exc:
        load_checkpoint(path)
    _one_line(exc, str(path / "model.safetensors"))
    message = str(exc.value)
    assert ("tensor embed.to_embed.weight has shape (8, 3), model_config (checkpoint.json) needs shape (4096, 3)"
            in message)
    assert message.endswith("the JSON and the weights are from different runs: restore the checkpoint or retrain")
    assert devices == ["meta"]
    # a weights file of another model altogether: its first tensor missing from it is named
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path / "model.safetensors"))
    with pytest.raises(DataFormatError, match=r"tensor \S+ is missing, model_config \(checkpoint.json\) needs shape"):
        load_checkpoint(path)
    assert devices == ["meta", "meta"]


def test_a_series_checkpoint_is_checked_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reformer.model import ForecastConfig, PatchReformerForecaster
    from reformer.pipelines.series_models import load_series_checkpoint

    config = ForecastConfig(seq_len=48, horizon=12, n_channels=2, patch_len=8, stride=8, d_model=8, n_heads=2,
                            n_layers=1, d_ff=16)
    meta = {"feature_names": ["a", "b"], "target": "b", "features": "M",
            "scaler": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}}
    save_checkpoint(tmp_path / "ck", PatchReformerForecaster(config), meta)
    _edit_config(tmp_path / "ck", **HUGE)
    devices = _built_on_meta_only(monkeypatch, PatchReformerForecaster)
    with pytest.raises(DataFormatError, match=r"model.safetensors: tensor \S+ has shape .* needs shape") as exc:
        load_series_checkpoint(tmp_path / "ck")
    _one_line(exc, "different runs: restore the checkpoint or retrain")
    assert devices == ["meta"]


def test_an_absurd_layer_count_stops_building_early(saved: tuple[Path, ReformerModel, torch.optim.Optimizer],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # on the meta device tensors cost nothing, but 20,000 layers still take 30 s and 1 GB of module objects
    from reformer.model.reversible import ReformerLayer

    path = saved[0]
    _edit_config(path, n_layers=20_000)
    _built_on_meta_only(monkeypatch, ReformerModel)
    layers = 0
    real = ReformerLayer.__init__

    def counted(self: ReformerLayer, *args: object, **kwargs: object) -> None:
        nonlocal layers
        layers += 1
        real(self, *args, **kwargs)

    monkeypatch.setattr(ReformerLayer, "__init__", counted)
    with pytest.raises(DataFormatError, match="describes a model of far more tensors than the 30 the weights hold"):
        load_checkpoint(path)
    assert layers < 100


def _header_and_data(path: Path) -> tuple[dict[str, object], bytes]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def _write(path: Path, header: dict[str, object], data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


@pytest.mark.parametrize("damage", ["short", "length_past_the_end", "garbage_header", "header_not_an_object",
                                    "trailing_bytes", "data_cut", "shape_without_its_bytes", "unknown_dtype",
                                    "overlapping"])
def test_a_damaged_weights_file_is_named_before_anything_is_read(
        saved: tuple[Path, ReformerModel, torch.optim.Optimizer], damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = saved[0]
    weights = path / "model.safetensors"
    header, data = _header_and_data(weights)
    first = next(name for name in header if name != "__metadata__")
    entry = header[first]
    assert isinstance(entry, dict)
    if damage == "short":
        weights.write_bytes(b"\x10\x00\x00")
    elif damage == "length_past_the_end":
        weights.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    elif damage == "garbage_header":
        weights.write_bytes((16).to_bytes(8, "little") + b"\xff" * 16 + data)
    elif damage == "header_not_an_object":
        _write(weights, [1, 2], data)  # type: ignore[arg-type]
    elif damage == "trailing_bytes":
        weights.write_bytes(weights.read_bytes() + b"\x00" * 4)
    elif damage == "data_cut":
        _write(weights, header, data[:-4])
    elif damage == "shape_without_its_bytes":
        entry["shape"] = [10**9, 10**9]  # would be 4 EB: never allocated, refused by the byte count
        _write(weights, header, data)
    elif damage == "unknown_dtype":
        entry["dtype"] = "F128"
        _write(weights, header, data)
    else:
        second = next(name for name in header if name not in ("__metadata__", first))
        other = header[second]
        assert isinstance(other, dict)
        other["data_offsets"] = entry["data_offsets"]
        _write(weights, header, data)
    _built_on_meta_only(monkeypatch, ReformerModel)
    with pytest.raises(DataFormatError, match="not a readable safetensors file") as exc:
        load_checkpoint(path)
    _one_line(exc, str(weights))


def test_a_walk_forward_run_is_named_with_its_folds_and_predictions(tmp_path: Path) -> None:
    from reformer.errors import UserInputError
    from reformer.training.checkpoint import resolve_checkpoint_dir

    run = tmp_path / "wf"
    for fold in range(11):  # fold_10 is the latest, though it sorts before fold_2 as text
        (run / f"fold_{fold}" / "best").mkdir(parents=True)
    (run / "walkforward.json").write_text("{}")
    with pytest.raises(UserInputError, match=rf"{run} is a walk-forward run: .*pass a fold's \({run / 'fold_10'}, "
                                             rf"the latest\), or use its predictions \(backtest --predictions "
                                             rf"{run / 'predictions.csv'}\)"):
        resolve_checkpoint_dir(run)
