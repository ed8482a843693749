"""The fused LSH attention on one GPU: correctness, then every speed and memory target, in one run.

    . benchmarks/gpu/env.sh && python3 benchmarks/gpu/fused_check.py --out DIR     (from the repository root)
    PYTHONPATH=src python3 benchmarks/gpu/fused_check.py --out DIR --smoke    (tiny lengths: a dry run, CPU too)

1. `tests/model/test_fused.py` and `test_fused_hash.py` on the GPU (compiled kernels, bfloat16 included), then
   the bench-compare shape at L = 4,096 with the fused and the reference kernel, float32: outputs and gradients
   relative to the largest value.
2. `bench compare`'s training step at L = 32,768 (d_model 256, 8 heads, 6 layers, 4 rounds, chunk 64, batch 1):
   ours fused and ours reference, HF transformers, reformer-pytorch and the SDPA encoder, each under bfloat16
   autocast (and ours fused in float32): median time and peak allocated memory.
3. The crossover: ours (fused, bfloat16) against the SDPA encoder (FlashAttention under bfloat16) from L = 1,024
   to 131,072, and a plot of both.
4. The one-year configuration (seq_len 8,760, d_model 256, 8 rounds): training step and batch-1 inference,
   and inference with the model cast to bfloat16 (no autocast casts).

Ours is also timed captured in a CUDA graph (`graphed`, "-graph" in the names) in sections 2 to 4: the difference
from the eager call is the host's cost of launching the step's kernels one by one.
5. LSH attention alone (fused hash, sort, fused attention and combination; forward and backward) from 2^14 to 2^20
   positions: time and peak memory per position.
6. `profile_step.py --bfloat16` on the L = 32,768 step: device time by operator, and the host-device syncs.
7. The other route, FlexAttention (`flex_lsh.py`), against the Triton kernels and the reference: agreement at
   L = 4,096 (outputs and gradients) and forward + backward after hashing at 8,192, 32,768 and 131,072.

Timings are CUDA events, the median of 5 after 2 warm-ups (the warm-ups compile the kernels). Each section is
written to DIR/fused_check.json as it finishes, with DIR/targets.md, every target judged (`verdicts.py`), so a
run cut short keeps what it measured. Exits 1 if a check of section 1 fails.
Shape legend: b batch, h heads, l length, e head dim, d model width.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from reformer import ReformerConfig, ReformerModel
from reformer.bench.attention import n_buckets_for
from reformer.bench.peers import ModelShape, build_step
from reformer.bench.targets import LONG_CONFIG
from reformer.model import attention as attention_module
from reformer.model.attention import kernel_in_use
from reformer.model.fused import KERNEL_ENV
from reformer.model.lsh import hash_vectors, lsh_attention

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
os.environ.setdefault("CUDA_CHECK_DEVICE", DEVICE.type)  # cuda_check's timer then times this device
from cuda_check import _cuda_time  # noqa: E402 - beside this script; reads the device above
from verdicts import markdown  # noqa: E402


def compare_config(length: int) -> ReformerConfig:
    """`bench compare`'s model ("ours" in `reformer.bench.peers`) as a config: LSH, reversible, dropout 0."""
    shape = ModelShape()
    return ReformerConfig(seq_len=length, d_model=shape.d_model, n_heads=shape.n_heads, n_layers=shape.n_layers,
                          n_hash_rounds=shape.n_hash_rounds, chunk_size=shape.chunk_size,
                          n_buckets=n_buckets_for(length, shape.chunk_size), dropout=0.0, n_features=shape.d_model,
                          ff_chunks=shape.ff_chunks(length))


SMOKE = False
"""A dry run (`--smoke`): every timing is one call, no warm-up; the figures only show the script works."""


def timed(fn: Callable[[], Any], reps: int = 5, warmup: int = 2) -> dict[str, float]:
    """Median and minimum seconds of `fn` and, on a GPU, its peak allocated memory in MB (`cuda_check`'s timer)."""
    return _cuda_time(fn, warmup=0, reps=1) if SMOKE else _cuda_time(fn, warmup=warmup, reps=reps)


