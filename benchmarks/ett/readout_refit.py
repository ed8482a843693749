"""Does the trained encoder carry information a linear map of the window lacks? Train the README table's member
(seed and horizon given), then refit its flatten head in closed form: ridge on [the window in the RevIN frame,
centred on its last value (the linear baseline's design), the encoder's standardised head inputs], the raw block
lightly penalised (1e-3, as `LinearForecaster`) and the encoder block by alpha_f; alpha_f = inf is the linear map
alone. Scores validation and test MSE for each alpha_f, and the encoder block's share of the forecast's variance.

    python benchmarks/ett/readout_refit.py H SEED

Shape legend: w windows, c channels (7), l input (336), t horizon, k encoder features (42 patches x 128).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from einops import rearrange

from reformer.data.timeseries import load_timeseries_csv, lstf_splits
from reformer.training.forecast import ForecastConfig
from reformer.training.loop import TrainConfig
from reformer.training.lstf import _fit_member
from reformer.training.lstf_scoring import WindowSet, drop_last_windows

SEQ_LEN = 336
ALPHAS = (np.inf, 1e4, 3e3, 1e3, 3e2, 1e2, 3e1, 1e1)


def main() -> None:
    horizon, seed = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    series = load_timeseries_csv("/work/shared/data/ett/ETTh1.csv", target="OT", features="M")
    splits = lstf_splits(series, SEQ_LEN, horizon, protocol="ett_hour")
    train, val, test = (WindowSet(part, SEQ_LEN, horizon) for part in (splits.train, splits.val, splits.test))
    config = ForecastConfig(seq_len=SEQ_LEN, horizon=horizon, n_channels=7, patch_len=16, stride=8, d_model=64,
                            n_heads=4, n_layers=2, d_ff=128, attention_type="full", dropout=0.1, seed=seed)
    train_config = TrainConfig(epochs=3, max_batches_per_epoch=32, batch_size=128, lr=1e-3, weight_decay=1e-4,
                               patience=2, seed=seed)
    began = time.time()
    model = _fit_member(config, train_config, train, val, target_only=False, progress=False, log=None, out_dir=None,
                        meta=None, resume=False).model.eval()
    revin = model.revin
    assert revin is not None and revin.gamma is not None and revin.beta is not None
    print(f"trained in {time.time() - began:.0f} s", flush=True)
    captured: list[torch.Tensor] = []
    hook = model.encoder.head.register_forward_hook(lambda module, args, output: captured.append(args[0].detach()))

    @torch.no_grad()
    def design(windows: WindowSet) -> tuple[np.ndarray, ...]:
        """Encoder features (w*c, k), window z (w*c, l) and targets (w*c, t) in the RevIN frame, the trained
        model's forecast (w, t, c), and x, y on the normalised scale."""
        x, y = windows.batch(slice(None))
        feats, zs, ys, preds = [], [], [], []
        for i in range(0, len(x), 256):
            captured.clear()
            preds.append(model(x[i: i + 256]))
            feats.append(captured[0])
            z, (mean, std) = revin.normalize(x[i: i + 256])
            zs.append(rearrange(z, "b l c -> (b c) l"))
            target = (y[i: i + 256] - mean) / std * revin.gamma + revin.beta
            ys.append(rearrange(target, "b t c -> (b c) t"))
        return (torch.cat(feats).double().numpy(), torch.cat(zs).double().numpy(), torch.cat(ys).double().numpy(),
                torch.cat(preds).numpy(), x.numpy(), y.numpy())

    f_tr, z_tr, y_tr, _, _, _ = design(train)
    f_va, z_va, _, p_va, x_va, y_va = design(val)
    f_te, z_te, _, p_te, x_te, y_te = design(test)
    hook.remove()
    mean, scale = f_tr.mean(0), f_tr.std(0) + 1e-6

    def blocks(f: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = z[:, -1:]
        return np.concatenate([z - last, np.ones_like(last), (f - mean) / scale], axis=1), last

    a_tr, last_tr = blocks(f_tr, z_tr)
    gram, rhs = a_tr.T @ a_tr, a_tr.T @ (y_tr - last_tr)
    k_raw, n = SEQ_LEN + 1, len(a_tr)
    del f_tr, a_tr

    @torch.no_grad()
    def to_scale(out: np.ndarray, x: np.ndarray) -> np.ndarray:
        """RevIN-frame (w*c, t) -> normalised scale (w, t, c)."""
        _, stats = revin.normalize(torch.from_numpy(x))
        frame = rearrange(torch.from_numpy(out).float(), "(b c) t -> b t c", c=x.shape[2])
        return revin.denormalize(frame, stats).numpy()

    lead = drop_last_windows(len(x_te), 128)
    print(f"trained model: val {((p_va - y_va) ** 2).mean():.4f} test {((p_te - y_te) ** 2).mean():.4f} "
          f"PatchTST's windows {((p_te[:lead] - y_te[:lead]) ** 2).mean():.4f}")
    (a_va, last_va), (a_te, last_te) = blocks(f_va, z_va), blocks(f_te, z_te)
    for alpha in ALPHAS:
        penalty = np.zeros(len(gram))
        penalty[: k_raw - 1] = 1e-3 * n
        weight = np.zeros((len(gram), horizon))
        if np.isinf(alpha):
            weight[:k_raw] = np.linalg.solve(gram[:k_raw, :k_raw] + np.diag(penalty[:k_raw]), rhs[:k_raw])
        else:
            penalty[k_raw:] = alpha * n / (len(gram) - k_raw)
            weight = np.linalg.solve(gram + np.diag(penalty), rhs)
        pred_va = to_scale(a_va @ weight + last_va, x_va)
        out_te = a_te @ weight
        pred_te = to_scale(out_te + last_te, x_te)
        share = np.var(a_te[:, k_raw:] @ weight[k_raw:]) / max(float(np.var(out_te)), 1e-12)
        print(f"alpha_f {alpha:>8}: val {((pred_va - y_va) ** 2).mean():.4f} test {((pred_te - y_te) ** 2).mean():.4f} "
              f"PatchTST's windows {((pred_te[:lead] - y_te[:lead]) ** 2).mean():.4f}  encoder block's variance share "
              f"{share:.3f}", flush=True)


if __name__ == "__main__":
    main()
