"""Where a training step of ours spends its time on a GPU: `torch.profiler` tables and the host-device syncs.

    python benchmarks/gpu/profile_step.py [--length 32768] [--out DIR] [--bfloat16]

One `bench compare`-shape training step (ours, LSH, reversible) after two warm-ups: the kernels it ran and the
launch calls (what `launch_count.py` counts without a GPU), the top operators by device time and by host time,
then every operator that made the host wait for the device (CUDA's sync debug mode), with the line of ours that
called it. Writes DIR/profile_L.txt.
"""

from __future__ import annotations

import argparse
import collections
import io
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from reformer.bench.peers import ModelShape, build_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=32768)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--bfloat16", action="store_true", help="under bfloat16 autocast (as `fit` trains on CUDA)")
    args = parser.parse_args()
    eager = build_step("ours", ModelShape(), args.length, device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bfloat16):
            eager()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    text = io.StringIO()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    averages = prof.key_averages()
    # the count `launch_count.py` estimates without a GPU: kernels run on the device, and the host's launch calls
    kernels = sum(1 for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA)
    launches = sum(a.count for a in averages if a.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
    counted = f"kernels on the device in one step: {kernels}; kernel launch calls on the host: {launches}"
    text.write(counted + "\n")
    text.write(averages.table(sort_by="self_cuda_time_total", row_limit=30) + "\n")
    text.write(averages.table(sort_by="self_cpu_time_total", row_limit=30) + "\n")
    # every synchronising call, by the line of ours that made it
    sites: collections.Counter[str] = collections.Counter()

    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step()
        torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("default")
    for message in caught:  # the warning names the Python line that called the synchronising operator
        where = str(message.filename).split("/reformer/")[-1]
        sites[f"{where}:{message.lineno}  {str(message.message)[:80]}"] += 1
    text.write(f"synchronising calls in one step: {sum(sites.values())}\n")
    for site, count in sites.most_common(40):
        text.write(f"{count:6d}  {site}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_bfloat16" if args.bfloat16 else ""
    (args.out / f"profile_{args.length}{suffix}.txt").write_text(text.getvalue())
    print(text.getvalue()[-6000:])
    print(counted)  # last, where fused_check's record of this run keeps the output's tail


if __name__ == "__main__":
    main()
