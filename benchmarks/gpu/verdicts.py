"""The GPU targets of the fused LSH attention, judged from `fused_check.py`'s report.

    python3 benchmarks/gpu/verdicts.py DIR/fused_check.json      (prints the table; fused_check writes DIR/targets.md)

Each target is a measured value, the bound it must meet, and whether it does; a target whose figures the run did
not produce (a section cut short, a peer that did not import) is "not measured", never met. Eager times decide:
a user's training step runs eagerly; the CUDA-graph times are shown beside them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STEP_MS = 30.0  # the L = 32,768 training step, bfloat16
PEER_SPEEDUP = 3.0  # against HF transformers and reformer-pytorch, each
PEER_MEMORY = 0.5  # of each peer's peak memory, at most
YEAR_STEP_MS, YEAR_INFER_MS = 25.0, 5.0  # the one-year configuration
LINEAR_SLACK = 1.5  # time and memory per position at 2^20 within 1.5x of 2^14's: linear in L


def _get(report: dict[str, Any], *keys: str) -> Any:
    """report[k1][k2]..., or None where any level is missing or recorded an error."""
    node: Any = report
    for key in keys:
        if not isinstance(node, dict) or key not in node or "error" in node:
            return None
        node = node[key]
    return node


def _row(target: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"target": target, "measured": measured, "met": met}


def _ms(seconds: float | None) -> str:
    return "not measured" if seconds is None else f"{seconds * 1000:.1f} ms"


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: {"target", "measured", "met"}; met is None where the figures are missing."""
    rows = [_row("fused equals reference (tests compiled on the GPU; 6-layer model, float32)",
                 f"pytest passed: {_get(report, 'correctness', 'pytest_passed')}, model max relative "
                 f"{_get(report, 'correctness', 'float32_fused_vs_reference_max_relative')}",
                 _get(report, "correctness", "float32_passed") and _get(report, "correctness", "pytest_passed"))]

    ours = _get(report, "compare", "ours-fused_32768", "median_s")
    graph = _get(report, "compare", "ours-fused-graph_32768", "median_s")
    rows.append(_row(f"L = 32,768 training step <= {STEP_MS:.0f} ms (bfloat16)",
                     f"{_ms(ours)} (CUDA graph {_ms(graph)})", None if ours is None else ours * 1000 <= STEP_MS))
    ours_mb = _get(report, "compare", "ours-fused_32768", "peak_mb")
    for peer, name, owner in (("hf", "HF transformers", "HF transformers'"),
                              ("lucidrains", "reformer-pytorch", "reformer-pytorch's")):
        theirs = _get(report, "compare", f"{peer}_32768", "median_s")
        speedup = None if ours is None or theirs is None else theirs / ours
        rows.append(_row(f"at least {PEER_SPEEDUP:.0f}x faster than {name} at L = 32,768",
                         "not measured" if speedup is None else f"{speedup:.2f}x ({_ms(theirs)})",
                         None if speedup is None else speedup >= PEER_SPEEDUP))
        their_mb = _get(report, "compare", f"{peer}_32768", "peak_mb")
        share = None if ours_mb is None or their_mb is None else ours_mb / their_mb
        rows.append(_row(f"at most half {owner} peak memory",
                         "not measured" if share is None else f"{ours_mb:.0f} MB = {share:.2f} of {their_mb:.0f} MB",
                         None if share is None else share <= PEER_MEMORY))

    from_8192 = _get(report, "crossover", "ours_faster_at_every_length_from_8192")
    rows.append(_row("faster than the SDPA (FlashAttention) encoder at every L from 8,192",
                     f"faster from L = {_get(report, 'crossover', 'ours_faster_from')} (CUDA graph: from "
                     f"{_get(report, 'crossover', 'ours_graph_faster_from')})" if from_8192 is not None
                     else "not measured", from_8192))

    for name, key, bound in (("training step", "train_step_bfloat16", YEAR_STEP_MS),
                             ("batch-1 inference", "inference_batch1_bfloat16", YEAR_INFER_MS)):
        eager = _get(report, "one_year", key, "median_s")
        graphed = _get(report, "one_year", f"{key}_graph", "median_s")
        value = f"{_ms(eager)} (CUDA graph {_ms(graphed)})"
        if name == "batch-1 inference":  # judged under autocast; the model cast to bfloat16 shown beside it
            cast, cast_graph = (_get(report, "one_year", f"{key}_weights{tail}", "median_s") for tail in ("", "_graph"))
            value += f"; model cast to bfloat16 {_ms(cast)} (CUDA graph {_ms(cast_graph)})"
        rows.append(_row(f"one-year {name} <= {bound:.0f} ms (bfloat16 autocast)", value,
                         None if eager is None else eager * 1000 <= bound))

    small, large = (_get(report, "attention", str(2**k)) for k in (14, 20))
    if small and large and "ns_per_position" in small and "ns_per_position" in large:
        time_ratio = large["ns_per_position"] / small["ns_per_position"]
        memory_ratio = large.get("bytes_per_position", float("nan")) / small.get("bytes_per_position", float("nan"))
        rows.append(_row("attention alone linear in L to 2^20 (per-position time and memory at 2^20 within "
                         f"{LINEAR_SLACK}x of 2^14's)",
                         f"time x{time_ratio:.2f}, memory x{memory_ratio:.2f} per position",
                         time_ratio <= LINEAR_SLACK and memory_ratio <= LINEAR_SLACK))
    else:
        rows.append(_row("attention alone linear in L to 2^20", "not measured", None))
    return rows


def routes_table(report: dict[str, Any]) -> list[str]:
    """FlexAttention against the Triton kernels, forward + backward, at each length timed: the choice's evidence."""
    timing = _get(report, "routes", "timing") or {}
    lines = []
    for length in (8192, 32768, 131072):
        triton = _get(timing, f"triton_{length}", "median_s")
        flex = _get(timing, f"flex_{length}", "median_s")
        if triton is not None and flex is not None:
            lines.append(f"| {length:,} | {_ms(triton)} | {_ms(flex)} | {flex / triton:.2f}x |")
    if not lines:
        return []
    return ["| L | Triton kernels | FlexAttention | FlexAttention ÷ Triton |", "| ---: | ---: | ---: | ---: |", *lines]


def markdown(report: dict[str, Any]) -> str:
    marks = {True: "met", False: "not met", None: "not measured"}
    lines = [f"Device: {report.get('device')}, torch {report.get('torch')}, Triton {report.get('triton')}, "
             f"{report.get('date_utc')}.", "", "| target | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {row['target']} | {row['measured']} | {marks[row['met']]} |" for row in verdicts(report)]
    routes = routes_table(report)
    return "\n".join(lines + (["", *routes] if routes else [])) + "\n"


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())), end="")
