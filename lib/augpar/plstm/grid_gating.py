"""2D pLSTM on small grids as masked linear attention: the path-sum gating matrix G by dynamic
programming, then one ``(Q K^T * G) V`` product.

For scalar gates (all J = 1, the P/D-mode layers) the 2D recurrence of
:func:`augpar.plstm.plstm_2d_reference` has the closed form

``h[n] = scale * (sum_m G[n, m] (q_n . k_m) v_m + D_n (q_n . k_n) v_n)``

where ``G[n, m]`` sums, over every monotone path from node m to node n, the product of m's
source, the transitions along the path and n's mark. This module computes G for all sources at
once by propagating a weight vector over sources along the grid's edges::

    L = A_r[i-1, j], U = A_d[i, j-1]                        (0 outside the grid)
    A_r[i, j] = T_rl L + T_ru U + S_r e_(i,j)
    A_d[i, j] = T_dl L + T_du U + S_d e_(i,j)
    G[(i, j), :] = M_l L + M_u U

with a ``lax.scan`` over rows and, inside a row, an associative scan over columns (the d-edge
chain ``A_d[i, j] = T_du A_d[i, j-1] + ...`` is a first-order linear recurrence). Everything is
elementwise on ``[batch, Y, N]`` tensors, so unlike the hierarchical cell merges there are no
tiny batched matrix products, which XLA runs slowly on CPU. Memory is O(N^2) per (batch, head)
like attention, so this is the right form for the small token grids of small vision models:
measured fwd+bwd of one layer (B 64, dim 32, 2 heads, ``experiments/benchmarks/plstm_layer.py``)
at 8 x 8 tokens it is 1.9x faster than state passing and 5x faster than dense; from 16 x 16 on
the state-passing form of :func:`augpar.plstm.plstm_2d` is faster (1.35x) with 7x less memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from augpar.plstm.gates import Gates2D
from augpar.plstm.scan2d import _flip

__all__ = ["gating_matrix_2d", "plstm_2d_masked"]


def _scalar(name: str, a: jax.Array | None, trailing: int) -> jax.Array | None:
    """Drops ``trailing`` J axes of size 1 from a gate, or says which axes are not 1."""
    if a is None:
        return None
    tail = a.shape[a.ndim - trailing :]
    if any(d != 1 for d in tail):
        raise ValueError(
            f"plstm_2d_masked: {name} has multiplicity axes {tail} (shape {tuple(a.shape)}); "
            "allowed: all J = 1 (scalar gates). Use plstm_2d for J > 1."
        )
    return a.reshape(a.shape[: a.ndim - trailing])


def gating_matrix_2d(
    S_r: Float[Array, "*b X Y"],
    S_d: Float[Array, "*b X Y"],
    T_rl: Float[Array, "*b X Y"],
    T_du: Float[Array, "*b X Y"],
    T_dl: Float[Array, "*b X Y"] | None,
    T_ru: Float[Array, "*b X Y"] | None,
    M_l: Float[Array, "*b X Y"],
    M_u: Float[Array, "*b X Y"],
) -> Float[Array, "*b X Y X Y"]:
    """Path-sum gating matrix of one orientation with scalar gates.

    Args:
      S_r, S_d, T_rl, T_du, T_dl, T_ru, M_l, M_u: ``[..., X, Y]`` gates (see
        :class:`augpar.plstm.gates.Gates2D`); ``T_dl`` / ``T_ru`` may be None (0).

    Returns:
      ``G [..., X, Y, X, Y]``: ``G[..., i, j, i', j']`` is the weight of source node (i', j')
      in the output of node (i, j); zero unless (i', j') < (i, j) componentwise-monotone, and
      zero on the diagonal (the direct term is separate).
    """
    batch = S_r.shape[:-2]
    X, Y = S_r.shape[-2:]
    N = X * Y
    zero = jnp.zeros_like(S_r)
    T_dl = zero if T_dl is None else T_dl
    T_ru = zero if T_ru is None else T_ru

    def rows(a):  # [..., X, Y] -> [X, B, Y, 1] (scan over rows, broadcast over sources)
        return jnp.moveaxis(a.reshape((-1, X, Y)), 1, 0)[..., None]

    xs = tuple(rows(a) for a in (S_r, S_d, T_rl, T_du, T_dl, T_ru, M_l, M_u))
    nb = xs[0].shape[1]
    sources = jnp.arange(N).reshape(X, Y)

    def combine(first, second):  # x_j = a_j x_{j-1} + b_j composed left to right
        a1, b1 = first
        a2, b2 = second
        return a1 * a2, a2 * b1 + b2

    def row(left, inputs):  # left: A_r of the row above, [B, Y, N]
        i, (s_r, s_d, t_rl, t_du, t_dl, t_ru, m_l, m_u) = inputs
        onehot = (sources[i][None, :, None] == jnp.arange(N)[None, None, :]).astype(left.dtype)
        b = t_dl * left + s_d * onehot
        a = jnp.broadcast_to(t_du, b.shape)
        _, down = jax.lax.associative_scan(combine, (a, b), axis=1)  # A_d[i, j]
        up = jnp.pad(down[:, :-1], ((0, 0), (1, 0), (0, 0)))  # U_j = A_d[i, j-1]
        right = t_rl * left + t_ru * up + s_r * onehot
        return right, m_l * left + m_u * up

    left0 = jnp.zeros((nb, Y, N), S_r.dtype)
    _, g = jax.lax.scan(row, left0, (jnp.arange(X), xs))  # [X, B, Y, N]
    return jnp.moveaxis(g, 0, 1).reshape(batch + (X, Y, X, Y))


def plstm_2d_masked(
    q: Float[Array, "*b X Y DK JQ"],
    k: Float[Array, "*b X Y DK JK"],
    v: Float[Array, "*b X Y DV JV"],
    gates: Gates2D,
    D: Float[Array, "*b X Y JO JQ JK JV"] | None = None,
    *,
    orientations: Sequence[int] = (0, 1, 2, 3),
    scale: float | None = None,
) -> Float[Array, "*b X Y DV JO"]:
    """2D pLSTM with scalar gates as masked linear attention (same result as ``plstm_2d``).

    Orientation o runs the recurrence on the grid flipped along axis 0 if ``o & 1`` and along
    axis 1 if ``o & 2``; the outputs of all orientations are summed and the direct term D is
    counted once, exactly as :func:`augpar.plstm.plstm_2d` (without initial border states).

    Args:
      q, k: ``[..., X, Y, DK, 1]``; v: ``[..., X, Y, DV, 1]``.
      gates: :class:`Gates2D` with arrays ``[..., O, X, Y, <J axes of size 1>]``,
        ``O = len(orientations)``, in the original (unflipped) grid coordinates.
      D: ``[..., X, Y, 1, 1, 1, 1]`` or None.
      orientations: distinct values in {0, 1, 2, 3}.
      scale: read-out scale, default ``DK ** -0.5``.

    Returns:
      ``h [..., X, Y, DV, 1]``. Memory: one ``[..., X*Y, X*Y]`` matrix per orientation.
    """
    fn = "plstm_2d_masked"
    if q.ndim < 4 or k.shape != q.shape or v.shape[:-2] != q.shape[:-2]:
        raise ValueError(
            f"{fn}: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; expected "
            "q, k [..., X, Y, DK, 1] and v [..., X, Y, DV, 1] with equal leading axes"
        )
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.shape[-1] != 1:
            raise ValueError(f"{fn}: {name} shape {tuple(a.shape)}; allowed: last axis J = 1")
    orientations = tuple(int(o) for o in orientations)
    if len(set(orientations)) != len(orientations) or not set(orientations) <= {0, 1, 2, 3}:
        raise ValueError(f"{fn}: orientations={orientations}; allowed: distinct values in 0..3")
    g = gates
    trailing = {"S_r": 3, "S_d": 3, "T_rl": 2, "T_du": 2, "T_dl": 2, "T_ru": 2, "M_l": 3, "M_u": 3}
    sg = {n: _scalar(n, getattr(g, n), trailing[n]) for n in trailing}
    *batch, X, Y, dk, _ = q.shape
    batch = tuple(batch)
    expect = batch + (len(orientations), X, Y)
    for n, a in sg.items():
        if a is not None and a.shape != expect:
            raise ValueError(
                f"{fn}: gates.{n} shape {tuple(getattr(g, n).shape)}; expected {expect} "
                "followed by its J axes of size 1"
            )
    scale = dk**-0.5 if scale is None else scale
    nb = len(batch)
    o_axis = nb  # orientation axis of the gates

    # Gates in each orientation's own frame, orientation folded into the batch.
    def frame(a):
        if a is None:
            return None
        return jnp.stack(
            [_flip(jnp.take(a, i, axis=o_axis), o, nb)
             for i, o in enumerate(orientations)], nb,
        )  # fmt: skip

    G_frames = gating_matrix_2d(*(frame(sg[n]) for n in trailing))  # [..., O, X, Y, X, Y]
    # Back to original coordinates: flip target and source grid axes alike, sum orientations.
    G = sum(
        _flip(_flip(jnp.take(G_frames, i, axis=o_axis), o, nb), o, nb + 2)
        for i, o in enumerate(orientations)
    )
    N = X * Y
    G = G.reshape(batch + (N, N))
    if D is not None:
        G = G + jnp.einsum("...n,nm->...nm", D.reshape(batch + (N,)).astype(G.dtype), jnp.eye(N))
    qf, kf = q.reshape(batch + (N, dk)), k.reshape(batch + (N, dk))
    vf = v.reshape(batch + (N, v.shape[-2]))
    scores = jnp.einsum("...nd,...md->...nm", qf, kf) * G
    h = scale * jnp.einsum("...nm,...mv->...nv", scores, vf)
    return h.reshape(batch + (X, Y, v.shape[-2], 1))
