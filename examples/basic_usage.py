"""Basic usage: build the default Reformer, predict, and look at the attention."""

from __future__ import annotations

import torch

from reformer import ReformerConfig, ReformerModel

config = ReformerConfig(n_features=8)  # seq_len 168 (a week of hours), LSH attention, reversible layers
model = ReformerModel(config).eval()
x = torch.randn(2, config.seq_len, config.n_features)  # (batch, seq_len, n_features)
with torch.no_grad():
    prediction = model(x)  # (batch, n_outputs)
    prediction, attention = model.predict_with_attention(x)
print("prediction:", prediction.squeeze(-1).tolist())
sparse, dense = attention[0].map.indices.shape, attention[0].to_dense().shape
print("layer 0 attention, sparse:", tuple(sparse), "dense:", tuple(dense))
