"""The patched, channel-independent Reformer forecaster with RevIN, for long-horizon series forecasting.

Shape legend: b batch (windows), l input length, c channels, t horizon, n patches, p patch length, s stride.

The forecaster follows the recipe that made Transformers competitive on LSTF benchmarks:

* RevIN (Kim et al., ICLR 2022): each input window is z-scored per channel with its own mean and std, the model
  predicts in that frame, and the statistics are added back to the output, so level shifts between the
  training and test periods do not have to be learned. Per window and channel, over the l steps:

      x' = (x - mu) / sigma * gamma + beta,        mu = mean_l(x),  sigma = sqrt(var_l(x) + eps)   (normalize)
      y  = (y' - beta) / (gamma + eps^2) * sigma + mu                                                (denormalize)

  gamma, beta (c,) are learned when `revin_affine`; mu and sigma are detached (statistics, not parameters).
* Channel independence and patching (PatchTST, Nie et al., ICLR 2023): every channel is its own sample; its
  window is padded at the end by repeating its last value s times and cut into n overlapping patches of p steps,
  and each patch is one token:

      padded = [x_1, ..., x_l, x_l (s times)],   patch_k = padded[k s : k s + p],   n = (l - p) // s + 2

* The encoder is `ReformerModel(seq_len=n, n_features=p, n_outputs=t, pooling="flatten")`.
* Optional linear skip (`linear_skip=True`): in the RevIN frame the forecast is a linear map of the window plus the
  encoder's output,

      y' = x'_l + W (x' - x'_l) + b + Reformer(patches(x'))

  W and b start at zero and are set with `set_linear_skip` (the training side sets them to the closed-form
  least-squares fit on the training windows: `reformer.pipelines.lstf.init_linear_skip`) and stay fixed (measured
  on ETTh1: AdamW steps on a least-squares optimum only detune it); the encoder's output layer starts at zero, so
  training starts from the linear forecast and the encoder learns what the linear map misses (the decomposition
  of DLinear/NLinear-style linear trend plus a nonlinear residual).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn

from ..errors import ConfigError, from_fields
from .config import AttentionType, ReformerConfig
from .reformer import ReformerModel

__all__ = ["ForecastConfig", "PatchReformerForecaster", "RevIN", "n_patches", "patchify"]


@dataclass(frozen=True)
class ForecastConfig:
    """The patched Reformer forecaster; validated at construction."""

    seq_len: int = 336
    """Input (look-back) length in steps."""
    horizon: int = 96
    """Forecast length in steps."""
    n_channels: int = 7
    """Channels per step (all share one model: channel independence)."""
    patch_len: int = 16
    """Steps per patch (one token)."""
    stride: int = 8
    """Steps between patch starts."""
    revin: bool = True
    """Per-window, per-channel normalisation of inputs, undone on the outputs."""
    revin_affine: bool = True
    """Learn a per-channel scale and shift inside the RevIN frame."""
    d_model: int = 64
    """Width of each of the Reformer's two residual halves."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 2
    """Encoder layers."""
    d_ff: int = 128
    """Feed-forward hidden width."""
    attention_type: str = "lsh"
    """"lsh", "full" or "local"; LSH is exact when `chunk_size` >= the padded number of patches."""
    chunk_size: int = 16
    """Tokens (patches) per attention chunk."""
    n_buckets: int = 4
    """LSH buckets per round (even)."""
    n_hash_rounds: int = 2
    """LSH hashing rounds."""
    reversible: bool = True
    """Reversible residual layers (recompute activations in backward)."""
    dropout: float = 0.2
    """Dropout inside the encoder."""
    linear_skip: bool = False
    """Add a linear map of the (RevIN-normalised) window to the encoder's output; see the module docstring."""
    seed: int = 0
    """Weight initialisation and LSH rotation seed."""

    def __post_init__(self) -> None:
        for name in ("seq_len", "horizon", "n_channels", "patch_len", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ForecastConfig.{name}={value!r} is invalid: use a positive integer")
        if self.attention_type not in {kind.value for kind in AttentionType}:
            raise ConfigError(f"ForecastConfig.attention_type={self.attention_type!r} is invalid: use \"lsh\", "
                              "\"full\" or \"local\"")
        if self.patch_len > self.seq_len:
            raise ConfigError(f"ForecastConfig.patch_len={self.patch_len} is longer than seq_len={self.seq_len}: "
                              "use a shorter patch or a longer input")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (a checkpoint's `model_config`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForecastConfig:
        """Build from a dict (a TOML `[model]` table or a checkpoint's JSON); unknown keys are an error."""
        return from_fields(cls, data)

    @property
    def n_patches(self) -> int:
        """Tokens per channel window."""
        return n_patches(self.seq_len, self.patch_len, self.stride)

    def reformer_config(self) -> ReformerConfig:
        """The encoder's config (validates heads, buckets, dropout)."""
        return ReformerConfig(
            seq_len=self.n_patches, d_model=self.d_model, n_heads=self.n_heads, n_layers=self.n_layers,
            n_hash_rounds=self.n_hash_rounds, n_buckets=self.n_buckets, chunk_size=self.chunk_size,
            attention_type=AttentionType(self.attention_type), use_reversible_layers=self.reversible,
            dropout=self.dropout,
            n_features=self.patch_len, n_outputs=self.horizon, d_ff=self.d_ff, pooling="flatten",
            positional="learned", seed=self.seed)


def n_patches(seq_len: int, patch_len: int, stride: int) -> int:
    """Patches from a window of `seq_len` steps padded at the end by `stride` steps: (l - p) // s + 2."""
    return (seq_len - patch_len) // stride + 2


def patchify(x: torch.Tensor, patch_len: int, stride: int) -> torch.Tensor:
    """Cut each channel of each window into overlapping patches (PatchTST, padding_patch="end").

    Args:
        x: (b, l, c) windows.
        patch_len: p, steps per patch.
        stride: s, steps between patch starts; the series is first padded by repeating its last value s times.
    Returns:
        (b*c, n, p) with n = `n_patches(l, p, s)`; row b_i*c + c_j is channel c_j of window b_i.
    """
    series = rearrange(x, "b l c -> (b c) l")  # (b*c, l)
    padded = torch.cat([series, series[:, -1:].expand(-1, stride)], dim=1)  # (b*c, l+s)
    return padded.unfold(1, patch_len, stride)  # (b*c, n, p)


class RevIN(nn.Module):
    """Reversible instance normalisation: z-score each window per channel, undo it on the forecast.

    normalize:   x' = (x - mean_l(x)) / sqrt(var_l(x) + eps) * gamma + beta
    denormalize: y  = (y' - beta) / gamma * sqrt(var + eps) + mean          (Kim et al. 2022, eqs. 1-3)

    Shapes: normalize x (b, l, c) -> (b, l, c) and the (mean, std) statistics, each (b, 1, c);
    denormalize y (b, t, c) with those statistics -> (b, t, c).
    """

    def __init__(self, n_channels: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_channels)) if affine else None
        self.beta = nn.Parameter(torch.zeros(n_channels)) if affine else None

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()  # (b, 1, c)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()  # (b, 1, c)
        out = (x - mean) / std
        if self.gamma is not None and self.beta is not None:
            out = out * self.gamma + self.beta
        return out, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.gamma is not None and self.beta is not None:
            y = (y - self.beta) / (self.gamma + self.eps * self.eps)
        return y * std + mean


class PatchReformerForecaster(nn.Module):
    """RevIN + patching + channel independence around a `ReformerModel`.

    Args:
        config: a `ForecastConfig`.
    Shapes:
        forward: x (b, l, c) with l = `config.seq_len`, c = `config.n_channels` -> (b, t, c), t = `config.horizon`.
    Raises:
        ConfigError: on an input of the wrong length or channel count.
    """

    checkpoint_kind = "patch-forecaster"
    """`model_kind` in its checkpoints (`reformer.training.checkpoint`)."""

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__()
        self.config = config
        self.revin = RevIN(config.n_channels, affine=config.revin_affine) if config.revin else None
        self.encoder = ReformerModel(config.reformer_config())
        self.skip: nn.Linear | None = None
        if config.linear_skip:
            self.skip = nn.Linear(config.seq_len, config.horizon)  # (l) -> (t), shared by channels
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
            self.skip.requires_grad_(False)  # fixed at the least-squares fit: AdamW steps only detune it
            head = self.encoder.head
            if isinstance(head, nn.Linear):  # start from the linear forecast: the residual is learned
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    @torch.no_grad()
    def set_linear_skip(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set the skip's W (t, l) and b (t,): the map from the RevIN-frame window centred on its last value,
        x' - x'_l, to the forecast minus that last value (cast to the skip's dtype and device).

        Raises:
            ConfigError: without `ForecastConfig(linear_skip=True)`, or on a W or b of the wrong shape.
        """
        if self.skip is None:
            raise ConfigError("set_linear_skip needs ForecastConfig(linear_skip=True)")
        cfg = self.config
        if tuple(weight.shape) != (cfg.horizon, cfg.seq_len) or tuple(bias.shape) != (cfg.horizon,):
            raise ConfigError(f"linear skip W {tuple(weight.shape)}, b {tuple(bias.shape)}: expected W "
                              f"(horizon={cfg.horizon}, seq_len={cfg.seq_len}) and b (horizon={cfg.horizon},)")
        self.skip.weight.copy_(weight)
        self.skip.bias.copy_(bias)

    def reseed(self, seed: int) -> None:
        """Restart the encoder's training-time LSH rotation stream (called by the fit loop every epoch)."""
        self.encoder.reseed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 3 or x.shape[1] != cfg.seq_len or x.shape[2] != cfg.n_channels:
            raise ConfigError(f"input has shape {tuple(x.shape)}: expected (batch, seq_len={cfg.seq_len}, "
                              f"n_channels={cfg.n_channels})")
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)  # (b, l, c)
        tokens = patchify(x, cfg.patch_len, cfg.stride)  # (b*c, n, p)
        out = self.encoder(tokens)  # (b*c, t)
        if self.skip is not None:
            series = rearrange(x, "b l c -> (b c) l")  # (b*c, l)
            last = series[:, -1:]  # (b*c, 1)
            out = out + self.skip(series - last) + last
        y = rearrange(out, "(b c) t -> b t c", c=cfg.n_channels)  # (b, t, c)
        if self.revin is not None and stats is not None:
            y = self.revin.denormalize(y, stats)
        return y
