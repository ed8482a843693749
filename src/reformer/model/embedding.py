"""Input embedding for continuous time series: a linear projection of each bar's features plus positions.

Shape legend: b batch, l length, f input features, d model width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserInputError
from .config import ReformerConfig
from .dropout import Dropout
from .linear import Linear

__all__ = ["InputEmbedding", "sinusoidal_positions"]


def sinusoidal_positions(length: int, d_model: int, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed encodings (Vaswani et al. 2017, sec. 3.5), (l, d), computed in `dtype` (float32 or float64: a float64
    model gets float64 encodings, so that CPU and CUDA, whose float32 sin differ in the last bit, agree).

    PE(pos, 2i) = sin(pos / 10000^(2i/d));  PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
    """
    positions = torch.arange(length, dtype=dtype, device=device).unsqueeze(1)  # (l, 1)
    freqs = torch.exp(torch.arange(0, d_model, 2, dtype=dtype, device=device)
                      * (-math.log(10000.0) / d_model))  # (ceil(d/2),)
    table = torch.zeros(length, d_model, dtype=dtype, device=device)
    table[:, 0::2] = torch.sin(positions * freqs)
    table[:, 1::2] = torch.cos(positions * freqs[: d_model // 2])
    return table


class InputEmbedding(nn.Module):
    """x -> Dropout(x W + b + PE), with sinusoidal (any length) or learned (<= seq_len) positions.

    Shapes: forward x (b, l, f) -> (b, l, d).
    Raises: UserInputError (a ValueError) when the feature count is wrong or a learned table is too short.
    """

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        self.n_features = config.n_features
        self.d_model = config.d_model
        self.max_len = config.seq_len
        self.to_embed = Linear(config.n_features, config.d_model)
        self.positions: nn.Embedding | None = None
        if config.positional == "learned":
            self.positions = nn.Embedding(config.seq_len, config.d_model)
            nn.init.normal_(self.positions.weight, std=0.02)
        self.dropout = Dropout(config.dropout)
        self._table: torch.Tensor | None = None  # sinusoidal positions kept (`sinusoidal_table`); not state

    def sinusoidal_table(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """`sinusoidal_positions` (l, d) in `dtype` (from float64 for a float64 model, else float32), made once for
        at least `seq_len` positions and kept, sliced for shorter inputs (a position's encoding does not depend
        on the table's length): ten kernel launches on a GPU in every forward otherwise. Kept by the module, so
        it goes with the model."""
        table = self._table
        if table is None or table.shape[0] < length or table.device != device or table.dtype != dtype:
            exact = torch.float64 if dtype == torch.float64 else torch.float32
            with torch.inference_mode(False):  # kept past an inference-mode call: an ordinary tensor
                table = sinusoidal_positions(max(length, self.max_len), self.d_model, device, exact).to(dtype)
            self._table = table
        return table[:length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_features:
            raise UserInputError(
                f"input has shape {tuple(x.shape)}: expected (batch, seq_len, n_features={self.n_features}); "
                "reshape the input or set ReformerConfig.n_features")
        length = x.shape[1]
        if self.positions is not None:
            if length > self.max_len:
                raise UserInputError(f"input length {length} exceeds the learned position table (seq_len="
                                     f"{self.max_len}): use positional='sinusoidal' or a larger seq_len")
            pos = self.positions.weight[:length].to(x.dtype)
        else:
            pos = self.sinusoidal_table(length, x.device, x.dtype)
        return self.dropout(self.to_embed(x) + pos)  # (b, l, d)
