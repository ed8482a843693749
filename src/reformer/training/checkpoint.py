"""Self-describing checkpoints: safetensors weights + a JSON description; never pickle.

A checkpoint is a directory:

    model.safetensors      the model's state dict (float tensors, safetensors format)
    checkpoint.json        {"format_version", "model_kind", "model_config" (the model's config.to_dict()),
                           ...caller's meta...}
    optimizer.safetensors  optional: the optimizer state flattened to tensors `state/<param>/<key>`; the param
                           groups (lr, betas, ...) ride in the file's string metadata as JSON

A training run directory holds `best/` (lowest validation loss) and `last/` (for resume) checkpoints;
`load_checkpoint(run_dir)` picks `best/`. `model_kind` is "reformer" (a `ReformerModel`, `load_checkpoint`) or
"patch-forecaster" (the series forecaster of `reformer.model.forecaster`, loaded by
`reformer.pipelines.series_models.load_series_checkpoint`); files without it are "reformer". Loading uses only
`safetensors` and `json`: no `torch.load`, no unpickling, so a checkpoint from an untrusted source cannot run code.
Nor can it make the loader allocate what it does not hold: the weights file's header is checked against the file's
size, and every tensor's name and shape against the model the JSON describes (built on the `meta` device, which
allocates nothing), before the model is built for real.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reformer.errors import DataFormatError, UserInputError, first_line
from reformer.files import atomic_write
from reformer.model import ReformerConfig, ReformerModel

__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "OPTIMIZER_FILE",
    "WEIGHTS_FILE",
    "check_weights",
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
    "weights_header",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
OPTIMIZER_FILE = "optimizer.safetensors"
REFORMER_KIND = "reformer"


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
    atomic_write(out / WEIGHTS_FILE, lambda p: save_file(weights, str(p), metadata={"format": "pt"}))
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer)
        atomic_write(out / OPTIMIZER_FILE,
                            lambda p: save_file(tensors, str(p), metadata={"param_groups": json.dumps(groups)}))
    document = {"format_version": FORMAT_VERSION, "model_kind": kind_of(model),
                "model_config": model.config.to_dict(), **(meta or {})}  # type: ignore[union-attr,operator]
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=True)
    atomic_write(out / META_FILE, lambda p: p.write_text(text + "\n", encoding="utf-8"))
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
    folds = sorted(target.glob("fold_*"), key=lambda p: (len(p.name), p.name))
    if folds and (target / "walkforward.json").is_file():  # a walk-forward run keeps one model per fold
        raise UserInputError(f"{target} is a walk-forward run: one model per fold, no model of its own; pass a "
                             f"fold's ({folds[-1]}, the latest), or use its predictions "
                             f"(backtest --predictions {target / 'predictions.csv'})")
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
    atomic_write(directory / META_FILE, lambda p: p.write_text(text + "\n", encoding="utf-8"))


_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_DIFFERENT_RUNS = "the JSON and the weights are from different runs: restore the checkpoint or retrain"


def _corrupt(path: Path, reason: str) -> DataFormatError:
    return DataFormatError(f"{path}: not a readable safetensors file ({reason}); the checkpoint is corrupt, retrain "
                           "or restore it")


def weights_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape as the safetensors header of `path` states it, read without loading any tensor.

    Nothing in the header is trusted before it is checked against the file: the header fits in it, and the
    tensors' byte sizes (dtype x shape) tile the rest of the file exactly, so no size read here exceeds the file.

    Raises:
        DataFormatError: a missing file, a truncated or garbage header, or sizes the file does not hold.
    """
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; the checkpoint is incomplete, retrain or restore it")
    size = path.stat().st_size
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little") if size >= 8 else -1
        if not 0 < length <= min(size - 8, 100_000_000):  # the safetensors library's own limit
            raise _corrupt(path, f"a {size}-byte file cannot hold its stated {max(length, 0)}-byte header")
        raw = handle.read(length)
    try:
        entries = {k: v for k, v in json.loads(raw).items() if k != "__metadata__"}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError):
        raise _corrupt(path, "its header is not a JSON object") from None
    shapes: dict[str, tuple[int, ...]] = {}
    spans: list[tuple[int, int]] = []
    for name, entry in entries.items():
        try:
            shape, (begin, end) = entry["shape"], entry["data_offsets"]
            width = _DTYPE_BYTES[entry["dtype"]]
            numbers = [*shape, begin, end]
        except (TypeError, KeyError, ValueError):
            raise _corrupt(path, f"its header entry {name!r} is not a dtype, shape and offsets") from None
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) or \
                end - begin != math.prod(shape) * width:
            raise _corrupt(path, f"{name}: {entry['dtype']} {shape} does not fill bytes {begin}..{end}")
        shapes[name] = tuple(shape)
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise _corrupt(path, "its tensors overlap or leave gaps")
        position = end
    if position != size - 8 - length:
        raise _corrupt(path, f"its header describes {position} bytes of tensors, the file holds {size - 8 - length}")
    return shapes


