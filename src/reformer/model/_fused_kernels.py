"""The Triton kernels behind `fused.py` (see its docstring for the computation); imported only on first use.

Shape legend: C query rows and K key columns of a tile (chunk sizes rounded up to powers of two of at least 16),
E the head dimension's tile; c, ck, e the true sizes, masked at the tile edges.
"""

import triton
import triton.language as tl

from .masking import MASKED, SELF_PENALTY

_PENALTY = tl.constexpr(SELF_PENALTY)
_MASKED = tl.constexpr(MASKED)


@triton.jit
def _mm(a, b, F32_DOT: tl.constexpr):
    # float32 tiles multiply as `fused.f32_dot` says (None for 16-bit tiles: tensor cores, float32 accumulation)
    return tl.dot(a, b, input_precision=F32_DOT)


@triton.jit
def online_softmax_step(m_i, l_i, acc, s, v, F32_DOT: tl.constexpr):
    # one key tile into the running row max m, sum l and output accumulator (see `fused.py`'s docstring)
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, 1), acc * alpha[:, None] + _mm(p.to(v.dtype), v, F32_DOT)


@triton.jit
def scores(q, k, q_pos, KPOS, KVALID, kc, t, rows, cols, ck, F32_DOT: tl.constexpr, SELF_OFFSET: tl.constexpr,
           POS_SELF: tl.constexpr, CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr):
    # (C, K) float32 logits of one query chunk against key chunk kc, the t-th of its window
    s = _mm(q, tl.trans(k), F32_DOT)
    col_ok = cols < ck
    if POS_SELF or CAUSAL:
        k_pos = tl.load(KPOS + kc * ck + cols, mask=col_ok, other=-1)
    is_self = (rows[:, None] + SELF_OFFSET) == (t * ck + cols)[None, :]  # the own key's window column
    if POS_SELF:
        is_self = q_pos[:, None] == k_pos[None, :]
    s = tl.where(is_self, s + _PENALTY, s)
    if CAUSAL:
        s = tl.where(k_pos[None, :] > q_pos[:, None], _MASKED, s)
    if HAS_VALID:
        ok = tl.load(KVALID + kc * ck + cols, mask=col_ok, other=0)
        s = tl.where(ok[None, :] != 0, s, _MASKED)
    # tile columns past the chunk are not keys at all
    return tl.where(col_ok[None, :], s, float("-inf"))

