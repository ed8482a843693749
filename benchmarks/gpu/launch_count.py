"""How many kernels a GPU step launches, counted on a machine without a GPU.

    PYTHONPATH=src python3 benchmarks/gpu/launch_count.py --out benchmarks/gpu/launch_count.json

Each PyTorch operator that computes something launches at least one kernel on a GPU, and each launch costs the
host microseconds of Python, dispatch and driver work whatever the kernel's size. Where the device work is a few
milliseconds (the GPU targets: a 30 ms training step at L = 32,768, a 5 ms batch-1 forecast at the one-year
shape), the launches can set the time. This script runs the model on the CPU while taking the GPU's choices
(the fused Triton kernels, whose launches are counted and whose outputs are left unwritten; the GPU's attention
blocks and FFN slices) and counts, under a dispatch mode, every operator that reaches a kernel: views,
reshapes and allocations launch nothing and are not counted. bfloat16 autocast, as `fit` trains on CUDA, so its
casts count; and the forecast once more with the model cast to bfloat16, which needs none.

What differs from a GPU: an operator may launch more than one kernel there (a sort several, a layer-norm backward
two), and the CPU takes shortcuts a GPU does not (a check of the query path's padding, in the last layer of an
eval forward). The counts compare versions of the model; `fused_check.py` times them on a GPU, with and without a
CUDA graph (whose replay launches every kernel at once).

Writes FILE: per workload, the total, the Triton launches, and the operators by count.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from reformer import ReformerConfig, ReformerModel
from reformer.bench.targets import LONG_CONFIG
from reformer.model import chunked, feedforward, fused, fused_lsh

# operators that only make views, metadata or uninitialised memory: no kernel
NO_KERNEL = {"view", "_unsafe_view", "transpose", "t", "permute", "expand", "as_strided", "slice", "select",
             "unsqueeze", "squeeze", "alias", "detach", "split", "split_with_sizes", "unbind", "chunk", "reshape",
             "narrow", "unfold", "_reshape_alias", "lift_fresh", "empty_like", "empty", "empty_strided",
             "new_empty", "new_empty_strided", "is_same_size", "set_", "resize_", "result_type", "view_as",
             "_has_compatible_shallow_copy_type", "promote_types"}


class _Count(TorchDispatchMode):
    paused = False
    """Set while a stand-in kernel fills its output: that is not the model's work."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func._schema.name.split("::")[-1]
        if name not in NO_KERNEL and not _Count.paused:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


class _Launcher:
    """A Triton kernel's `kernel[grid](...)` that counts the launch and computes nothing, except the hashing's
    buckets, set to 0: left unwritten they would steer the CPU's value-dependent shortcuts (a check for padding
    in the last layer's windows) differently from run to run."""

    def __init__(self, name: str, counter: collections.Counter[str]) -> None:
        self.name, self.counter = name, counter

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, **kwargs: Any) -> None:
            self.counter[self.name] += 1
            if self.name == "lsh_hash":
                _Count.paused = True
                args[3].zero_()  # BUCKETS
                _Count.paused = False
        return launch


@contextmanager
def gpu_choices(triton: collections.Counter[str]) -> Iterator[None]:
    """The model on the CPU takes the GPU's paths: the fused kernels (counted, not run), the GPU's block sizes and
    FFN slices. Everything is put back on exit."""
    cuda = torch.device("cuda")
    ffn = feedforward.ChunkedFeedForward
    training, inference = ffn.training_chunks, ffn.inference_chunks
    lsh = ("forward", "backward", "combine", "row_dot", "hash")
    window = ("forward", "backward_kv", "backward_q")
    with ExitStack() as stack:
        stack.enter_context(patch.object(fused_lsh, "_kernels", lambda: SimpleNamespace(
            **{name: _Launcher(f"lsh_{name}", triton) for name in lsh})))
        stack.enter_context(patch.object(fused, "_kernels", lambda: SimpleNamespace(
            **{name: _Launcher(f"window_{name}", triton) for name in window})))
        stack.enter_context(patch.dict(chunked._BLOCK_ELEMENTS, {"cpu": chunked._BLOCK_ELEMENTS["cuda"]}))
        stack.enter_context(patch.object(ffn, "training_chunks", lambda self, b, l, device: training(self, b, l, cuda)))
        stack.enter_context(patch.object(ffn, "inference_chunks",
                                         lambda self, b, l, device: inference(self, b, l, cuda)))
        # the interpreter's switch lets the fused path be chosen on the CPU; nothing is interpreted
        stack.enter_context(patch.dict(os.environ, {"TRITON_INTERPRET": "1", fused.KERNEL_ENV: "fused"}))
        yield


def count(config: ReformerConfig, train: bool, batch: int = 1, weights: torch.dtype = torch.float32) -> dict[str, Any]:
    """Kernel launches of one call, a training step (forward, backward) or an eval forward: under bfloat16 autocast
    with float32 weights, or with the model cast to bfloat16 (`weights`), which needs no casts."""
    triton: collections.Counter[str] = collections.Counter()
    with gpu_choices(triton):
        torch.manual_seed(0)
        model = ReformerModel(config).train(train).to(weights)
        x = torch.randn(batch, config.seq_len, config.n_features, dtype=weights)

        def call() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=weights == torch.float32):
                if train:
                    model(x).sum().backward()
                    model.zero_grad(set_to_none=True)
                else:
                    with torch.no_grad():
                        model(x)

        call()  # state made on first use (kept rotations, lazily built buffers) stays out of the count
        triton.clear()
        with _Count() as counted:
            call()
    ops = counted.ops + triton
    return {"launches": sum(ops.values()), "triton": sum(triton.values()), "by_operator": dict(ops.most_common())}


def workloads(smoke: bool) -> dict[str, tuple[ReformerConfig, bool, torch.dtype]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fused_check import compare_config  # beside this script: `bench compare`'s model

    long = LONG_CONFIG.replace(seq_len=256) if smoke else LONG_CONFIG
    compare = compare_config(256 if smoke else 32768)
    autocast, bf16 = torch.float32, torch.bfloat16
    return {"one-year eval forward, batch 1": (long, False, autocast),
            "one-year eval forward, batch 1, bfloat16 weights": (long, False, bf16),
            "one-year training step": (long, True, autocast),
            "bench compare training step, L = 32,768": (compare, True, autocast)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--smoke", action="store_true", help="short sequences: check the script itself")
    args = parser.parse_args()
    report = {}
    for name, (config, train, weights) in workloads(args.smoke).items():
        report[name] = count(config, train, weights=weights)
        print(f"{name}: {report[name]['launches']} launches ({report[name]['triton']} Triton)", flush=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
