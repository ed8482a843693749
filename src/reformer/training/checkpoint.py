"""Self-describing checkpoints: safetensors weights + a JSON description; never pickle.

A checkpoint is a directory:

    model.safetensors      the model's state dict (float tensors, safetensors format)
    checkpoint.json        {"format_version", "model_kind", "model_config" (the model's config.to_dict()),
                           ...caller's meta...}
    optimizer.safetensors  optional: the optimizer state flattened to tensors `state/<param>/<key>`; the param
                           groups (lr, betas, ...) ride in the file's string metadata as JSON

A training run directory holds `best/` (lowest validation loss) and `last/` (for resume) checkpoints;
`load_checkpoint(run_dir)` picks `best/`. `model_kind` is "reformer" (a `ReformerModel`, `load_checkpoint`) or
"patch-forecaster" (the series forecaster of `reformer.training.forecast`, loaded by
`reformer.training.series.load_series_checkpoint`); files without it are "reformer". Loading uses only
`safetensors` and `json`: no `torch.load`, no unpickling, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reformer.errors import DataFormatError, UserInputError, first_line
from reformer.model import ReformerConfig, ReformerModel

__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "OPTIMIZER_FILE",
    "WEIGHTS_FILE",
    "kind_of",
    "load_checkpoint",
    "load_optimizer_state",
    "model_kind",
    "read_meta",
    "read_weights",
    "rebuild",
    "resolve_checkpoint_dir",
    "save_checkpoint",
    "update_meta",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
OPTIMIZER_FILE = "optimizer.safetensors"
REFORMER_KIND = "reformer"


def _replace_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(directory: str | os.PathLike[str], model: torch.nn.Module, meta: dict[str, Any] | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write `model.safetensors` + `checkpoint.json` (+ `optimizer.safetensors`) into `directory`.

    Args:
        directory: created if missing; files in it are replaced atomically one by one.
        model: a `ReformerModel` or another module with a `config.to_dict()` and a `checkpoint_kind` attribute;
            its config goes into the JSON as `model_config`, its kind as `model_kind`.
        meta: JSON-compatible extras (feature spec, scaler, data range, metrics, training state, ...).
        optimizer: also save its state (for resume).

    Returns:
        The checkpoint directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in model.state_dict().items()}
    _replace_atomically(out / WEIGHTS_FILE, lambda p: save_file(weights, str(p), metadata={"format": "pt"}))
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer)
        _replace_atomically(out / OPTIMIZER_FILE,
                            lambda p: save_file(tensors, str(p), metadata={"param_groups": json.dumps(groups)}))
    document = {"format_version": FORMAT_VERSION, "model_kind": kind_of(model),
                "model_config": model.config.to_dict(), **(meta or {})}  # type: ignore[union-attr,operator]
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=True)
    _replace_atomically(out / META_FILE, lambda p: p.write_text(text + "\n", encoding="utf-8"))
    return out


def resolve_checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory meant by `path`: a run directory (-> its `best/`), a checkpoint directory, or
    one of its files.

    Raises:
        UserInputError: nothing checkpoint-like at `path`.
    """
    target = Path(path)
    if target.is_file():
        target = target.parent
    for candidate in (target, target / "best", target / "last"):
        if (candidate / META_FILE).is_file():
            return candidate
    if not target.exists():
        raise UserInputError(f"checkpoint {target} does not exist: pass a run directory written by `reformer train` "
                             "or its best/ checkpoint")
    raise UserInputError(f"{target} holds no {META_FILE}: pass a run directory written by `reformer train` (with "
                         "best/) or a checkpoint directory")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated `checkpoint.json` of the checkpoint at `path` (see `resolve_checkpoint_dir`).

    Raises:
        DataFormatError: unreadable JSON, missing keys, or an unknown format version.
    """
    meta_path = resolve_checkpoint_dir(path) / META_FILE
    try:
        document = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{meta_path}: not valid JSON ({exc}); the checkpoint is corrupt, retrain or restore "
                              "it") from None
    if not isinstance(document, dict):
        raise DataFormatError(f"{meta_path}: expected a JSON object; the checkpoint is corrupt, retrain or restore it")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise DataFormatError(f"{meta_path}: format_version {version!r} is not supported (this version reads "
                              f"{FORMAT_VERSION}); retrain with this version of reformer")
    if not isinstance(document.get("model_config"), dict):
        raise DataFormatError(f"{meta_path}: missing key 'model_config'; the checkpoint is corrupt, retrain or "
                              "restore it")
    return document


def kind_of(model: torch.nn.Module) -> str:
    """The `model_kind` a model's checkpoints carry: its `checkpoint_kind`, else "reformer"."""
    return str(getattr(model, "checkpoint_kind", REFORMER_KIND))


