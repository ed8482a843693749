"""`reformer bench compare`: training-step time and memory of ours against HF, reformer-pytorch and SDPA.

Every run is its own subprocess (`python -m reformer.bench.compare PAYLOAD`): it builds one implementation at
one length, takes one warm-up step and `steps` timed steps, and reports the step times and the growth of its
peak resident memory (`VmHWM`, reset after the warm-up; `ru_maxrss` is kept for the record, see
`_peak_rss_bytes`) over its resident size just before the timed steps. Runs are interleaved: for each repeat
every implementation runs once, in an order that rotates from repeat to repeat, so slow drift of a shared
machine's load falls on all of them alike.

A parent-side watchdog polls the child's RSS and kills it past the memory budget; a step that takes longer than
the step timeout is killed too. Before a run, the implementation's result at the previous length is
extrapolated (time ~ L for the Reformers, L² for full attention; memory ~ L) and the run is skipped, saying
so, where it would not fit. What was skipped (or failed) at one length is skipped at the longer ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from .attention import Measurement, _rss_bytes
from .shape import IMPLS, ModelShape

__all__ = [
    "CompareSpec",
    "Run",
    "WorkerOutcome",
    "machine_info",
    "measure_run",
    "predict_skip",
    "ratios",
    "rotated",
    "run_compare",
    "run_worker",
    "summarise",
    "time_steps",
]

_QUADRATIC = frozenset({"sdpa"})
"""Implementations whose step time grows with L² (full attention)."""


@dataclass(frozen=True)
class CompareSpec:
    """Settings of one comparison (the model shape is shared by every implementation)."""

    shape: ModelShape = field(default_factory=ModelShape)
    repeats: int = 3
    """Subprocess runs per (implementation, length), interleaved with the other implementations."""
    steps: int = 1
    """Timed steps per run (after one untimed warm-up step)."""
    step_timeout: float = 600.0
    """Seconds one step may take; a run past it is killed and the implementation skipped from then on."""
    startup_timeout: float = 300.0
    """Seconds a run may take to import and build its model."""
    budget_gb: float = 12.0
    """Resident memory a run may reach (whole process) before it is killed."""
    threads: int = 1
    """torch threads in each run; 0 = torch's default (all cores). 1 by default: on a shared, oversubscribed
    machine torch's spinning thread pool can make small steps many times slower."""
    seed: int = 0


@dataclass
class Run:
    """One subprocess run of one implementation at one length."""

    impl: str
    length: int
    repeat: int
    times: list[float] = field(default_factory=list)
    warmup: float | None = None
    peak_mb: float | None = None
    skipped: str | None = None


@dataclass
class WorkerOutcome:
    """What a worker subprocess returned: its result dict, or why there is none."""

    result: dict[str, Any] | None = None
    skipped: str | None = None


def _peak_rss_bytes() -> int | None:
    """This process's peak RSS (`VmHWM`), or None where /proc is not available.

    Preferred to `ru_maxrss`, which on Linux also keeps the peak of the parent's memory copied in at fork (it
    survives the exec), so a worker launched from a big parent never reports less than the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            line = next((ln for ln in fh if ln.startswith("VmHWM:")), None)
    except OSError:
        return None
    return int(line.split()[1]) * 1024 if line else None


def _settle_and_reset_peak() -> bool:
    """Return freed heap to the OS and restart the peak-RSS counter; True if the counter could be reset.

    Without the reset, `ru_maxrss` would keep the warm-up step's peak, which also holds one-time costs (kernel
    code paged in, thread pools, allocator caches) that are not a step's working memory.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # "5": reset the peak RSS to the current RSS (Linux)
            fh.write("5")
    except OSError:
        return False
    return True


