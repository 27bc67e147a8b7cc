"""Chunkwise-parallel 1D pLSTM: log-depth gating matrix inside chunks, ``lax.scan`` across.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997). Shapes and conventions as in :mod:`augpar.plstm.reference`.

Inside a chunk of length C the chunk operators are built by log2(C) pairwise merges of
adjacent cells a (earlier) and b (later):
``T = T_b T_a``, ``S = [T_b S_a, S_b]``, ``M = [M_a, M_b T_a]``,
``G = [[G_a, 0], [M_b S_a, G_b]]`` (G[t, s] = M_t T_{t-1} ... T_{s+1} S_s for s < t).
Across chunks only the state is carried: ``C_{c+1} = T_c C_c + sum_a S_c[a] k_a v_a``.
With scalar gates (all J = 1) the chunk operators come from one decay matrix of transition
products (log form, exact custom backward) and the intra-chunk part is attention-like
(``(M q)(S k)^T * decay``, then ``@ v``), see ``_scan_scalar``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from augpar.plstm._checks import bind_shapes, check_power_of_two


def _chunk_operators(T, S, M):
    """Builds chunk transfer, sources, marks and the strictly-causal intra-chunk G.

    Args (``B`` = flattened batch, ``n`` = chunks, ``C`` = chunk length):
      T ``[B, n, C, JT, JT]``, S ``[B, n, C, JT, JK, JV]``, M ``[B, n, C, JO, JQ, JT]``.

    Returns:
      ``Tc [B, n, JT, JT]``, ``Sc [B, n, C, JT, JK, JV]`` (position -> chunk's outgoing
      state), ``Mc [B, n, C, JO, JQ, JT]`` (chunk's incoming state -> position), and
      ``G [B, n, C, C, JO, JQ, JK, JV]`` (target, source; zero on and above the diagonal).
    """
    B, n, C = T.shape[:3]
    jo, jq, jt = M.shape[-3:]
    jk, jv = S.shape[-2:]
    # Level 0: cells of one position, [B, n, cells, s, ...] with s = 1.
    Tl = T
    Sl = S[:, :, :, None]
    Ml = M[:, :, :, None]
    Gl = jnp.zeros((B, n, C, 1, 1, jo, jq, jk, jv), S.dtype)
    s = 1
    while s < C:
        m = C // (2 * s)
        Tp, Sp, Mp, Gp = (x.reshape((B, n, m, 2) + x.shape[3:]) for x in (Tl, Sl, Ml, Gl))
        Ta, Tb = Tp[:, :, :, 0], Tp[:, :, :, 1]
        Sa, Sb = Sp[:, :, :, 0], Sp[:, :, :, 1]
        Ma, Mb = Mp[:, :, :, 0], Mp[:, :, :, 1]
        Ga, Gb = Gp[:, :, :, 0], Gp[:, :, :, 1]
        Tl = jnp.einsum("...ij,...jk->...ik", Tb, Ta)
        Sl = jnp.concatenate([jnp.einsum("...ij,...ajkl->...aikl", Tb, Sa), Sb], axis=3)
        Ml = jnp.concatenate([Ma, jnp.einsum("...aijk,...kl->...aijl", Mb, Ta)], axis=3)
        cross = jnp.einsum("...tijk,...sklm->...tsijlm", Mb, Sa)
        top = jnp.concatenate([Ga, jnp.zeros_like(Ga)], axis=4)
        bottom = jnp.concatenate([cross, Gb], axis=4)
        Gl = jnp.concatenate([top, bottom], axis=3)
        s *= 2
    return Tl[:, :, 0], Sl[:, :, 0], Ml[:, :, 0], Gl[:, :, 0]


@jax.custom_vjp
def _decay_matrix(T: jax.Array) -> jax.Array:
    """Within-chunk transition products of scalar gates: ``T [..., C] -> E [..., C+1, C+1]``
    with ``E[t, s] = T_s T_{s+1} ... T_{t-1}`` for ``s <= t`` (1 on the diagonal) and 0 for
    ``s > t``.

    Forward: ``sign * exp(l[t] - l[s])`` with ``l`` the running sum of ``log|T|`` (relative
    error about float eps times ``|l|``), the sign from the count of negative factors, exact
    zeros where a factor is 0. Backward, exact (no division, no differences of running sums,
    zeros allowed): ``dT_u = sum_{t, s} g[t, s] E[t, u+1] E[u, s]`` (one matmul per chunk).
    """
    return _decay_matrix_fwd(T)[0]


def _decay_matrix_fwd(T):
    C = T.shape[-1]
    is_zero = T == 0
    logabs = jnp.log(jnp.where(is_zero, jnp.ones_like(T), jnp.abs(T)))

    def running(a):  # exclusive running sums at positions 0..C
        a = jnp.cumsum(a, axis=-1)
        return jnp.concatenate([jnp.zeros_like(a[..., :1]), a], axis=-1)

    # log|products| as differences of running sums, centred on the chunk's middle to halve
    # the magnitudes (float32 error ~ eps * |sum|); signs and zeros from exact int counts.
    lg = running(logabs)
    lg = lg - lg[..., C // 2 : C // 2 + 1]
    neg = running((T < 0).astype(jnp.int32))
    zer = running(is_zero.astype(jnp.int32))
    pos = np.arange(C + 1)
    causal = jnp.asarray(pos[None, :] <= pos[:, None]).reshape((1,) * (T.ndim - 1) + (C + 1,) * 2)
    keep = causal & (zer[..., :, None] == zer[..., None, :])
    diff = jnp.where(causal, lg[..., :, None] - lg[..., None, :], 0.0)
    sign = (1 - 2 * ((neg[..., :, None] - neg[..., None, :]) & 1)).astype(T.dtype)
    E = jnp.where(keep, sign * jnp.exp(diff), 0.0)
    return E, E


def _decay_matrix_bwd(E, g):
    Y = jnp.einsum("...ta,...ts->...as", E, g)
    return (jnp.sum(Y[..., 1:, :] * E[..., :-1, :], axis=-1),)


_decay_matrix.defvjp(_decay_matrix_fwd, _decay_matrix_bwd)


def _scan_scalar(q, k, v, S, T, M, D, C0, remat, unroll):
    """All-J = 1 chunkwise pLSTM on chunked arrays (``B`` flat batch, ``n`` chunks, ``C``
    positions): q, k ``[B, n, C, DK]``, v ``[B, n, C, DV]``, S, T, M, D ``[B, n, C]`` (D may
    be None), C0 ``[B, DK, DV]``. Returns the unscaled ``h [B, n, C, DV]`` and the last state.

    Per chunk, with ``P(t, s)`` the product of the T's at positions ``s..t-1``:
    ``C_out = P(C, 0) C_in + sum_s P(C, s+1) S_s k_s v_s^T`` (one matmul per chunk) and
    ``h_t = M_t P(t, 0) q_t C_in + sum_{s<t} (q_t . k_s) M_t P(t, s+1) S_s v_s + D_t (q_t .
    k_t) v_t`` (attention-like, the decay matrix fused into the score product).
    Only ``[B, DK, DV]`` states cross chunks (one ``lax.scan`` over chunks).
    """
    C = T.shape[-1]

    def build(T, S, k, v):
        E = _decay_matrix(T)
        Sc = E[..., C, 1:] * S
        return E[..., C, 0], jnp.einsum("bcsd,bcsv->bcdv", Sc[..., None] * k, v)

    def outputs(q, k, v, T, S, M, D, C_in):
        E = _decay_matrix(T)
        Mc = M * E[..., :C, 0]
        h = jnp.einsum("bcad,bcdv->bcav", Mc[..., None] * q, C_in)
        A = jnp.einsum("bcad,bcsd->bcas", M[..., None] * q, S[..., None] * k) * E[..., :C, 1:]
        h = h + jnp.einsum("bcas,bcsv->bcav", A, v)
        if D is not None:
            h = h + (D * jnp.sum(q * k, axis=-1))[..., None] * v
        return h

    if remat:
        build, outputs = jax.checkpoint(build), jax.checkpoint(outputs)
    Tc, skv = build(T, S, k, v)

    def step(c, x):
        t, s = x
        return t[:, None, None] * c + s, c

    xs = (jnp.moveaxis(Tc, 1, 0), jnp.moveaxis(skv, 1, 0))
    C_last, C_in = jax.lax.scan(step, C0, xs, unroll=unroll)
    return outputs(q, k, v, T, S, M, D, jnp.moveaxis(C_in, 0, 1)), C_last


def plstm_1d(
    q: Float[Array, "*b L DK JQ"],
    k: Float[Array, "*b L DK JK"],
    v: Float[Array, "*b L DV JV"],
    S: Float[Array, "*b L JT JK JV"],
    T: Float[Array, "*b L JT JT"],
    M: Float[Array, "*b L JO JQ JT"],
    D: Float[Array, "*b L JO JQ JK JV"] | None = None,
    *,
    chunk_size: int = 64,
    initial_state: Float[Array, "*b DK DV JT"] | None = None,
    scale: float | None = None,
    return_state: bool = False,
    remat: bool = False,
    unroll: int = 1,
):
    """Chunkwise 1D pLSTM, equal to :func:`augpar.plstm.plstm_1d_reference`.

    Any length L: the sequence is padded to a multiple of the chunk with exact padding
    (zero q/k/v/S/M/D, identity T, so the carried state is unchanged).

    Args:
      q, k, v, S, T, M, D, initial_state, scale: as in the reference.
      chunk_size: chunk length C, a power of two (clipped to the padded length). 1 is the
        pure recurrence; C >= L is the fully parallel O(L^2) form.
      return_state: also return the final state ``[..., DK, DV, JT]``.
      remat: recompute the chunk internals (G, chunk sources/marks) in the backward pass
        (``jax.checkpoint``) instead of storing them.
      unroll: ``unroll`` of the ``lax.scan`` over chunks (all-J = 1 path).

    Returns:
      ``h [..., L, DV, JO]`` (and the final state with ``return_state``).
    """
    fn = "plstm_1d"
    batch, dims = bind_shapes(
        fn,
        [("q", q, "L DK JQ"), ("k", k, "L DK JK"), ("v", v, "L DV JV"),
         ("S", S, "L JT JK JV"), ("T", T, "L JT JT"), ("M", M, "L JO JQ JT"),
         ("D", D, "L JO JQ JK JV"), ("initial_state", initial_state, "DK DV JT")],
    )  # fmt: skip
    check_power_of_two(fn, "chunk_size", chunk_size)
    L, dk, dv, jt = dims["L"], dims["DK"], dims["DV"], dims["JT"]
    scale = dk**-0.5 if scale is None else scale
    dtype = jnp.result_type(q, k, v, S, T, M, *(() if D is None else (D,)))
    C = min(chunk_size, 1 << max(0, (L - 1).bit_length()))
    Lp = -(-L // C) * C
    n = Lp // C
    nb = len(batch)
    Bf = 1
    for b in batch:
        Bf *= b

    def prep(a, pad_value=0.0):
        a = a.astype(dtype).reshape((Bf,) + a.shape[nb:])
        if Lp != L:
            pad = jnp.full((Bf, Lp - L) + a.shape[2:], pad_value, dtype)
            a = jnp.concatenate([a, pad], axis=1)
        return a.reshape((Bf, n, C) + a.shape[2:])

    q_, k_, v_, S_, M_ = prep(q), prep(k), prep(v), prep(S), prep(M)
    T_ = T.astype(dtype).reshape((Bf, L, jt, jt))
    if Lp != L:
        eye = jnp.broadcast_to(jnp.eye(jt, dtype=dtype), (Bf, Lp - L, jt, jt))
        T_ = jnp.concatenate([T_, eye], axis=1)
    T_ = T_.reshape((Bf, n, C, jt, jt))

    if initial_state is None:
        C0 = jnp.zeros((Bf, dk, dv, jt), dtype)
    else:
        C0 = initial_state.astype(dtype).reshape((Bf, dk, dv, jt))

    if all(dims[j] == 1 for j in ("JQ", "JK", "JV", "JT", "JO")):
        h, C_last = _scan_scalar(
            q_[..., 0], k_[..., 0], v_[..., 0], S_[..., 0, 0, 0], T_[..., 0, 0],
            M_[..., 0, 0, 0], None if D is None else prep(D)[..., 0, 0, 0, 0], C0[..., 0],
            remat, unroll,
        )  # fmt: skip
        h, C_last = h[..., None], C_last[..., None]
    else:
        D_ = None if D is None else prep(D)
        h, C_last = _scan_general(q_, k_, v_, S_, T_, M_, D_, C0, remat)
    h = (scale * h).reshape((Bf, Lp) + h.shape[3:])[:, :L]
    h = h.reshape(batch + h.shape[1:])
    if return_state:
        return h, C_last.reshape(batch + (dk, dv, jt))
    return h


def _scan_general(q_, k_, v_, S_, T_, M_, D_, C0, remat):
    """General-J chunkwise pLSTM (merge-tree chunk operators) on chunked arrays
    ``[B, n, C, ...]``. Returns the unscaled ``h [B, n, C, DV, JO]`` and the last state."""

    def build(T_, S_, M_, k_, v_):
        Tc, Sc, Mc, G = _chunk_operators(T_, S_, M_)
        skv = jnp.einsum("bcaijk,bcadj,bcavk->bcdvi", Sc, k_, v_)
        return Tc, skv, Mc, G

    def outputs(q_, k_, v_, Mc, G, C_in):
        inter = jnp.einsum("bcadj,bcaijk,bcdvk->bcavi", q_, Mc, C_in)
        A = jnp.einsum("bcadj,bcsdk->bcasjk", q_, k_)
        W = jnp.einsum("bcasijkl,bcasjk->bcasil", G, A)
        intra = jnp.einsum("bcasil,bcsvl->bcavi", W, v_)
        return inter + intra

    if remat:
        build = jax.checkpoint(build)
        outputs = jax.checkpoint(outputs)
    Tc, skv, Mc, G = build(T_, S_, M_, k_, v_)

    def step(Cst, x):
        Tt, st = x
        return jnp.einsum("bij,bdvj->bdvi", Tt, Cst) + st, Cst

    C_last, C_in = jax.lax.scan(step, C0, (jnp.moveaxis(Tc, 1, 0), jnp.moveaxis(skv, 1, 0)))
    h = outputs(q_, k_, v_, Mc, G, jnp.moveaxis(C_in, 0, 1))
    if D_ is not None:
        h = h + jnp.einsum("bcadj,bcaijkl,bcadk,bcavl->bcavi", q_, D_, k_, v_)
    return h, C_last
