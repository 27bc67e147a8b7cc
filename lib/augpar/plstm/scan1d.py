"""Chunkwise-parallel 1D pLSTM: log-depth gating matrix inside chunks, ``lax.scan`` across.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997). Shapes and conventions as in :mod:`augpar.plstm.reference`.

Inside a chunk of length C the chunk operators are built by log2(C) pairwise merges of
adjacent cells a (earlier) and b (later):
``T = T_b T_a``, ``S = [T_b S_a, S_b]``, ``M = [M_a, M_b T_a]``,
``G = [[G_a, 0], [M_b S_a, G_b]]`` (G[t, s] = M_t T_{t-1} ... T_{s+1} S_s for s < t).
Across chunks only the state is carried: ``C_{c+1} = T_c C_c + sum_a S_c[a] k_a v_a``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
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


def _chunk_operators_scalar(T, S, M):
    """All-J = 1 version of :func:`_chunk_operators` on squeezed arrays ``[B, n, C]``:
    the same merges, with products instead of J-matrix contractions."""
    B, n, C = T.shape
    Tl, Sl, Ml = T, S[..., None], M[..., None]
    Gl = jnp.zeros((B, n, C, 1, 1), S.dtype)
    s = 1
    while s < C:
        m = C // (2 * s)
        Tp, Sp, Mp, Gp = (x.reshape((B, n, m, 2) + x.shape[3:]) for x in (Tl, Sl, Ml, Gl))
        Ta, Tb = Tp[:, :, :, 0], Tp[:, :, :, 1]
        Sa, Sb = Sp[:, :, :, 0], Sp[:, :, :, 1]
        Ma, Mb = Mp[:, :, :, 0], Mp[:, :, :, 1]
        Ga, Gb = Gp[:, :, :, 0], Gp[:, :, :, 1]
        Tl = Tb * Ta
        Sl = jnp.concatenate([Tb[..., None] * Sa, Sb], axis=3)
        Ml = jnp.concatenate([Ma, Mb * Ta[..., None]], axis=3)
        cross = Mb[..., :, None] * Sa[..., None, :]
        top = jnp.concatenate([Ga, jnp.zeros_like(Ga)], axis=4)
        Gl = jnp.concatenate([top, jnp.concatenate([cross, Gb], axis=4)], axis=3)
        s *= 2
    return Tl[:, :, 0], Sl[:, :, 0], Ml[:, :, 0], Gl[:, :, 0]


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

    scalar = all(dims[j] == 1 for j in ("JQ", "JK", "JV", "JT", "JO"))

    def build(T_, S_, M_, k_, v_):
        if scalar:  # all J = 1: plain products and batched matmuls
            Tc, Sc, Mc, G = _chunk_operators_scalar(
                T_[..., 0, 0], S_[..., 0, 0, 0], M_[..., 0, 0, 0]
            )
            skv = jnp.einsum("bcad,bcav->bcdv", Sc[..., None] * k_[..., 0], v_[..., 0])
            return Tc[..., None, None], skv[..., None], Mc, G
        Tc, Sc, Mc, G = _chunk_operators(T_, S_, M_)
        skv = jnp.einsum("bcaijk,bcadj,bcavk->bcdvi", Sc, k_, v_)
        return Tc, skv, Mc, G

    def outputs(q_, k_, v_, Mc, G, C_in):
        if scalar:
            q0 = q_[..., 0]
            inter = jnp.einsum("bcad,bcdv->bcav", Mc[..., None] * q0, C_in[..., 0])
            A = jnp.einsum("bcad,bcsd->bcas", q0, k_[..., 0]) * G
            return (inter + jnp.einsum("bcas,bcsv->bcav", A, v_[..., 0]))[..., None]
        inter = jnp.einsum("bcadj,bcaijk,bcdvk->bcavi", q_, Mc, C_in)
        A = jnp.einsum("bcadj,bcsdk->bcasjk", q_, k_)
        W = jnp.einsum("bcasijkl,bcasjk->bcasil", G, A)
        intra = jnp.einsum("bcasil,bcsvl->bcavi", W, v_)
        return inter + intra

    if remat:
        build = jax.checkpoint(build)
        outputs = jax.checkpoint(outputs)
    Tc, skv, Mc, G = build(T_, S_, M_, k_, v_)

    if initial_state is None:
        C0 = jnp.zeros((Bf, dk, dv, jt), dtype)
    else:
        C0 = initial_state.astype(dtype).reshape((Bf, dk, dv, jt))

    def step(Cst, x):
        Tt, st = x
        return jnp.einsum("bij,bdvj->bdvi", Tt, Cst) + st, Cst

    C_last, C_in = jax.lax.scan(step, C0, (jnp.moveaxis(Tc, 1, 0), jnp.moveaxis(skv, 1, 0)))
    C_in = jnp.moveaxis(C_in, 0, 1)
    h = outputs(q_, k_, v_, Mc, G, C_in)
    if D is not None and scalar:
        qk = jnp.sum(q_[..., 0] * k_[..., 0], axis=-1)  # [B, n, C]
        h = h + (prep(D)[..., 0, 0, 0, 0] * qk)[..., None, None] * v_
    elif D is not None:
        h = h + jnp.einsum("bcadj,bcaijkl,bcadk,bcavl->bcavi", q_, prep(D), k_, v_)
    h = (scale * h).reshape((Bf, Lp) + h.shape[3:])[:, :L]
    h = h.reshape(batch + h.shape[1:])
    if return_state:
        return h, C_last.reshape(batch + (dk, dv, jt))
    return h