@triton.jit
def forward(Q, K, V, O, LSE, ROWMAX, LOGSUM, QPOS, KPOS, KVALID, c, ck, e, start,
            SPAN: tl.constexpr, BEFORE: tl.constexpr, SELF_OFFSET: tl.constexpr, POS_SELF: tl.constexpr,
            CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr, F32_DOT: tl.constexpr,
            BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_E: tl.constexpr):
    j = tl.program_id(0).to(tl.int64) + start  # int64 offsets: buffers past 2^31 elements
    rows = tl.arange(0, BLOCK_C)
    cols = tl.arange(0, BLOCK_K)
    dims = tl.arange(0, BLOCK_E)
    row_ok = rows < c
    dim_ok = dims < e
    q = tl.load(Q + (j * c + rows[:, None]) * e + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :],
                other=0.0)
    q_pos = rows
    if POS_SELF or CAUSAL:
        q_pos = tl.load(QPOS + j * c + rows, mask=row_ok, other=0)
    m_i = tl.full([BLOCK_C], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_C], tl.float32)
    acc = tl.zeros([BLOCK_C, BLOCK_E], tl.float32)
    for t in tl.static_range(SPAN):
        kc = j - BEFORE + t
        kv_mask = (cols < ck)[:, None] & dim_ok[None, :]
        k = tl.load(K + (kc * ck + cols[:, None]) * e + dims[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V + (kc * ck + cols[:, None]) * e + dims[None, :], mask=kv_mask, other=0.0)
        s = scores(q, k, q_pos, KPOS, KVALID, kc, t, rows, cols, ck, F32_DOT, SELF_OFFSET, POS_SELF, CAUSAL,
                   HAS_VALID)
        m_i, l_i, acc = online_softmax_step(m_i, l_i, acc, s, v, F32_DOT)
    out = acc / l_i[:, None]
    tl.store(O + (j * c + rows[:, None]) * e + dims[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None] & dim_ok[None, :])
    tl.store(LSE + j * c + rows, m_i + tl.log(l_i), mask=row_ok)
    # the backward's P = exp((S - max) - ln l): S - lse in one subtraction would lose every digit of a row whose
    # keys are all masked (lse ~ -1e9, where float32 steps by 64), and e^(S - max) is exact for its largest key
    tl.store(ROWMAX + j * c + rows, m_i, mask=row_ok)
    tl.store(LOGSUM + j * c + rows, tl.log(l_i), mask=row_ok)

@triton.jit
def backward_kv(Q, K, V, DO, ROWMAX, LOGSUM, DELTA, DK, DV, QPOS, KPOS, KVALID, c, ck, e, start, stop,
                SPAN: tl.constexpr, BEFORE: tl.constexpr, SELF_OFFSET: tl.constexpr, POS_SELF: tl.constexpr,
                CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr, F32_DOT: tl.constexpr,
                BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_E: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)  # the key chunk this program owns (int64 offsets)
    rows = tl.arange(0, BLOCK_C)
    cols = tl.arange(0, BLOCK_K)
    dims = tl.arange(0, BLOCK_E)
    row_ok = rows < c
    dim_ok = dims < e
    kv_mask = (cols < ck)[:, None] & dim_ok[None, :]
    k = tl.load(K + (i * ck + cols[:, None]) * e + dims[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + (i * ck + cols[:, None]) * e + dims[None, :], mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_K, BLOCK_E], tl.float32)
    dv = tl.zeros([BLOCK_K, BLOCK_E], tl.float32)
    q_mask = row_ok[:, None] & dim_ok[None, :]
    for t in tl.static_range(SPAN):
        j = i + BEFORE - t  # the query chunk whose window holds chunk i as its t-th
        if (j >= start) & (j < stop):
            q = tl.load(Q + (j * c + rows[:, None]) * e + dims[None, :], mask=q_mask, other=0.0)
            d_o = tl.load(DO + (j * c + rows[:, None]) * e + dims[None, :], mask=q_mask, other=0.0)
            row_max = tl.load(ROWMAX + j * c + rows, mask=row_ok, other=0.0)
            log_sum = tl.load(LOGSUM + j * c + rows, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + j * c + rows, mask=row_ok, other=0.0)
            q_pos = rows
            if POS_SELF or CAUSAL:
                q_pos = tl.load(QPOS + j * c + rows, mask=row_ok, other=0)
            s = scores(q, k, q_pos, KPOS, KVALID, i, t, rows, cols, ck, F32_DOT, SELF_OFFSET, POS_SELF, CAUSAL,
                       HAS_VALID)
            p = tl.where(row_ok[:, None], tl.exp((s - row_max[:, None]) - log_sum[:, None]), 0.0)  # (C, K)
            dv += _mm(tl.trans(p.to(d_o.dtype)), d_o, F32_DOT)
            dp = _mm(d_o, tl.trans(v), F32_DOT)
            ds = p * (dp - delta[:, None])
            dk += _mm(tl.trans(ds.to(q.dtype)), q, F32_DOT)
    tl.store(DK + (i * ck + cols[:, None]) * e + dims[None, :], dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + (i * ck + cols[:, None]) * e + dims[None, :], dv.to(DV.dtype.element_ty), mask=kv_mask)

@triton.jit
def backward_q(Q, K, V, DO, ROWMAX, LOGSUM, DELTA, DQ, QPOS, KPOS, KVALID, c, ck, e, start,
               SPAN: tl.constexpr, BEFORE: tl.constexpr, SELF_OFFSET: tl.constexpr, POS_SELF: tl.constexpr,
               CAUSAL: tl.constexpr, HAS_VALID: tl.constexpr, F32_DOT: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_E: tl.constexpr):
    j = tl.program_id(0).to(tl.int64) + start  # int64 offsets: buffers past 2^31 elements
    rows = tl.arange(0, BLOCK_C)
    cols = tl.arange(0, BLOCK_K)
    dims = tl.arange(0, BLOCK_E)
    row_ok = rows < c
    dim_ok = dims < e
    q_mask = row_ok[:, None] & dim_ok[None, :]
    q = tl.load(Q + (j * c + rows[:, None]) * e + dims[None, :], mask=q_mask, other=0.0)
    d_o = tl.load(DO + (j * c + rows[:, None]) * e + dims[None, :], mask=q_mask, other=0.0)
    row_max = tl.load(ROWMAX + j * c + rows, mask=row_ok, other=0.0)
    log_sum = tl.load(LOGSUM + j * c + rows, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + j * c + rows, mask=row_ok, other=0.0)
    q_pos = rows
    if POS_SELF or CAUSAL:
        q_pos = tl.load(QPOS + j * c + rows, mask=row_ok, other=0)
    dq = tl.zeros([BLOCK_C, BLOCK_E], tl.float32)
    for t in tl.static_range(SPAN):
        kc = j - BEFORE + t
        kv_mask = (cols < ck)[:, None] & dim_ok[None, :]
        k = tl.load(K + (kc * ck + cols[:, None]) * e + dims[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V + (kc * ck + cols[:, None]) * e + dims[None, :], mask=kv_mask, other=0.0)
        s = scores(q, k, q_pos, KPOS, KVALID, kc, t, rows, cols, ck, F32_DOT, SELF_OFFSET, POS_SELF, CAUSAL,
                   HAS_VALID)
        p = tl.exp((s - row_max[:, None]) - log_sum[:, None])
        dp = _mm(d_o, tl.trans(v), F32_DOT)
        ds = p * (dp - delta[:, None])
        dq += _mm(ds.to(k.dtype), k, F32_DOT)
    tl.store(DQ + (j * c + rows[:, None]) * e + dims[None, :], dq.to(DQ.dtype.element_ty), mask=q_mask)
