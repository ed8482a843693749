"""The Triton kernels behind `fused_lsh.py` (see its docstring for the computation); imported only on first use.

Shape legend: C rows of a tile (the chunk size rounded up to a power of two of at least 16), E the head
dimension's tile; c, e the true sizes, masked at the tile edges. A "row" of the grid is one (batch, head, round);
positions are original sequence positions, read from the round's sorted order IDX (b*h*r, l), which holds them
as the flat sort gives them, row * L + position (`bucket_sort.sort_by_bucket(flat=True)`): the kernels subtract
the row, which on the host would be one more kernel launch per layer.

Offsets: each program's (batch, head, round) bases are int64 scalars; within them, tile offsets are computed in
the positions' dtype, int32 wherever the launcher found they fit, else int64: registers are these kernels'
tightest resource (`benchmarks/gpu/compile_check.py` counts them), and 64-bit offset tiles take twice as many.
"""

import triton
import triton.language as tl

from ._fused_kernels import _mm, online_softmax_step
from .masking import _KEY_EPS, MASKED, SELF_PENALTY

_PENALTY = tl.constexpr(SELF_PENALTY)
_MASKED_LOGIT = tl.constexpr(MASKED)
_EPS = tl.constexpr(_KEY_EPS)


@triton.jit
def _previous(chunk, WRAP, batch, n, HAS_WRAP: tl.constexpr):
    # the chunk that `chunk` looks back at: the one before it, and for chunk 0 the round's last chunk (or the
    # batch row's last chunk of real keys, `lsh.wrap_chunks`)
    last = n - 1
    if HAS_WRAP:
        last = tl.load(WRAP + batch)
    return tl.where(chunk == 0, last, chunk - 1)


@triton.jit
def _positions(order, row, L, chunk, c, rows, rows_ok):
    # (C,) original positions of chunk `chunk` of a row's sorted order, which holds row * L + position; the tile
    # rows past the chunk read position 0
    first = (row * L).to(order.dtype.element_ty)
    return tl.load(order + chunk * c + rows, mask=rows_ok, other=first) - first


@triton.jit
def _load_rows(BASE, stride, pos, rows_ok, dims, dims_ok):
    # (C, E) rows of one (batch, head)'s (l, e) matrix at original positions `pos`
    return tl.load(BASE + pos[:, None] * stride + dims[None, :], mask=rows_ok[:, None] & dims_ok[None, :],
                   other=0.0)


@triton.jit
def _unit(x):
    # k = x / max(||x||, eps) row by row in float32, and the clamped norm: `masking.normalize_keys`
    x32 = x.to(tl.float32)
    norm = tl.maximum(tl.sqrt(tl.sum(x32 * x32, 1)), _EPS)
    return x32 / norm[:, None], norm


@triton.jit
def _logits(q, k, q_pos, k_pos, VALID_ROW, cols_ok, F32_DOT: tl.constexpr, CAUSAL: tl.constexpr,
            HAS_VALID: tl.constexpr):
    # (C, C) float32 masked logits: the self penalty, then the causal and padding masks (`masking.mask_logits`)
    s = _mm(q, tl.trans(k), F32_DOT)
    s = tl.where(q_pos[:, None] == k_pos[None, :], s + _PENALTY, s)
    if CAUSAL:
        s = tl.where(k_pos[None, :] > q_pos[:, None], _MASKED_LOGIT, s)
    if HAS_VALID:
        ok = tl.load(VALID_ROW + k_pos, mask=cols_ok, other=0)
        s = tl.where(ok[None, :] != 0, s, _MASKED_LOGIT)
    return tl.where(cols_ok[None, :], s, float("-inf"))  # tile columns past the chunk are not keys