def time_steps(step: Callable[[], None], steps: int, emit: Callable[[str], None] = print) -> dict[str, Any]:
    """Worker side: one warm-up and `steps` timed calls of `step`, with the peak RSS growth over the timed span.

    After the warm-up, freed heap is trimmed and the peak counter reset; `peak_mb` is then the peak RSS
    (`VmHWM`; `ru_maxrss` without /proc) after the timed steps minus the RSS just before them (MiB);
    `maxrss_growth_mb` is the same from `ru_maxrss`, kept for the record. `emit` receives progress lines
    (``ready``, ``step SECONDS``) that the parent's step timeout watches.
    Returns {"times", "warmup", "peak_mb", "base_mb", "peak_reset"}.
    """
    emit("ready")
    start = time.perf_counter()
    step()
    warmup = time.perf_counter() - start
    emit(f"step {warmup:.6f}")
    reset = _settle_and_reset_peak()
    before = _rss_bytes()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        emit(f"step {times[-1]:.6f}")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = _peak_rss_bytes() or maxrss
    return {"times": times, "warmup": warmup, "peak_mb": max(0, peak - before) / 2**20, "base_mb": before / 2**20,
            "peak_reset": reset, "maxrss_growth_mb": max(0, maxrss - before) / 2**20}


def _child_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def run_worker(module: str, payload: dict[str, Any], *, startup_timeout: float, step_timeout: float,
               budget_bytes: int) -> WorkerOutcome:
    """Parent side: run `python -m module PAYLOAD` under the memory watchdog and the step timeout.

    The worker prints ``ready`` once built, ``step SECONDS`` after each step and finally ``result JSON``.
    """
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", module, json.dumps(payload)], stdout=subprocess.PIPE,
                                stderr=err, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.strip())
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline, result, why = time.monotonic() + startup_timeout, None, None
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.startswith("result "):
                result = json.loads(line[len("result "):])
            elif line == "ready" or line.startswith("step "):
                deadline = time.monotonic() + step_timeout
            rss = _child_rss(proc.pid)
            if rss > budget_bytes:
                why = f"over the memory budget (RSS {rss / 2**30:.1f} GB > {budget_bytes / 2**30:.1f} GB)"
            elif time.monotonic() > deadline:
                why = f"timed out (a step took > {step_timeout:.0f} s)"
            if why:
                proc.kill()
                break
        code = proc.wait()
        if why:
            return WorkerOutcome(skipped=why)
        if code != 0 or result is None:
            err.seek(0)
            tail = [ln for ln in err.read().splitlines() if ln.strip()][-1:]
            reason = "killed (out of memory?)" if code in (-9, 137) else (tail[0] if tail else f"exit {code}")
            return WorkerOutcome(skipped=f"failed: {reason}")
        return WorkerOutcome(result=result)


def rotated(impls: tuple[str, ...], repeat: int) -> tuple[str, ...]:
    """The run order of one repeat: `impls` rotated left by `repeat` (so each goes first in turn)."""
    k = repeat % len(impls) if impls else 0
    return impls[k:] + impls[:k]


def predict_skip(impl: str, length: int, done: list[Measurement], spec: CompareSpec) -> str | None:
    """Why `impl` at `length` should not be run, judging from its results at shorter lengths; None = run it."""
    shorter = sorted((m for m in done if m.kernel == impl and m.length < length), key=lambda m: m.length)
    if not shorter:
        return None
    last = shorter[-1]
    if last.seconds is None or last.peak_mb is None:
        return f"skipped at L={last.length}"
    scale = length / last.length
    seconds = last.seconds * scale ** (2 if impl in _QUADRATIC else 1)
    if seconds > spec.step_timeout:
        return f"predicted ~{seconds:,.0f} s/step > step timeout {spec.step_timeout:,.0f} s"
    mb = last.peak_mb * scale
    if mb > spec.budget_gb * 1024:
        return f"predicted ~{mb / 1024:,.1f} GB > budget {spec.budget_gb:g} GB"
    return None


def summarise(runs: list[Run]) -> list[Measurement]:
    """One `Measurement` per (impl, length): median step time over all timed steps, median run peak memory."""
    keys = list(dict.fromkeys((r.impl, r.length) for r in runs))
    out = []
    for impl, length in keys:
        mine = [r for r in runs if r.impl == impl and r.length == length]
        good = [r for r in mine if r.skipped is None and r.times]
        if not good:
            out.append(Measurement(impl, length, skipped=mine[0].skipped if mine else "not run"))
            continue
        times = [t for r in good for t in r.times]
        peaks = [r.peak_mb for r in good if r.peak_mb is not None]
        out.append(Measurement(impl, length, seconds=statistics.median(times),
                               peak_mb=statistics.median(peaks) if peaks else None, times=times))
    return out


