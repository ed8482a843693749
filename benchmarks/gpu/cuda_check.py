"""CUDA checks and timings, for a machine with an NVIDIA GPU (CI has none, so these are not in the test suite).

    python benchmarks/gpu/cuda_check.py --out DIR [--no-timing]

1. float64, CPU against CUDA: `ReformerModel` outputs (train mode, and eval mode, where the last layer runs at the
   read position only) and every gradient through the reversible backward, for LSH, local and full attention, causal or
   not. The LSH rotations come from a CPU generator, so both devices hash alike and must agree to rounding.
2. bfloat16 autocast training steps run for every kernel (CUDA autocast hands the kernels float32 unit keys
   beside bfloat16 queries). The reversible backward on CUDA restores the dropout RNG: with dropout 0.25 its
   gradients equal plain autograd's, with every layer recomputed, with recomputed layers keeping their attention
   probabilities, and with every layer stored.
3. The training loop on CUDA (bfloat16 autocast): `fit` trains, saves the best checkpoint, and the checkpoint
   loaded on the CPU predicts what the CUDA model predicts in float32, to 1e-4.
4. Timings (CUDA events, medians of 5 after 2 warm-ups) and peak allocated memory: the one-year configuration's
   eval forward (float32, bfloat16 autocast) and training step; `bench compare`'s training step at L = 2,048,
   8,192 and 32,768 for ours, HF transformers and reformer-pytorch (where they import) and the SDPA encoder.

Writes DIR/cuda_check.json; prints one line per check; exits 1 if a check of 1-3 fails.
Shape legend: b batch, l length, f input features.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reformer import ReformerConfig, ReformerModel
from reformer.bench.peers import ModelShape, build_step
from reformer.bench.targets import LONG_CONFIG
from reformer.data.dataset import WindowDataset
from reformer.training import TrainConfig, fit, load_checkpoint

CUDA = torch.device(os.environ.get("CUDA_CHECK_DEVICE", "cuda"))
"""The device under test; `CUDA_CHECK_DEVICE=cpu ... --no-timing` dry-runs checks 1-3 of this script on a CPU."""


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x.detach().cpu() - y.detach().cpu()).abs().max()) for x, y in zip(a, b, strict=True))


def _grads(model: ReformerModel, x: torch.Tensor, seed: int = 11) -> list[torch.Tensor]:
    model.reseed(5)
    torch.manual_seed(seed)  # seeds the CUDA generators too: same dropout masks in both runs of one device
    x = x.clone().requires_grad_(True)
    out = model(x)
    return [out, *torch.autograd.grad((out**2).sum(), [x, *model.parameters()])]


def check_cpu_vs_cuda() -> dict[str, float]:
    """Max |CPU - CUDA| over outputs and gradients (train mode) and eval outputs, per kernel and causality."""
    diffs = {}
    for kind in ("lsh", "local", "full"):
        for causal in (False, True):
            config = ReformerConfig(seq_len=100, d_model=32, n_heads=4, n_layers=3, chunk_size=16, n_buckets=8,
                                    n_hash_rounds=2, dropout=0.0, ff_chunks=2, n_features=3, causal=causal,
                                    attention_type=kind, full_attention_threshold=0)  # type: ignore[arg-type]
            cpu = ReformerModel(config).double().train()
            gpu = copy.deepcopy(cpu).to(CUDA)
            x = torch.randn(2, 100, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            train = _max_diff(_grads(cpu, x), _grads(gpu, x.to(CUDA)))
            with torch.no_grad():
                evaluated = _max_diff([cpu.eval()(x)], [gpu.eval()(x.to(CUDA))])
            diffs[f"{kind}{'_causal' if causal else ''}"] = max(train, evaluated)
    return diffs


def check_reversible_rng_on_cuda() -> dict[str, float]:
    """Max |reversible - plain autograd| of the gradients on CUDA with dropout, per activation budget."""
    base = ReformerConfig(seq_len=64, d_model=32, n_heads=4, n_layers=3, chunk_size=16, n_buckets=4,
                          n_hash_rounds=2, dropout=0.25, ff_chunks=2, n_features=3, attention_type="lsh",
                          full_attention_threshold=0)
    per_layer = base.stored_layer_bytes(2, 64) / 2**20
    diffs = {}
    for name, budget in (("recompute_all", 0.0), ("recompute_keep_probabilities", 0.9 * per_layer),
                         ("store_all", 256.0)):
        model = ReformerModel(base.replace(activation_budget_mb=budget)).double().to(CUDA).train()
        x = torch.randn(2, 64, 3, dtype=torch.float64, device=CUDA)
        model.use_reversible_layers = True
        reversible = _grads(model, x)
        model.use_reversible_layers = False
        plain = _grads(model, x)
        other = _grads(model, x, seed=12)  # dropout really is on
        assert not torch.allclose(other[1], plain[1]), "dropout had no effect"
        diffs[name] = _max_diff(reversible, plain)
    return diffs


def check_autocast_training() -> dict[str, float]:
    """One bfloat16-autocast training step per kernel (reversible, dropout on): the largest gradient norm, which
    must be finite. CUDA's autocast runs F.normalize in float32 (the unit keys) beside bfloat16 queries."""
    norms = {}
    for kind in ("lsh", "local", "full"):
        for causal in (False, True):
            config = ReformerConfig(seq_len=256, d_model=64, n_heads=4, n_layers=2, chunk_size=32, n_buckets=8,
                                    n_hash_rounds=2, dropout=0.1, n_features=3, causal=causal,
                                    attention_type=kind, full_attention_threshold=0,  # type: ignore[arg-type]
                                    activation_budget_mb=0.0)
            model = ReformerModel(config).to(CUDA).train()
            x = torch.randn(4, 256, 3, device=CUDA)
            with torch.autocast(CUDA.type, dtype=torch.bfloat16):
                loss = model(x).float().square().mean()
            loss.backward()
            norms[f"{kind}{'_causal' if causal else ''}"] = max(
                float(p.grad.float().norm()) for p in model.parameters() if p.grad is not None)
    return norms