@triton.jit
def _program(QK, V, IDX, VALID, L, n, H, R, c, e, s_qb, s_qh, s_vb, s_vh, BLOCK_C: tl.constexpr,
             BLOCK_E: tl.constexpr):
    # what a program of the forward or backward grid works on: chunk `pid % n` of the sorted order of row
    # `pid // n` = (batch * H + head) * R + round (one grid axis: the second and third hold at most 65,535); the
    # bases of its (batch, head)'s qk and v, its round's order and its batch row's padding mask (int64 scalars),
    # tile indices, and the chunk's positions
    pid = tl.program_id(0).to(tl.int64)
    chunk = (pid % n).to(tl.int32)
    row = pid // n
    batch, head = row // R // H, (row // R) % H
    order = IDX + row * L
    rows = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_E)
    rows_ok = rows < c
    pos = _positions(order, row, L, chunk, c, rows, rows_ok)
    return (chunk, row, batch, QK + batch * s_qb + head * s_qh, V + batch * s_vb + head * s_vh, order,
            VALID + batch * L, rows, dims, rows_ok, dims < e, pos)


@triton.jit
def lsh_forward(QK, V, IDX, WRAP, VALID, O, ROWMAX, LOGSUM, L, n, H, R, c, e,
                s_qb, s_qh, s_ql, s_vb, s_vh, s_vl,
                LOOK_BACK: tl.constexpr, HAS_WRAP: tl.constexpr, CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr,
                F32_DOT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_E: tl.constexpr):
    j, row, batch, qk_base, v_base, order, valid_row, rows, dims, rows_ok, dims_ok, q_pos = _program(
        QK, V, IDX, VALID, L, n, H, R, c, e, s_qb, s_qh, s_vb, s_vh, BLOCK_C, BLOCK_E)  # j: the query chunk
    q = _load_rows(qk_base, s_ql, q_pos, rows_ok, dims, dims_ok)
    m_i = tl.full([BLOCK_C], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_C], tl.float32)
    acc = tl.zeros([BLOCK_C, BLOCK_E], tl.float32)
    for t in tl.static_range(2 if LOOK_BACK else 1):
        kc = j
        if LOOK_BACK and t == 0:
            kc = _previous(j, WRAP, batch, n, HAS_WRAP)
        k_pos = _positions(order, row, L, kc, c, rows, rows_ok)
        k, _ = _unit(_load_rows(qk_base, s_ql, k_pos, rows_ok, dims, dims_ok))
        v = _load_rows(v_base, s_vl, k_pos, rows_ok, dims, dims_ok)
        s = _logits(q, k.to(q.dtype), q_pos, k_pos, valid_row, rows_ok, F32_DOT, CAUSAL, HAS_VALID)
        m_i, l_i, acc = online_softmax_step(m_i, l_i, acc, s, v, F32_DOT)
    # outputs land at their original positions, one (l, e) matrix per round: the sort is undone on the way out
    tl.store(O + row * L * e + q_pos[:, None] * e + dims[None, :], (acc / l_i[:, None]).to(O.dtype.element_ty),
             mask=rows_ok[:, None] & dims_ok[None, :])
    # the row max and ln l apart, not lse: S - lse in one subtraction loses every digit of a fully masked row
    tl.store(ROWMAX + row * L + q_pos, m_i, mask=rows_ok)
    tl.store(LOGSUM + row * L + q_pos, tl.log(l_i), mask=rows_ok)


@triton.jit
def _upstream(G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, pos, rows_ok, dims, dims_ok, e, DTYPE: tl.constexpr):
    # this round's dO = w g and D = w <g, out> at positions `pos`, from the combined output's gradient g, with
    # w = e^(z_r - Z) the round's weight (z_r = m + ln l its logsumexp, Z = logsumexp over rounds); and m, ln l.
    # Z is kept as T = max_r m_r and ln sum_r l_r e^(m_r - T), so that w = e^((m - T) + (ln l - ln sum)): a
    # self-only row has m ~ -1e4 (the self penalty), where float32 steps by 1e-3, and z - Z in one subtraction
    # would put that error into w
    g = tl.load(G + pos[:, None] * e + dims[None, :], mask=rows_ok[:, None] & dims_ok[None, :], other=0.0)
    row_max = tl.load(ROWMAX + pos, mask=rows_ok, other=0.0)
    log_sum = tl.load(LOGSUM + pos, mask=rows_ok, other=0.0)
    top = tl.load(TOP + pos, mask=rows_ok, other=0.0)
    w = tl.exp((row_max - top) + (log_sum - tl.load(LOGTOT + pos, mask=rows_ok, other=0.0)))
    delta = w * tl.load(GDOT + pos, mask=rows_ok, other=0.0)
    return (g.to(tl.float32) * w[:, None]).to(DTYPE), row_max, log_sum, delta