def with_kernel(kernel: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` with the attention kernel forced through the environment switch."""
    def run() -> Any:
        before = os.environ.get(KERNEL_ENV)
        os.environ[KERNEL_ENV] = kernel
        try:
            return fn()
        finally:
            if before is None:
                os.environ.pop(KERNEL_ENV)
            else:
                os.environ[KERNEL_ENV] = before
    return run


def autocast(fn: Callable[[], Any], dtype: torch.dtype | None, cache: bool = True) -> Callable[[], Any]:
    """`fn` under autocast to `dtype`; None = plain float32. `cache=False` for a CUDA graph's capture: autocast's
    cache of cast weights would otherwise hand the graph tensors freed after it."""
    def run() -> Any:
        if dtype is None:
            return fn()
        with torch.autocast(DEVICE.type, dtype=dtype, cache_enabled=cache):
            return fn()
    return run


def graphed(fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` captured once in a CUDA graph, after three warm-ups on a side stream (which also run the autotuner),
    and replayed from then on: a replay launches every kernel at once, so timing it apart from the eager call
    measures what the launches' host cost adds. The capture also shows the step makes no host-device sync (one
    would fail it). On the CPU (the smoke run) `fn` itself."""
    if DEVICE.type != "cuda":
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def guarded(fn: Callable[[], Any]) -> Any:
    """`fn()`, or the error it raised (a peer that does not import, an out-of-memory) as a record."""
    try:
        return fn()
    except Exception as exc:
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


@contextlib.contextmanager
def reference_hashing() -> Iterator[None]:
    """The model hashes with the reference even where it attends with the fused kernels, so that comparing the two
    kernels compares attention alone: fused hashing sums its projections in another order, and a bucket that
    flips where two projections tie within rounding changes a whole row (`test_fused_hash.py` checks hashing)."""
    original = attention_module.hash_vectors

    def hash_reference(qk: torch.Tensor, rotations: torch.Tensor, n_buckets: int, valid: torch.Tensor | None,
                       fused: bool = False) -> torch.Tensor:
        return original(qk, rotations, n_buckets, valid)

    attention_module.hash_vectors = hash_reference
    try:
        yield
    finally:
        attention_module.hash_vectors = original


def correctness(smoke: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not smoke:
        # most of the tests' time is compiling their ~50 kernel variants: with pytest-xdist (in the GPU image)
        # the variants compile in several processes at once
        workers = min(8, (os.cpu_count() or 1) // 2)
        spread = ["-n", str(workers)] if workers > 1 and importlib.util.find_spec("xdist") else []
        tests = subprocess.run([sys.executable, "-m", "pytest", "tests/model/test_fused.py",
                                "tests/model/test_fused_hash.py", "-q", "-p", "no:cacheprovider", *spread],
                               capture_output=True, text=True, timeout=400)
        out["pytest_workers"] = workers if spread else 1
        out["pytest_tail"] = tests.stdout.strip().splitlines()[-3:]
        out["pytest_passed"] = tests.returncode == 0
    shape = ModelShape()
    length = 256 if smoke else 4096
    results = {}
    for kernel in ("reference", "fused"):
        torch.manual_seed(0)
        # hashing from the first length on (the smoke run's short input would otherwise run full attention)
        model = ReformerModel(compare_config(length).replace(full_attention_threshold=0)).to(DEVICE).train()
        model.reseed(5)
        x = torch.randn(1, length, shape.d_model, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        x.requires_grad_(True)

        def grads(model: ReformerModel = model, x: torch.Tensor = x) -> list[torch.Tensor]:
            y = model(x)
            return [y.detach(), *torch.autograd.grad((y.float() ** 2).sum(), [x, *model.parameters()])]

        with reference_hashing():
            results[kernel] = with_kernel(kernel, grads)()
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                for a, b in zip(results["fused"], results["reference"], strict=True))
    out["float32_fused_vs_reference_max_relative"] = worst
    out["float32_passed"] = worst < 1e-4  # a whole 6-layer step: per-kernel 1e-5 compounds through the layers
    return out


def compare_step(lengths: list[int], impls: list[str]) -> dict[str, Any]:
    shape = ModelShape()
    out: dict[str, Any] = {}
    for length in lengths:
        for impl in impls:
            # names: an implementation of `bench compare`, or ours-<kernel>[-fp32], then -graph for a CUDA graph
            graph = impl.endswith("-graph")
            name, dtype, kernel = impl.removesuffix("-graph"), torch.bfloat16, "auto"
            if name.startswith("ours-"):
                name, kernel = "ours", name.split("-", 1)[1]
                if kernel.endswith("-fp32"):
                    kernel, dtype = kernel[:-5], None
            key = f"{impl}_{length}"

            def measure(name: str = name, kernel: str = kernel, dtype: torch.dtype | None = dtype,
                        length: int = length, graph: bool = graph) -> dict[str, Any]:
                step = with_kernel(kernel, lambda: build_step(name, shape, length, device=DEVICE))()
                run = with_kernel(kernel, autocast(step, dtype, cache=not graph))
                return timed(graphed(run) if graph else run)

            out[key] = guarded(measure)
            print(key, json.dumps(out[key]), flush=True)
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
    return out


def crossover(lengths: list[int], out_dir: Path) -> dict[str, Any]:
    result = compare_step(lengths, ["ours-fused", "ours-fused-graph", "sdpa"])
    rows = []  # (length, ours eager, ours graphed, sdpa), median seconds or None
    for length in lengths:
        rows.append((length, *(result.get(f"{impl}_{length}", {}).get("median_s")
                               for impl in ("ours-fused", "ours-fused-graph", "sdpa"))))
    for column, label in ((1, "ours"), (2, "ours_graph")):
        faster = [row[0] for row in rows if row[column] and row[3] and row[column] < row[3]]
        result[f"{label}_faster_from"] = min(faster) if faster else None
        long_rows = [row for row in rows if row[0] >= 8192]  # none in a dry run: then no verdict
        result[f"{label}_faster_at_every_length_from_8192"] = all(
            row[column] is not None and row[3] is not None and row[column] < row[3] for row in long_rows
        ) if long_rows else None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for column, label in ((1, "reformer-crypto, fused LSH (bfloat16)"), (2, "the same, as a CUDA graph"),
                              (3, "SDPA encoder, FlashAttention")):
            points = [(row[0], row[column]) for row in rows if row[column]]
            ax.loglog([p[0] for p in points], [p[1] * 1000 for p in points], "o-", label=label)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("training step (ms)")
        ax.set_title(f"One training step, d_model 256, 8 heads, 6 layers ({torch.cuda.get_device_name(0)})"
                     if DEVICE.type == "cuda" else "One training step (CPU dry run)", fontsize=8)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "crossover.png", dpi=120)
    except Exception as exc:  # the numbers are the result; the plot is a view of them
        result["plot_error"] = repr(exc)
    return result


def one_year(smoke: bool) -> dict[str, Any]:
    config = LONG_CONFIG.replace(seq_len=256) if smoke else LONG_CONFIG
    model = ReformerModel(config).to(DEVICE)
    x = torch.randn(1, config.seq_len, config.n_features, device=DEVICE)

    def step() -> None:
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    def forecast(net: ReformerModel, inputs: torch.Tensor) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return net(inputs)
        return run

    infer = forecast(model, x)
    out: dict[str, Any] = {"kernel": kernel_in_use(config, DEVICE, config.seq_len)}
    model.train()
    out["train_step_bfloat16"] = guarded(lambda: timed(autocast(step, torch.bfloat16)))
    out["train_step_bfloat16_graph"] = guarded(lambda: timed(graphed(autocast(step, torch.bfloat16, cache=False))))
    model.eval()
    out["inference_batch1_bfloat16"] = guarded(lambda: timed(autocast(infer, torch.bfloat16), reps=20))
    out["inference_batch1_bfloat16_graph"] = guarded(
        lambda: timed(graphed(autocast(infer, torch.bfloat16, cache=False)), reps=20))
    out["inference_batch1_float32"] = guarded(lambda: timed(infer, reps=20))
    # the model cast to bfloat16, as a forecaster would serve it: no autocast, so none of its casts' launches
    infer16 = forecast(copy.deepcopy(model).to(torch.bfloat16), x.to(torch.bfloat16))
    out["inference_batch1_bfloat16_weights"] = guarded(lambda: timed(infer16, reps=20))
    out["inference_batch1_bfloat16_weights_graph"] = guarded(lambda: timed(graphed(infer16), reps=20))
    return out


def attention_alone(lengths: list[int]) -> dict[str, Any]:
    """LSH attention at the bench shape's heads (8 x 32) with ~chunk/2 keys per bucket, forward and backward."""
    from flex_lsh import CHUNK, attention_tensors

    out: dict[str, Any] = {}
    for length in lengths:
        def measure(length: int = length) -> dict[str, Any]:
            qk, v, rotations, n_buckets = attention_tensors(length, 1, torch.bfloat16)

            def run() -> None:
                buckets = hash_vectors(qk, rotations, n_buckets, None, fused=True)
                y, _ = lsh_attention(qk, v, buckets, CHUNK, fused=True)
                y.float().sum().backward()
                qk.grad = v.grad = None

            return timed(run)

        out[str(length)] = guarded(measure)
        record = out[str(length)]
        if "median_s" in record:
            record["ns_per_position"] = record["median_s"] / length * 1e9
            if "peak_mb" in record:
                record["bytes_per_position"] = record["peak_mb"] * 2**20 / length
        print("attention", length, json.dumps(record), flush=True)
    return out