def check_weights(path: Path, expected: Mapping[str, tuple[int, ...]]) -> None:
    """The weights file's tensors (header only) are exactly `expected`'s names and shapes, else one error naming the
    first that differs."""
    found = weights_header(path)
    for name, shape in expected.items():
        if found.get(name) != tuple(shape):
            held = f"has shape {found[name]}" if name in found else "is missing"
            raise DataFormatError(f"{path}: tensor {name} {held}, model_config ({META_FILE}) needs shape "
                                  f"{tuple(shape)}; {_DIFFERENT_RUNS}")
    extra = [name for name in found if name not in expected]
    if extra:
        raise DataFormatError(f"{path}: tensor {extra[0]} {found[extra[0]]} is not in the model that model_config "
                              f"({META_FILE}) describes; {_DIFFERENT_RUNS}")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    weights_header(path)  # the file's sizes are consistent before safetensors allocates what they state
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise _corrupt(path, first_line(exc)) from None


def read_weights(path: str | os.PathLike[str], expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, checked name by name and shape by shape against `expected` (a state dict) from
    the file's header before any tensor is read.

    Raises:
        DataFormatError: missing, corrupt or mismatched weights; the message names the file.
    """
    weights_path = resolve_checkpoint_dir(path) / WEIGHTS_FILE
    check_weights(weights_path, {name: tuple(tensor.shape) for name, tensor in expected.items()})
    return _read_tensors(weights_path)


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


class _TooManyTensors(Exception):
    """A model's constructor registered far more tensors and modules than its weights file holds."""


def _skeleton(make: Callable[[dict[str, Any]], _Model], config: dict[str, Any], limit: int) -> _Model:
    """`make(config)` on the meta device (no memory), aborted after `limit` registered parameters, buffers and
    submodules: an absurd `n_layers` would still build its modules one by one there."""
    from torch.nn.modules import module as modules

    count, builder = iter(range(limit)), threading.get_ident()

    def counted(*_: object) -> None:  # the hooks are global: another thread's models are not this one's
        if threading.get_ident() == builder and next(count, None) is None:
            raise _TooManyTensors

    hooks = [register(counted) for register in (modules.register_module_parameter_registration_hook,
                                                modules.register_module_buffer_registration_hook,
                                                modules.register_module_module_registration_hook)]
    try:
        with torch.device("meta"):
            return make(config)
    finally:
        for hook in hooks:
            hook.remove()


def rebuild(directory: Path, meta: dict[str, Any], make: Callable[[dict[str, Any]], _Model]) -> _Model:
    """The model `make(meta["model_config"])` builds, holding the checkpoint's weights, in eval mode on the CPU.

    The model is first built on the `meta` device (no memory) and its state dict's names and shapes compared with
    the weights file's header: a JSON edited to describe another (or a huge) model fails here, before anything is
    allocated for it.

    Raises:
        DataFormatError: `make` refuses the config (TypeError / ValueError), or the weights do not fit.
    """
    weights_path = directory / WEIGHTS_FILE
    n_tensors = len(weights_header(weights_path))
    try:
        # a model registers about 2 parameters, buffers and modules per state-dict tensor; the margin lets a model
        # of ordinary size be built whole, so that the error can name its first tensor the weights lack
        skeleton = _skeleton(make, meta["model_config"], 4 * n_tensors + 1024)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{directory / META_FILE}: bad model_config ({str(exc).splitlines()[0]}); the "
                              "checkpoint is corrupt or from another version, retrain") from None
    except _TooManyTensors:
        raise DataFormatError(f"{weights_path}: model_config ({META_FILE}) describes a model of far more tensors "
                              f"than the {n_tensors} the weights hold; {_DIFFERENT_RUNS}") from None
    check_weights(weights_path, {name: tuple(t.shape) for name, t in skeleton.state_dict().items()})
    model = make(meta["model_config"])
    model.load_state_dict(_read_tensors(weights_path))
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