@triton.jit
def _key_grads(q_pos_j, QK_BASE, s_ql, G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, e, k, v, k_pos, valid_row, rows, dims,
               rows_ok, dims_ok, dk, dv, F32_DOT: tl.constexpr, CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr):
    # dV_i += P^T dO_j and dK_i += dS^T Q_j for one query chunk j whose window holds key chunk i
    q = _load_rows(QK_BASE, s_ql, q_pos_j, rows_ok, dims, dims_ok)
    d_o, row_max, log_sum, delta = _upstream(G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, q_pos_j, rows_ok, dims,
                                             dims_ok, e, q.dtype)
    s = _logits(q, k, q_pos_j, k_pos, valid_row, rows_ok, F32_DOT, CAUSAL, HAS_VALID)
    p = tl.where(rows_ok[:, None], tl.exp((s - row_max[:, None]) - log_sum[:, None]), 0.0)  # (C, C)
    dv += _mm(tl.trans(p.to(d_o.dtype)), d_o, F32_DOT)
    ds = p * (_mm(d_o, tl.trans(v), F32_DOT) - delta[:, None])
    dk += _mm(tl.trans(ds.to(q.dtype)), q, F32_DOT)
    return dk, dv


@triton.jit
def lsh_backward(QK, V, IDX, WRAP, VALID, G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, DQK, DV, L, n, H, R, c, e,
                 s_qb, s_qh, s_ql, s_vb, s_vh, s_vl,
                 LOOK_BACK: tl.constexpr, HAS_WRAP: tl.constexpr, CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr,
                 F32_DOT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_E: tl.constexpr):
    # i: the chunk this program owns, as queries and as keys
    i, row, batch, qk_base, v_base, order, valid_row, rows, dims, rows_ok, dims_ok, pos = _program(
        QK, V, IDX, VALID, L, n, H, R, c, e, s_qb, s_qh, s_vb, s_vh, BLOCK_C, BLOCK_E)
    tile_ok = rows_ok[:, None] & dims_ok[None, :]
    x = _load_rows(qk_base, s_ql, pos, rows_ok, dims, dims_ok)  # the chunk's shared query-key vectors
    k32, norm = _unit(x)
    k = k32.to(x.dtype)
    v = _load_rows(v_base, s_vl, pos, rows_ok, dims, dims_ok)
    # the (batch, head)'s (l, e) and (l,) matrices of the combined output, and this round's, at original positions
    bh = row // R
    G, GDOT, TOP, LOGTOT = G + bh * L * e, GDOT + bh * L, TOP + bh * L, LOGTOT + bh * L
    DQK, DV = DQK + row * L * e, DV + row * L * e
    ROWMAX, LOGSUM = ROWMAX + row * L, LOGSUM + row * L
    d_o, row_max, log_sum, delta = _upstream(G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, pos, rows_ok, dims, dims_ok, e,
                                             x.dtype)

    # as queries: dQ_i = sum over its window's key chunks of dS K; the own chunk's P and dS serve it as keys too
    dq = tl.zeros([BLOCK_C, BLOCK_E], tl.float32)
    dk = tl.zeros([BLOCK_C, BLOCK_E], tl.float32)
    dv = tl.zeros([BLOCK_C, BLOCK_E], tl.float32)
    for t in tl.static_range(2 if LOOK_BACK else 1):
        own = not (LOOK_BACK and t == 0)
        if own:
            k_pos, k_t, v_t = pos, k, v
        else:
            kc = _previous(i, WRAP, batch, n, HAS_WRAP)
            k_pos = _positions(order, row, L, kc, c, rows, rows_ok)
            k_t32, _ = _unit(_load_rows(qk_base, s_ql, k_pos, rows_ok, dims, dims_ok))
            k_t = k_t32.to(x.dtype)
            v_t = _load_rows(v_base, s_vl, k_pos, rows_ok, dims, dims_ok)
        s = _logits(x, k_t, pos, k_pos, valid_row, rows_ok, F32_DOT, CAUSAL, HAS_VALID)
        p = tl.where(rows_ok[:, None], tl.exp((s - row_max[:, None]) - log_sum[:, None]), 0.0)  # (C, C)
        ds = p * (_mm(d_o, tl.trans(v_t), F32_DOT) - delta[:, None])
        dq += _mm(ds.to(x.dtype), k_t, F32_DOT)
        if own:
            dv += _mm(tl.trans(p.to(d_o.dtype)), d_o, F32_DOT)
            dk += _mm(tl.trans(ds.to(x.dtype)), x, F32_DOT)

    # as keys, also: dK_i, dV_i from the other query chunks whose windows hold chunk i, the next chunk and chunk 0
    # when chunk i is the one chunk 0 looks back at
    if LOOK_BACK:
        if i + 1 < n:
            next_pos = _positions(order, row, L, i + 1, c, rows, rows_ok)
            dk, dv = _key_grads(next_pos, qk_base, s_ql, G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, e, k, v, pos, valid_row,
                                rows, dims, rows_ok, dims_ok, dk, dv, F32_DOT, CAUSAL, HAS_VALID)
        if _previous(0, WRAP, batch, n, HAS_WRAP) == i:
            first_pos = _positions(order, row, L, 0, c, rows, rows_ok)
            dk, dv = _key_grads(first_pos, qk_base, s_ql, G, GDOT, TOP, LOGTOT, ROWMAX, LOGSUM, e, k, v, pos, valid_row,
                                rows, dims, rows_ok, dims_ok, dk, dv, F32_DOT, CAUSAL, HAS_VALID)

    # through k = x / n: dx = (dK - k <dK, k>) / n, or dK / eps where the norm is clamped (`masking._NormalizeKeys`)
    dot = tl.where(norm > _EPS, tl.sum(dk * k32, 1), 0.0)
    dx = dq + (dk - k32 * dot[:, None]) / norm[:, None]
    tl.store(DQK + pos[:, None] * e + dims[None, :], dx.to(DQK.dtype.element_ty), mask=tile_ok)
    tl.store(DV + pos[:, None] * e + dims[None, :], dv.to(DV.dtype.element_ty), mask=tile_ok)


