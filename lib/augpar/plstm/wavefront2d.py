"""Memory-lean 2D pLSTM state passing for scalar gates (all J = 1), one orientation at a time.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997). Called by :func:`augpar.plstm.scan2d.plstm_2d` (``method="state_passing"``
with all J = 1); cell operators and conventions as in :mod:`augpar.plstm.scan2d`.

Per orientation (a ``lax.map`` over the orientations, each under ``jax.checkpoint``):

* leaf-chunk operators (``cx x cy`` chunks, built by the pairwise merges of scan2d) and the
  chunk-internal output ``(q k^T * G) v`` for all chunks at once;
* a ``lax.scan`` over chunk anti-diagonals whose carry is only the border states between
  chunks (``dk x dv`` per border edge). Its body, under ``jax.checkpoint``, writes each chunk's
  outgoing border states (``border transfer @ incoming + sum_n S[j, n] k_n v_n^T``) and reads
  the incoming ones into the chunk's outputs (``sum_j M[n, j] q_n . state_j``), so the backward
  pass saves only the carried border states of each step and recomputes the rest.

Nothing of size (nodes x dk x dv) is ever stored, and only one orientation's border states are
live at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from augpar.plstm.gates import Gates2D


def _skew(a: jax.Array, NX: int) -> jax.Array:
    """``[B, NX, NY, ...] -> [NX + NY - 1, B, NX, ...]``: chunk (x, y) at step x + y (zeros
    at steps t where t - x is not a chunk column)."""
    rest = [(0, 0)] * (a.ndim - 3)
    rows = [jnp.pad(a[:, x], [(0, 0), (x, NX - 1 - x)] + rest) for x in range(NX)]
    return jnp.moveaxis(jnp.stack(rows, 1), 2, 0)


def _unskew(a: jax.Array, NX: int, NY: int) -> jax.Array:
    """Inverse of :func:`_skew`: ``[NT, B, NX, ...] -> [B, NX, NY, ...]``."""
    return jnp.stack([jnp.moveaxis(a[x : x + NY, :, x], 0, 1) for x in range(NX)], 1)


def _leaf(gates: Gates2D, cx: int, cy: int):
    """Scalar leaf-chunk operators, flattened over the chunk's nodes (N = cx * cy) and its
    borders (R = cy + cx: the axis-0 border edges, indexed by column, then the axis-1 ones,
    indexed by row).

    Returns ``(transfer [.., R_out, R_in], source [.., R, N], mark [.., N, R], g [.., N, N])``.
    """
    from augpar.plstm.scan2d import _block, _leaf_cells  # here: scan2d imports this module

    c = _leaf_cells(gates, cx, cy)
    sh = c.rl.shape[:3]
    N = cx * cy
    transfer = _block(c.rl, c.ru, c.dl, c.du)
    source = jnp.concatenate([c.sr.reshape(sh + (cy, N)), c.sd.reshape(sh + (cx, N))], -2)
    mark = jnp.concatenate([c.ml.reshape(sh + (N, cy)), c.mu.reshape(sh + (N, cx))], -1)
    return transfer, source, mark, c.g.reshape(sh + (N, N))


def _write(s, k, v):
    """Border states written by a chunk's nodes: ``s [.., R, N]``, k ``[.., N, DK]``,
    v ``[.., N, DV]`` -> ``[.., R, DK * DV]`` (``s * k`` first, then one matmul over the
    nodes; measured faster on CPU than materialising per-node ``k v^T``)."""
    sk = s[..., :, :, None] * k[..., None, :, :]  # [.., R, N, DK]
    out = jnp.einsum("...rnd,...nv->...rdv", sk, v)
    return out.reshape(out.shape[:-2] + (-1,))


def _read(m, q, st, dv):
    """Node outputs from border states: ``m [.., N, R]``, q ``[.., N, DK]``, states
    ``[.., R, DK * DV]`` -> ``[.., N, DV]`` (``m * q`` first, then one matmul over
    (border, DK))."""
    qm = m[..., :, :, None] * q[..., :, None, :]  # [.., N, R, DK]
    qm = qm.reshape(qm.shape[:-2] + (-1,))
    st = st.reshape(st.shape[:-2] + (-1, dv))  # [.., R * DK, DV]
    return jnp.einsum("...nk,...kv->...nv", qm, st)


def one_orientation(gates: Gates2D, q, k, v, init_r, init_d, *, cx: int, cy: int):
    """One orientation's outputs and outgoing grid-border states (frame of that orientation).

    Args:
      gates: scalar gates ``[B, Xp, Yp, 1, ...]`` (J axes of size 1; None turns allowed).
      q, k, v: chunked ``[B, NX, NY, N, DK|DV]`` (N = cx * cy nodes, row-major in the chunk).
      init_r: ``[B, NY, cy, F]`` states entering chunk row 0 (F = DK * DV);
      init_d: ``[B, NX, cx, F]`` states entering chunk column 0.

    Returns:
      ``h [B, NX, NY, N, DV]`` (unscaled, without D), ``right [B, NY, cy, F]``,
      ``bottom [B, NX, cx, F]``.
    """
    B, NX, NY, N, dv = v.shape
    NT = NX + NY - 1
    transfer, source, mark, g = _leaf(gates, cx, cy)
    scores = jnp.einsum("bxynd,bxymd->bxynm", q, k) * g
    h_intra = jnp.einsum("bxynm,bxymv->bxynv", scores, v)

    xs = tuple(_skew(a, NX) for a in (transfer, source, mark, q, k, v))
    init_r_t = jnp.moveaxis(jnp.pad(init_r, [(0, 0), (0, NX - 1), (0, 0), (0, 0)]), 1, 0)
    x_idx = jnp.arange(NX)

    @jax.checkpoint
    def step(out, x):
        # out [B, NX, R, F]: states leaving the previous anti-diagonal's chunks (per chunk
        # row x): their axis-0 border enters chunk row x + 1, their axis-1 border row x.
        (tr, src, mk, qs, ks, vs), ir, t = x
        left = jnp.concatenate([ir[:, None], out[:, :-1, :cy]], axis=1)
        first_col = (x_idx == t).astype(out.dtype)[None, :, None, None]
        up = out[:, :, cy:] + first_col * init_d
        inc = jnp.concatenate([left, up], axis=2)  # [B, NX, R, F] entering this diagonal
        new = tr @ inc + _write(src, ks, vs)
        h = _read(mk, qs, inc, dv)
        xb = jnp.clip(t - (NY - 1), 0, NX - 1)
        bottom = jax.lax.dynamic_index_in_dim(new[:, :, cy:], xb, axis=1, keepdims=False)
        return new, (h, new[:, NX - 1, :cy], bottom)

    F = init_r.shape[-1]
    out0 = jnp.zeros((B, NX, cy + cx, F), v.dtype)
    _, (h_sk, r_sk, b_sk) = jax.lax.scan(step, out0, (xs, init_r_t, jnp.arange(NT)))
    h = h_intra + _unskew(h_sk, NX, NY)
    right = jnp.moveaxis(r_sk[NX - 1 :], 0, 1)
    bottom = jnp.moveaxis(b_sk[NY - 1 :], 0, 1)
    return h, right, bottom