def model_kind(meta: dict[str, Any]) -> str:
    """The checkpoint's model kind ("reformer" when the JSON predates the field)."""
    return str(meta.get("model_kind", REFORMER_KIND))


def update_meta(path: str | os.PathLike[str], **fields: Any) -> None:
    """Add or replace top-level keys of a checkpoint's `checkpoint.json` (weights untouched)."""
    directory = resolve_checkpoint_dir(path)
    document = {**read_meta(directory), **fields}
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=True)
    _replace_atomically(directory / META_FILE, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; the checkpoint is incomplete, retrain or restore it")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        reason = first_line(exc)
        raise DataFormatError(f"{path}: not a readable safetensors file ({reason}); the checkpoint is corrupt, "
                              "retrain or restore it") from None


def read_weights(path: str | os.PathLike[str], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, checked name by name and shape by shape against `expected` (a state dict).

    Raises:
        DataFormatError: missing, corrupt or mismatched weights; the message names the file.
    """
    weights_path = resolve_checkpoint_dir(path) / WEIGHTS_FILE
    weights = _read_tensors(weights_path)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise DataFormatError(f"{weights_path}: weights do not match model_config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); the checkpoint is corrupt, retrain")
    for name, tensor in expected.items():
        if weights[name].shape != tensor.shape:
            raise DataFormatError(f"{weights_path}: {name} has shape {tuple(weights[name].shape)}, model_config "
                                  f"needs {tuple(tensor.shape)}; the checkpoint is corrupt, retrain")
    return weights


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[ReformerModel, dict[str, Any]]:
    """Rebuild the model (on CPU, eval mode) and return it with the checkpoint's JSON description.

    Args:
        path: a run directory (its `best/` is used), a checkpoint directory, or a file inside one.

    Returns:
        (model, meta) with meta = the parsed `checkpoint.json`.

    Raises:
        UserInputError: no checkpoint at `path`, or a series forecaster's checkpoint (not a `ReformerModel`).
        DataFormatError: corrupt JSON or weights, missing keys, shape mismatch, unknown format version;
            the one-line message names the file.
    """
    directory = resolve_checkpoint_dir(path)
    meta = read_meta(directory)
    kind = model_kind(meta)
    if kind != REFORMER_KIND:
        raise UserInputError(f"{directory} holds a series forecaster ({kind}, `reformer train --csv FILE --target "
                             "COL`), not a candle model: forecast with `reformer predict --checkpoint RUN --csv FILE`")
    return rebuild(directory, meta, lambda config: ReformerModel(ReformerConfig.from_dict(config))), meta


_Model = TypeVar("_Model", bound=torch.nn.Module)


def rebuild(directory: Path, meta: dict[str, Any], make: Callable[[dict[str, Any]], _Model]) -> _Model:
    """The model `make(meta["model_config"])` builds, holding the checkpoint's weights, in eval mode on the CPU.

    Raises:
        DataFormatError: `make` refuses the config (TypeError / ValueError), or the weights do not fit.
    """
    try:
        model = make(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{directory / META_FILE}: bad model_config ({str(exc).splitlines()[0]}); the "
                              "checkpoint is corrupt or from another version, retrain") from None
    model.load_state_dict(read_weights(directory, model.state_dict()))
    model.eval()
    return model


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state/{index}/{key}"] = tensor.detach().to("cpu").contiguous().clone()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
              for group in state["param_groups"]]
    return tensors, groups


def load_optimizer_state(path: str | os.PathLike[str], optimizer: torch.optim.Optimizer) -> None:
    """Restore `optimizer` from the `optimizer.safetensors` of the checkpoint at `path` (no pickle).

    Raises:
        DataFormatError: the file is missing, corrupt, or does not fit the optimizer.
    """
    file = resolve_checkpoint_dir(path) / OPTIMIZER_FILE
    tensors = _read_tensors(file)
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            groups = json.loads((handle.metadata() or {})["param_groups"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, tensor in tensors.items():
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = tensor
        for group in groups:
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        reason = first_line(exc)
        raise DataFormatError(f"{file}: optimizer state does not fit ({reason}); resume from a checkpoint of the "
                              "same model, or start a fresh run") from None