@triton.jit
def _position_block(L, BLOCK_P: tl.constexpr):
    # a program of a grid over (batch, head) x blocks of BLOCK_P positions, on one axis as `_program`: its
    # batch * H + head (int64) and its positions (int32)
    blocks = tl.cdiv(L, BLOCK_P)
    pid = tl.program_id(0).to(tl.int64)
    return pid // blocks, (pid % blocks).to(tl.int32) * BLOCK_P + tl.arange(0, BLOCK_P)


@triton.jit
def lsh_combine(O_R, ROWMAX, LOGSUM, OUT, TOP, LOGTOT, L, R, e, BLOCK_P: tl.constexpr, BLOCK_E: tl.constexpr):
    # out = sum_r l_r e^(m_r - T) o_r / sum_r l_r e^(m_r - T) = sum_r softmax_r(z_r) o_r for BLOCK_P positions of
    # one (batch, head), the rounds folded in one at a time as in the online softmax; T = max_r m_r and the log
    # of the sum are stored for the backward's round weights (see `_upstream`)
    bh, pos = _position_block(L, BLOCK_P)
    dims = tl.arange(0, BLOCK_E)
    pos_ok = pos < L
    tile_ok = pos_ok[:, None] & (dims < e)[None, :]
    tile = pos[:, None] * e + dims[None, :]  # int32 offsets within one (l, e) matrix, int64 bases
    top = tl.full([BLOCK_P], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_P], tl.float32)
    acc = tl.zeros([BLOCK_P, BLOCK_E], tl.float32)
    for r in range(R):
        row = bh * R + r
        m = tl.load(ROWMAX + row * L + pos, mask=pos_ok, other=0.0)
        log_sum = tl.load(LOGSUM + row * L + pos, mask=pos_ok, other=0.0)
        o = tl.load(O_R + row * L * e + tile, mask=tile_ok, other=0.0)
        new_top = tl.maximum(top, m)
        scale, weight = tl.exp(top - new_top), tl.exp((m - new_top) + log_sum)
        total = total * scale + weight
        acc = acc * scale[:, None] + weight[:, None] * o.to(tl.float32)
        top = new_top
    tl.store(OUT + bh * L * e + tile, (acc / total[:, None]).to(OUT.dtype.element_ty), mask=tile_ok)
    tl.store(TOP + bh * L + pos, top, mask=pos_ok)
    tl.store(LOGTOT + bh * L + pos, tl.log(total), mask=pos_ok)


