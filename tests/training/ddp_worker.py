"""One tiny `fit` for tests/training/test_ddp.py: run under torchrun (each rank) or in one process.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/training/ddp_worker.py OUT DROPOUT
    python tests/training/ddp_worker.py OUT DROPOUT

Each process writes OUT/rank{R}.pt: the final weights, the window positions it ran per optimizer step, and per
step its (mean loss, windows) pairs, so the test can rebuild every step's global batch and global loss.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from reformer.data.dataset import WindowDataset
from reformer.model import ReformerConfig, ReformerModel
from reformer.training import TrainConfig, distributed, loop

N_TRAIN, N_VAL, SEQ_LEN, FEATURES = 37, 12, 32, 3  # 37 windows in batches of 8: a last batch of 5, split 3 + 2


def datasets() -> tuple[WindowDataset, WindowDataset]:
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(N_TRAIN + N_VAL, SEQ_LEN, FEATURES, generator=gen)
    targets = features[:, -4:, 0].mean(dim=1) + 0.1 * torch.randn(N_TRAIN + N_VAL, generator=gen)
    return (WindowDataset(features, targets, torch.arange(N_TRAIN).numpy()),
            WindowDataset(features, targets, torch.arange(N_TRAIN, N_TRAIN + N_VAL).numpy()))


def run(out: Path, dropout: float, epochs: int = 3) -> dict[str, Any]:
    """Train the tiny model; returns (and writes, per rank) what the test compares."""
    torch.set_num_threads(1)
    train, val = datasets()
    steps: list[list[int]] = []
    losses: list[tuple[float, int]] = []
    plain_batch = loop._batch

    def recorded_batch(dataset: Any, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if dataset is train:
            steps.append([int(i) for i in idx])
        return plain_batch(dataset, idx)

    def recorded_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(pred.float().reshape(target.shape), target.float())
        if pred.requires_grad:  # training steps, not validation
            losses.append((float(loss.detach()), len(target)))
        return loss

    loop._batch = recorded_batch  # type: ignore[assignment]  # this process only
    config = ReformerConfig(seq_len=SEQ_LEN, d_model=16, n_heads=2, n_layers=2, chunk_size=16, n_buckets=4,
                            n_features=FEATURES, dropout=dropout, seed=3)
    model = ReformerModel(config)
    train_config = TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, eval_batch_size=64, patience=0, seed=5,
                               device="cpu", weight_decay=0.01)
    result = loop.fit(model, train, val, train_config, progress=False, loss_fn=recorded_loss)
    record = {"weights": {k: v.clone() for k, v in model.state_dict().items()}, "steps": steps, "losses": losses,
              "history": result.history}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(record, out / f"rank{distributed.rank()}.pt")
    return record


if __name__ == "__main__":
    joined = distributed.init_from_env()
    try:
        run(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)
        distributed.barrier()
    finally:
        if joined:
            distributed.shutdown()