def check_training_and_checkpoint(directory: Path) -> dict[str, Any]:
    """fit on CUDA, then the best checkpoint on the CPU against the CUDA model (float32, no autocast)."""
    config = ReformerConfig(seq_len=32, d_model=32, n_heads=4, n_layers=2, n_hash_rounds=2, n_buckets=4,
                            chunk_size=8, n_features=3, dropout=0.1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(600, 32, 3, generator=generator)
    y = x[:, -5:, 0].mean(dim=1)  # learnable from the last bars
    train, val = WindowDataset(x, y, torch.arange(480).numpy()), WindowDataset(x, y, torch.arange(480, 600).numpy())
    model = ReformerModel(config)
    result = fit(model, train, val, TrainConfig(epochs=4, batch_size=32, lr=3e-3, device=str(CUDA), patience=0),
                 out_dir=directory, progress=False)
    assert next(model.parameters()).device.type == CUDA.type
    restored, _ = load_checkpoint(directory)
    with torch.no_grad():
        on_gpu = model.eval()(x[480:].to(CUDA)).float().cpu()
        on_cpu = restored.eval()(x[480:])
    losses = [r["train_loss"] for r in result.history]
    return {"train_loss": losses, "val_loss": [r["val_loss"] for r in result.history],
            "checkpoint_cpu_vs_cuda_max_diff": float((on_gpu - on_cpu).abs().max()),
            "loss_fell": losses[-1] < 0.8 * losses[0]}


def _cuda_time(fn: Callable[[], Any], warmup: int = 2, reps: int = 5) -> dict[str, float]:
    """Median and min seconds of `reps` calls after `warmup`: CUDA events on a GPU (with the peak allocated
    memory), wall time in a CPU dry run."""
    on_gpu = CUDA.type == "cuda"
    for _ in range(warmup):
        fn()
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        if on_gpu:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    out = {"median_s": statistics.median(times), "min_s": min(times)}
    if on_gpu:
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _one_year() -> dict[str, Any]:
    out: dict[str, Any] = {}
    model = ReformerModel(LONG_CONFIG).to(CUDA)
    x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features, device=CUDA)

    def forward(bf16: bool) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad(), torch.autocast(CUDA.type, dtype=torch.bfloat16, enabled=bf16):
                return model(x)
        return run

    model.eval()
    out["one_year_forward_float32"] = _cuda_time(forward(False))
    out["one_year_forward_bfloat16"] = _cuda_time(forward(True))
    model.train()

    def train_step() -> None:
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    out["one_year_train_step_float32"] = _cuda_time(train_step)
    print("one-year:", json.dumps(out), flush=True)
    return out


def timings(lengths: list[int], impls: list[str]) -> dict[str, Any]:
    out = _one_year()
    shape = ModelShape()
    for length in lengths:
        for impl in impls:
            key = f"compare_{impl}_{length}"
            try:
                if CUDA.type == "cuda":
                    torch.cuda.empty_cache()
                step = build_step(impl, shape, length, device=CUDA)
                out[key] = _cuda_time(step)
                del step
            except Exception as exc:  # a peer that does not import or run here is recorded, not fatal
                out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            print(key, json.dumps(out[key]), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--lengths", default="2048,8192,32768")
    parser.add_argument("--impls", default="ours,hf,lucidrains,sdpa")
    parser.add_argument("--no-checks", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if CUDA.type == "cuda" else "cpu (dry run)"
    report: dict[str, Any] = {"torch": torch.__version__, "device": name,
                              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    failed = False
    checks: list[tuple[str, Callable[[], Any], Callable[[Any], bool]]] = [
        ("cpu_vs_cuda_float64", check_cpu_vs_cuda, lambda d: max(d.values()) < 1e-9),
        ("reversible_rng_cuda_float64", check_reversible_rng_on_cuda, lambda d: max(d.values()) < 1e-9),
    ]
    checks.append(("autocast_training", check_autocast_training,
                   lambda d: all(0 < v < float("inf") for v in d.values())))
    with tempfile.TemporaryDirectory() as tmp:
        checks.append(("training_checkpoint", lambda: check_training_and_checkpoint(Path(tmp)),
                       lambda d: d["loss_fell"] and d["checkpoint_cpu_vs_cuda_max_diff"] < 1e-4))
        for name, run, passed in [] if args.no_checks else checks:
            try:
                result = run()
                ok = bool(passed(result))
            except Exception:
                result, ok = {"error": traceback.format_exc()[-2000:]}, False
            failed |= not ok
            report[name] = {"passed": ok, "result": result}
            print(f"{name}: {'PASS' if ok else 'FAIL'} {json.dumps(result)}", flush=True)
            (args.out / "cuda_check.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_timing:
        try:
            report["timings"] = timings([int(n) for n in args.lengths.split(",") if n], args.impls.split(","))
        except Exception:
            report["timings"] = {"error": traceback.format_exc()[-2000:]}
            print(report["timings"]["error"], flush=True)
    (args.out / "cuda_check.json").write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
