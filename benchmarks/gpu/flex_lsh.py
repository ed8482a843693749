"""LSH attention after the sort through PyTorch's FlexAttention: the other way to a fused GPU kernel, kept here to
be measured against the hand-written Triton kernels (`reformer.model.fused_lsh`), not shipped.

Shape legend: b batch, h heads, r rounds, l length, e head dim, c chunk size, n = l / c chunks per round,
s = r * l sorted slots (every round's sorted order, one after another).

FlexAttention attends over one sequence with a block-sparse mask, so the rounds are laid end to end: the queries
and keys are the (b, h, s, e) sorted copies of qk (keys unit-normalised) and v, query block j (one chunk) holds
two key blocks, itself and its round's previous chunk (chunk 0: the round's last chunk, or `lsh.wrap_chunks`'
chunk of its batch row), and `score_mod` applies the reference's rules on original positions:

    S = x k^T + SELF_PENALTY [same slot] ;  S = MASKED where the key is padding or (causal) after the query

FlexAttention returns each slot's output o and log-sum-exp z; unsorted, the rounds combine as in the reference,
out = sum_r softmax_r(z_r) o_r, and autograd differentiates that combination through z (FlexAttention has a
log-sum-exp gradient). The sorted copies, the unsort and the combination are PyTorch operations around the
kernel: the traffic the Triton route fuses away.

    . benchmarks/gpu/env.sh && python3 benchmarks/gpu/flex_lsh.py --out DIR     (writes DIR/routes.json)
    PYTHONPATH=src TRITON_INTERPRET=1 python3 benchmarks/gpu/flex_lsh.py --out DIR --smoke     (a CPU dry run)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from reformer.model.lsh import sort_by_bucket, wrap_targets
from reformer.model.masking import MASKED, SELF_PENALTY, normalize_keys

Attend = Callable[..., Any]

try:  # how FlexAttention is asked for the log-sum-exp: torch >= 2.9, and before
    from torch.nn.attention.flex_attention import AuxRequest

    _LSE: dict[str, Any] = {"return_aux": AuxRequest(lse=True)}
except ImportError:  # pragma: no cover - older torch
    _LSE = {"return_lse": True}


def look_backs(b: int, r: int, n: int, wrap: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Each sorted block's look-back block, (b, r * n): block j = round * n + i looks back at round * n + i - 1,
    chunk 0 at its round's chunk n - 1 or at `wrap` (b,) (`lsh.wrap_targets`)."""
    blocks = torch.arange(r * n, device=device)  # (r*n,)
    first = blocks - blocks % n  # each block's round's first block
    back = (first + (blocks % n - 1) % n).expand(b, r * n)  # (b, r*n)
    if wrap is None:
        return back.contiguous()
    return torch.where(blocks % n == 0, first + wrap.view(b, 1), back)


