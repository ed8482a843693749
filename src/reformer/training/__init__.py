"""Training: the fit loop, checkpoints, metrics, baselines and the crypto train / evaluate / predict pipeline."""

from .checkpoint import load_checkpoint, load_optimizer_state, read_meta, resolve_checkpoint_dir, save_checkpoint
from .loop import EpochEnd, FitResult, TrainConfig, fit, lr_at_step, predict_dataset

__all__ = [
    "EpochEnd",
    "FitResult",
    "TrainConfig",
    "fit",
    "load_checkpoint",
    "load_optimizer_state",
    "lr_at_step",
    "predict_dataset",
    "read_meta",
    "resolve_checkpoint_dir",
    "save_checkpoint",
]