def ratios(results: list[Measurement], reference: str = "ours") -> dict[str, dict[str, dict[str, float | None]]]:
    """{impl: {length: {"time": t_impl / t_ref, "memory": m_impl / m_ref}}}; None where either is missing."""
    ref = {m.length: m for m in results if m.kernel == reference}
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for m in results:
        r = ref.get(m.length)
        t = m.seconds / r.seconds if r and r.seconds and m.seconds is not None else None
        mem = m.peak_mb / r.peak_mb if r and r.peak_mb and m.peak_mb is not None else None
        out.setdefault(m.kernel, {})[str(m.length)] = {"time": t, "memory": mem}
    return out


def run_compare(lengths: list[int], impls: tuple[str, ...], spec: CompareSpec,
                progress: Callable[[Run], None] | None = None) -> tuple[list[Run], list[Measurement]]:
    """Every implementation at every length, `spec.repeats` interleaved runs each; returns (runs, summary)."""
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise ConfigError(f"unknown implementation(s) {unknown}: choose from {', '.join(IMPLS)}")
    from .peers import peer_versions

    versions = peer_versions()
    missing = {i: "not installed (pip install 'reformer-crypto[bench]')" for i in impls if versions.get(i, "") is None}
    runs: list[Run] = []
    done: list[Measurement] = []
    for length in lengths:
        at_length: list[Run] = []
        for repeat in range(spec.repeats):
            for impl in rotated(impls, repeat):
                earlier = [r for r in at_length if r.impl == impl]
                reason = missing.get(impl) or predict_skip(impl, length, done, spec)
                if reason is None and earlier and earlier[-1].skipped is not None:
                    reason = earlier[-1].skipped
                run = Run(impl, length, repeat, skipped=reason)
                if reason is None:
                    measure_run(run, "reformer.bench.compare", spec, impl=impl)
                at_length.append(run)
                if progress is not None:
                    progress(run)
        runs += at_length
        done += summarise(at_length)
    return runs, done


def machine_info() -> dict[str, Any]:
    """CPU model, core count, load average and package versions, for the results file."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "loadavg": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "versions": _versions(),
            "ours_attention_kernel": _kernel()}


def _main(args: dict[str, Any]) -> None:
    import torch

    from .peers import build_step

    if args.get("threads"):
        torch.set_num_threads(int(args["threads"]))
    step = build_step(args["impl"], ModelShape(**args["shape"]), int(args["length"]), seed=int(args["seed"]))
    result = time_steps(step, int(args["steps"]), emit=lambda line: print(line, flush=True))
    result["threads"] = torch.get_num_threads()
    print("result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    from ..runtime import tune_malloc

    tune_malloc()  # every implementation a worker runs gets the same allocator setting as the CLI
    _main(json.loads(sys.argv[1]))


def _kernel() -> str:
    """The attention kernel "ours" runs in the workers (on the CPU): "lsh/reference" unless forced otherwise."""
    from ..model import ReformerConfig
    from ..model.attention import kernel_in_use

    try:
        return kernel_in_use(ReformerConfig(seq_len=4096, chunk_size=64, full_attention_threshold=0), "cpu", 4096)
    except ValueError as exc:  # a forced kernel that cannot run here: the workers will say so
        return f"unavailable ({exc})"


def _versions() -> dict[str, str | None]:
    from .peers import peer_versions

    return peer_versions()


def measure_run(run: Run, module: str, spec: CompareSpec, **extra: Any) -> None:
    """Run one worker (`python -m module`) at `run.length` with the spec's shape, steps, threads, seed, timeouts and
    memory budget, and record its times, warm-up and peak memory (or why it was skipped) in `run`."""
    payload = {**extra, "length": run.length, "shape": asdict(spec.shape), "steps": spec.steps,
               "threads": spec.threads, "seed": spec.seed + run.repeat}
    outcome = run_worker(module, payload, startup_timeout=spec.startup_timeout, step_timeout=spec.step_timeout,
                         budget_bytes=int(spec.budget_gb * 2**30))
    if outcome.result is None:
        run.skipped = outcome.skipped
    else:
        run.times, run.warmup = outcome.result["times"], outcome.result["warmup"]
        run.peak_mb = outcome.result["peak_mb"]