@triton.jit
def row_dot(A, B, DOT, total, e, BLOCK_P: tl.constexpr, BLOCK_E: tl.constexpr):
    # rowsum(A * B) in float32 for BLOCK_P rows of two (total, e) matrices: one pass over both, where PyTorch
    # would first write float32 copies of each and their product
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    dims = tl.arange(0, BLOCK_E)
    rows_ok = rows < total
    tile_ok = rows_ok[:, None] & (dims < e)[None, :]
    a = tl.load(A + rows[:, None] * e + dims[None, :], mask=tile_ok, other=0.0).to(tl.float32)
    b = tl.load(B + rows[:, None] * e + dims[None, :], mask=tile_ok, other=0.0).to(tl.float32)
    tl.store(DOT + rows, tl.sum(a * b, 1), mask=rows_ok)


@triton.jit
def _signed_argmax(proj, cols, lo, half):
    # argmax over [xR; -xR] on columns lo .. lo + half - 1 of the projections (P, U) -> (P,) in [0, 2 half), with
    # `lsh._signed_argmax`'s ties: the positive side when max(xR) = -min(xR), the highest column among equals
    inside = ((cols >= lo) & (cols < lo + half))[None, :]
    top = tl.max(tl.where(inside, proj, float("-inf")), 1)
    bottom = tl.min(tl.where(inside, proj, float("inf")), 1)
    positive = top >= -bottom
    hit = inside & (proj == tl.where(positive, top, bottom)[:, None])
    column = tl.max(tl.where(hit, cols[None, :] - lo, -1), 1)
    return tl.where(positive, column, column + half)


@triton.jit
def lsh_hash(QK, ROT, VALID, BUCKETS, L, H, R, U, e, s_qb, s_qh, s_ql, N_BUCKETS,
             HALF_A: tl.constexpr, HALF_B: tl.constexpr, HAS_VALID: tl.constexpr,
             BLOCK_P: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_U: tl.constexpr):
    # the buckets of BLOCK_P positions of one (batch, head) in every round (`lsh.hash_vectors`): x R_r in float32
    # registers, reduced to one id per factor, so the (P, U) projections never reach memory. HALF_B = 0 for an
    # unfactorised count; else id = id_a + 2 HALF_A id_b, each factor on its own columns
    bh, pos = _position_block(L, BLOCK_P)
    batch, head = bh // H, bh % H
    dims = tl.arange(0, BLOCK_E)
    cols = tl.arange(0, BLOCK_U)
    pos_ok = pos < L
    x = tl.load(QK + batch * s_qb + head * s_qh + pos[:, None] * s_ql + dims[None, :],
                mask=pos_ok[:, None] & (dims < e)[None, :], other=0.0).to(tl.float32)
    rot_mask = (dims < e)[:, None] & (cols < U)[None, :]
    if HAS_VALID:
        real = tl.load(VALID + batch * L + pos, mask=pos_ok, other=0) != 0
    for r in range(R):
        # R_r for this head, (E, U), from rotations laid out (h, e, r, u)
        rot = tl.load(ROT + ((head * e + dims[:, None]) * R + r) * U + cols[None, :], mask=rot_mask, other=0.0)
        proj = tl.dot(x, rot, input_precision="ieee")  # (P, U): hashing runs in float32, as the reference does
        ids = _signed_argmax(proj, cols, 0, HALF_A)
        if HALF_B > 0:
            ids += 2 * HALF_A * _signed_argmax(proj, cols, HALF_A, HALF_B)
        if HAS_VALID:
            ids = tl.where(real, ids, N_BUCKETS)  # padding: the extra bucket, sorted last
        tl.store(BUCKETS + (bh * R + r) * L + pos, ids.to(BUCKETS.dtype.element_ty), mask=pos_ok)
