"""How much of the comparison is the linear layers' kernel: HF transformers and reformer-pytorch with every
`nn.Linear` routed to oneDNN the way ours are (step 25), timed beside ours in one process, CPU float32.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/peers_onednn.py --length 32768 --threads 1 \
        --impls ours,hf,lucidrains

`nn.Linear.forward` is replaced by `reformer.model.linear.Linear.forward` for the whole process (the peers build
plain `nn.Linear` layers), so their forward and both backward products run on the same oneDNN kernels as ours.
One warm-up step, then `--steps` timed steps per implementation, implementations in turn (not a subprocess each:
peak memory is not measured here; `reformer bench compare` measures it). `--targets` instead runs the training part
of `reformer bench targets` (the default configuration against the same-size SDPA encoder, whose `nn.Linear`
layers are then on oneDNN too).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from reformer.bench.peers import build_step
from reformer.bench.shape import ModelShape
from reformer.model.linear import Linear
from reformer.runtime import tune_malloc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--impls", default="ours,hf,lucidrains")
    parser.add_argument("--targets", action="store_true", help="the default configuration against SDPA instead")
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    nn.Linear.forward = Linear.forward  # type: ignore[method-assign]  # every nn.Linear on oneDNN
    if args.targets:
        from reformer.bench.targets import TargetSpec, run_targets

        train = run_targets(TargetSpec(train_steps=max(args.steps, 4), latency_calls=10, long_calls=0,
                                       threads=args.threads))["train"]
        print(f"default configuration, batch 32, {args.threads} thread(s): ours {train['ours_s'] * 1e3:.1f} ms, SDPA "
              f"{train['sdpa_s'] * 1e3:.1f} ms; SDPA / ours {train['sdpa_over_ours']:.2f}x")
        return
    times: dict[str, list[float]] = {}
    for impl in args.impls.split(","):
        step = build_step(impl, ModelShape(), args.length)
        step()  # warm-up
        for _ in range(args.steps):
            began = time.perf_counter()
            step()
            times.setdefault(impl, []).append(time.perf_counter() - began)
        del step
        print(f"{impl}: {statistics.median(times[impl]):.2f} s ({len(times[impl])} step(s))", flush=True)
    if "ours" in times:
        base = statistics.median(times["ours"])
        for impl, values in times.items():
            print(f"{impl} / ours: {statistics.median(values) / base:.2f}x")


if __name__ == "__main__":
    main()