def block_mask(back: torch.Tensor, n: int, chunk: int) -> BlockMask:
    """The window structure over the s = r * n * c sorted slots, every block full (`score_mod` masks), built in
    O(s / c): `create_block_mask` and `BlockMask.from_kv_blocks` go through a dense (blocks x blocks) table, 4.3e9
    entries at 2^20 positions and 4 rounds.

    kv side (b, 1, r*n, 2): query block j holds itself and back[j] (itself only when n == 1). q side (b, 1, r*n, 3),
    the query blocks that hold key block k: k, k + 1 within its round, and the round's block 0 if it looks back at k.
    `mask_mod` says the same per element, for the uncompiled dense path."""
    b, blocks = back.shape
    device = back.device
    own = torch.arange(blocks, device=device).expand(b, blocks)  # (b, r*n)
    kv = torch.stack([own, back], dim=-1)[..., : 2 if n > 1 else 1]  # (b, r*n, 1 or 2)
    nxt = torch.where(own % n < n - 1, own + 1, -1)  # the next block of the round looks back at k
    first = own - own % n
    wraps_here = (back.gather(1, first) == own) & (n > 1)  # the round's block 0 looks back at k
    q = torch.stack([own, nxt, torch.where(wraps_here, first, -1)], dim=-1)  # (b, r*n, 3), -1 = none
    q_count = (q >= 0).sum(-1)
    q = torch.sort(torch.where(q >= 0, q, blocks), dim=-1).values.clamp(max=blocks - 1)  # present ones first

    def table(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.int32).unsqueeze(1).contiguous()  # (b, 1, r*n, k)

    kv_count = torch.full((b, blocks), kv.shape[-1], device=device)

    def mask_mod(bi: torch.Tensor, hi: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        q_block, kv_block = q_idx // chunk, kv_idx // chunk
        return (kv_block == q_block) | ((kv_block == back[bi, q_block]) & (n > 1))

    size = blocks * chunk
    return BlockMask(seq_lengths=(size, size), kv_num_blocks=table(kv_count * 0), kv_indices=table(kv * 0),
                     full_kv_num_blocks=table(kv_count), full_kv_indices=table(kv), q_num_blocks=table(q_count * 0),
                     q_indices=table(q * 0), full_q_num_blocks=table(q_count), full_q_indices=table(q),
                     BLOCK_SIZE=(chunk, chunk), mask_mod=mask_mod)


def lsh_attention_flex(qk: torch.Tensor, v: torch.Tensor, buckets: torch.Tensor, chunk: int,
                       valid: torch.Tensor | None = None, causal: bool = False,
                       attend: Attend = flex_attention) -> torch.Tensor:
    """`reformer.model.lsh.lsh_attention` through FlexAttention: qk, v (b, h, l, e); buckets (b, h, r, l) from
    `hash_vectors`; valid (b, l) bool or None. Returns out (b, h, l, e). `attend`: flex_attention, or its
    `torch.compile`d form (the GPU's fused kernel; uncompiled it runs a dense reference)."""
    b, h, l, e = qk.shape
    r, n = buckets.shape[2], l // chunk
    order = sort_by_bucket(buckets)  # (b, h, r, l) original positions in sorted order
    slots = order.reshape(b, h, r * l)  # (b, h, s)

    def gather(t: torch.Tensor) -> torch.Tensor:  # (b, h, l, e) -> (b, h, s, e)
        return t.gather(2, slots.unsqueeze(-1).expand(-1, -1, -1, e))

    x, values = gather(qk), gather(v)
    keys = normalize_keys(x)
    key_ok = None if valid is None else valid[:, None, :].expand(b, h, l).gather(2, slots)  # (b, h, s)

    def score_mod(score: torch.Tensor, bi: torch.Tensor, hi: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
        # within one round every slot is a distinct position: the same slot is the only self pair
        score = score + torch.where(q_idx == kv_idx, SELF_PENALTY, 0.0)
        if causal:
            score = torch.where(slots[bi, hi, kv_idx] > slots[bi, hi, q_idx], MASKED, score)
        if key_ok is not None:
            score = torch.where(key_ok[bi, hi, kv_idx], score, MASKED)
        return score

    mask = block_mask(look_backs(b, r, n, wrap_targets(valid, l, chunk), qk.device), n, chunk)
    out, lse = attend(x, keys, values, score_mod=score_mod, block_mask=mask, scale=1.0, **_LSE)
    lse = getattr(lse, "lse", lse)  # an AuxOutput, or the log-sum-exp itself
    undo = torch.empty_like(order).scatter_(-1, order, torch.arange(l, device=qk.device).expand_as(order))
    out = out.view(b, h, r, l, e).gather(3, undo.unsqueeze(-1).expand(-1, -1, -1, -1, e))  # (b, h, r, l, e)
    lse = lse.view(b, h, r, l).gather(3, undo).float()  # (b, h, r, l)
    weights = torch.softmax(lse, dim=2).unsqueeze(-1)  # (b, h, r, l, 1)
    return (out.float() * weights).sum(dim=2).to(v.dtype)


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# the bench-compare shape's attention: 8 heads of 32, 4 rounds, chunk 64
HEADS, HEAD_DIM, ROUNDS, CHUNK = 8, 32, 4, 64


def compiled_flex() -> Attend:
    """flex_attention compiled (the fused Triton kernel on CUDA); uncompiled on the CPU, which compiles neither
    its backward nor its log-sum-exp."""
    if DEVICE.type != "cuda":
        return flex_attention
    return torch.compile(flex_attention, dynamic=False)


def attention_tensors(length: int, batch: int, dtype: torch.dtype, seed: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The bench shape's attention inputs on this device: qk, v (b, h, l, e) requiring grad, rotations (h, e, r, u)
    and the bucket count, 2 L / chunk up to 16,384 (bucket ids are int16: at 2^20 positions a bucket averages a
    chunk). Drawn on the device: at 2^20 positions the host would take seconds."""
    from reformer.bench.attention import n_buckets_for
    from reformer.model.lsh import rotation_columns

    gen = torch.Generator(DEVICE).manual_seed(seed)
    n_buckets = min(n_buckets_for(length, CHUNK), 16384)
    rotations = torch.randn(HEADS, HEAD_DIM, ROUNDS, rotation_columns(n_buckets), generator=gen, device=DEVICE)
    qk, v = (torch.randn(batch, HEADS, length, HEAD_DIM, generator=gen, device=DEVICE).to(dtype).requires_grad_()
             for _ in range(2))
    return qk, v, rotations, n_buckets


def inputs(length: int, batch: int, dtype: torch.dtype, padded: bool, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """qk, v (b, h, l, e) requiring grad, buckets (b, h, r, l) and valid (b, l) (row 0 a third padding)."""
    from reformer.model.lsh import hash_vectors

    qk, v, rotations, n_buckets = attention_tensors(length, batch, dtype, seed)
    valid = None
    if padded:
        valid = torch.ones(batch, length, dtype=torch.bool, device=DEVICE)
        valid[0, length - length // 3:] = False
    return qk, v, hash_vectors(qk, rotations, n_buckets, valid), valid


Route = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, bool], torch.Tensor]
"""(qk, v, buckets, valid, causal) -> out (b, h, l, e): one way to compute LSH attention after hashing."""


def shipped(fused: bool) -> Route:
    """The project's `lsh_attention`: the fused Triton kernels, or the PyTorch reference."""
    from reformer.model.lsh import lsh_attention

    return lambda qk, v, buckets, valid, causal: lsh_attention(qk, v, buckets, CHUNK, valid, causal,
                                                               fused=fused)[0]


def flex_route(attend: Attend) -> Route:
    return lambda qk, v, buckets, valid, causal: lsh_attention_flex(qk, v, buckets, CHUNK, valid, causal, attend)


def agreement(length: int, flex: Route) -> dict[str, Any]:
    """FlexAttention against the Triton route and the reference, causal and not, with padding: the largest
    difference relative to the largest value, over the output and (on CUDA) the gradients, valid rows only."""
    grads = DEVICE.type == "cuda"  # FlexAttention has no backward on the CPU
    routes = {"flex": flex, "triton": shipped(True), "reference": shipped(False)}
    out: dict[str, Any] = {}
    # two cases, each a compilation on the GPU: float32 with every mask, and bfloat16 (Triton's interpreter
    # multiplies bfloat16 tiles wrongly: float16 stands in for it on the CPU)
    for dtype, causal in ((torch.float32, True), (torch.bfloat16 if grads else torch.float16, False)):
        qk, v, buckets, valid = inputs(length, 2, dtype, padded=True)
        assert valid is not None
        keep = valid[:, None, :, None]  # (b, 1, l, 1)
        results = {}
        for name, route in routes.items():
            with torch.set_grad_enabled(grads):
                y = route(qk, v, buckets, valid, causal)
            tensors = [y.detach()]
            if grads:
                tensors += torch.autograd.grad((y.float() * keep).pow(2).sum(), [qk, v])
            results[name] = [(t.float() * keep).detach() for t in tensors]
        for other in ("triton", "reference"):
            worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                        for a, b in zip(results["flex"], results[other], strict=True))
            out[f"{str(dtype).removeprefix('torch.')}_causal{int(causal)}_flex_vs_{other}"] = worst
    return out


def timing(lengths: list[int], routes: dict[str, Route], reps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Forward and backward (forward alone on the CPU) of each route after hashing, bfloat16 (float16 on the
    CPU), batch 1: median seconds of `reps` calls after `warmup` and, on CUDA, peak MB."""
    os.environ.setdefault("CUDA_CHECK_DEVICE", DEVICE.type)  # cuda_check's timer then times this device
    from cuda_check import _cuda_time

    grads = DEVICE.type == "cuda"

    def step(route: Route, qk: torch.Tensor, v: torch.Tensor, buckets: torch.Tensor) -> None:
        with torch.set_grad_enabled(grads):
            y = route(qk, v, buckets, None, False)
        if grads:
            y.float().sum().backward()
            qk.grad = v.grad = None

    out: dict[str, Any] = {}
    for length in lengths:
        qk, v, buckets, _ = inputs(length, 1, torch.bfloat16 if grads else torch.float16, padded=False)
        for name, route in routes.items():
            key = f"{name}_{length}"
            try:
                out[key] = _cuda_time(functools.partial(step, route, qk, v, buckets), warmup=warmup, reps=reps)
            except Exception as exc:  # a route that does not compile or fit is a result too
                out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
            print(key, json.dumps(out[key]), flush=True)
    return out


def compare_routes(smoke: bool) -> dict[str, Any]:
    """The two routes on this device: agreement at L = 4,096, then forward + backward at 8,192, 32,768 and 131,072.

    Routes: "triton" and "reference" (shipped), "flex" (FlexAttention's kernel compiled, PyTorch around it), and
    at 32,768 "flex-whole" (the whole function compiled, so the compiler may fuse the sort's gathers, the key
    normalisation and the combination too). FlexAttention picks its own tiles: at head size 32 on sm_80 and sm_90
    those are 64 x 64 forward and backward (torch 2.11's heuristics), which 64-position blocks divide. Each
    compilation costs the GPU half a minute or more, hence the few."""
    torch._dynamo.config.cache_size_limit = 64  # one compilation per length and route, never a fallback
    flex = flex_route(compiled_flex())
    out: dict[str, Any] = {}
    try:
        out["agreement"] = agreement(256 if smoke else 4096, flex)
    except Exception as exc:  # recorded, and the timings still run
        out["agreement"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    out["timing"] = timing([512] if smoke else [8192, 32768, 131072],
                           {"triton": shipped(True), "reference": shipped(False), "flex": flex},
                           *((1, 0) if smoke else ()))
    if DEVICE.type == "cuda":
        whole = torch.compile(lsh_attention_flex, dynamic=False)
        out["timing"].update(timing([32768], {"flex-whole": lambda qk, v, buckets, valid, causal: whole(
            qk, v, buckets, CHUNK, valid, causal)}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny lengths, CPU too (forward agreement only)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "cpu (dry run)",
              "torch": torch.__version__, **compare_routes(args.smoke)}
    (args.out / "routes.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