def profile_step(out_dir: Path, smoke: bool) -> dict[str, Any]:
    """`profile_step.py` on the L = 32,768 step under bfloat16 autocast: where the fused step's time goes, by
    operator, and its host-device syncs (DIR/profile_32768_bfloat16.txt). Skipped without CUDA."""
    if DEVICE.type != "cuda":
        return {"skipped": "profile_step.py needs CUDA"}
    script = Path(__file__).with_name("profile_step.py")
    done = subprocess.run([sys.executable, str(script), "--length", "256" if smoke else "32768", "--bfloat16",
                           "--out", str(out_dir)], capture_output=True, text=True, timeout=300)
    return {"returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-40:],
            "stderr_tail": done.stderr.strip().splitlines()[-5:]}


def routes(smoke: bool) -> dict[str, Any]:
    """`flex_lsh.compare_routes`, imported here: FlexAttention's import and compiler are this section's alone."""
    from flex_lsh import compare_routes

    return compare_routes(smoke)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny lengths: check the script itself")
    parser.add_argument("--sections", default="correctness,compare,crossover,one_year,attention,profile,routes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import triton

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "cpu (dry run)",
        "torch": torch.__version__, "triton": triton.__version__,
        "kernel_at_32768": kernel_in_use(compare_config(32768), DEVICE, 32768),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "command": " ".join(sys.argv)}
    global SMOKE
    smoke = SMOKE = args.smoke
    sections: dict[str, Callable[[], Any]] = {
        "correctness": lambda: correctness(smoke),
        "compare": lambda: compare_step([256] if smoke else [32768],
                                        ["ours-fused", "ours-fused-graph", "ours-reference", "ours-fused-fp32",
                                         "hf", "lucidrains", "sdpa"]),
        "crossover": lambda: crossover([256, 512] if smoke else [2**k for k in range(10, 18)], args.out),
        "one_year": lambda: one_year(smoke),
        "attention": lambda: attention_alone([2**7, 2**8] if smoke else [2**k for k in range(14, 21)]),
        "profile": lambda: profile_step(args.out, smoke),
        "routes": lambda: routes(smoke),
    }
    failed = False
    for name in args.sections.split(","):
        began = time.perf_counter()
        try:
            report[name] = sections[name]()
        except Exception:
            report[name] = {"error": traceback.format_exc()[-2000:]}
        report[name + "_seconds"] = round(time.perf_counter() - began, 1)
        if name == "correctness":
            failed = not (report[name].get("float32_passed") and report[name].get("pytest_passed", True))
        print(name, "done in", report[name + "_seconds"], "s", flush=True)
        (args.out / "fused_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "targets.md").write_text(markdown(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
