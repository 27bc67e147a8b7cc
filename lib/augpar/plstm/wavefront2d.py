"""Memory-lean 2D pLSTM state passing for scalar gates (all J = 1), one orientation at a time.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997). Called by :func:`augpar.plstm.scan2d.plstm_2d` (``method="state_passing"``
with all J = 1); cell operators and conventions as in :mod:`augpar.plstm.scan2d`.

Per orientation (a ``lax.map`` over the orientations, each under ``jax.checkpoint``):

* leaf-chunk operators (``cx x cy`` chunks, built by the pairwise merges of scan2d) and the
  chunk-internal output ``(q k^T * G) v`` for all chunks at once;
* a ``lax.scan`` over chunk rows whose carry is only the border states entering the row
  (``dk x dv`` per border edge). Its body writes each chunk's outgoing border states
  (``border transfer @ incoming + sum_n S[j, n] k_n v_n^T``), passes the axis-1 border states
  along the row with an inner scan, and reads the incoming states into the chunk's outputs
  (``sum_j M[n, j] q_n . state_j``). The write and the read have hand-written backward passes
  whose only residuals are their inputs, so the backward pass of the scan saves only the
  border states of each row and recomputes nothing.

Nothing of size (nodes x dk x dv) is ever stored, and only one orientation's border states are
live at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from augpar.plstm.gates import Gates2D


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


def _flat_batch(*arrays):
    """Flattens the leading batch axes (all but the last two) of each array into one."""
    return tuple(a.reshape((-1,) + a.shape[-2:]) for a in arrays)


@jax.custom_vjp
def _write(s, k, v):
    """Border states written by a chunk's nodes: ``s [.., R, N]``, k ``[.., N, DK]``,
    v ``[.., N, DV]`` -> ``[.., R, DK * DV]`` with ``out[r] = sum_n s[r, n] k_n v_n^T``.

    Forward: ``s * k`` first, then one matmul over the nodes (measured faster on CPU than
    materialising per-node ``k v^T``). The backward is written by hand (see
    :func:`_write_bwd`): XLA's transpose of the forward contracts over a middle axis, and on
    this CPU (192 chunks of 8x8 nodes, dk = dv = 32) forward+backward took 57 ms against
    46 ms by hand (the read: 39 ms against 19 ms); its only residuals are the inputs.
    """
    return _write_fwd(s, k, v)[0]


def _write_fwd(s, k, v):
    batch, R, dk, dv = s.shape[:-2], s.shape[-2], k.shape[-1], v.shape[-1]
    s_, k_, v_ = _flat_batch(s, k, v)
    out = jnp.einsum("brnd,bnv->brdv", s_[..., None] * k_[:, None], v_)
    return out.reshape(batch + (R, dk * dv)), (s, k, v)


def _write_bwd(res, g):
    """``g [.., R, DK * DV]``: ``dv_n = sum_r s[r, n] k_n^T g_r``, ``ds[r, n] = k_n^T g_r
    v_n``, ``dk_n = sum_r s[r, n] g_r v_n`` (matmuls with the node axis outermost)."""
    s, k, v = res
    s_, k_, v_ = _flat_batch(s, k, v)
    b, R, N = s_.shape
    dk, dv = k_.shape[-1], v_.shape[-1]
    g = g.reshape(b, R, dk, dv)
    sT = jnp.swapaxes(s_, 1, 2)  # [b, N, R]
    gk = jnp.einsum("bnd,brdv->bnrv", k_, g)  # k_n^T g_r
    d_v = jnp.einsum("bnrv,bnr->bnv", gk, sT)
    gv = jnp.einsum("bnv,bkv->bnk", v_, g.reshape(b, R * dk, dv)).reshape(b, N, R, dk)
    d_s = jnp.swapaxes(jnp.sum(gv * k_[:, :, None], -1), 1, 2)
    d_k = jnp.einsum("bnrd,bnr->bnd", gv, sT)
    return d_s.reshape(s.shape), d_k.reshape(k.shape), d_v.reshape(v.shape)


_write.defvjp(_write_fwd, _write_bwd)


@jax.custom_vjp
def _read(m, q, st):
    """Node outputs from border states: ``m [.., N, R]``, q ``[.., N, DK]``, states
    ``[.., R, DK * DV]`` -> ``[.., N, DV]`` with ``h_n = sum_r m[n, r] q_n^T st_r``.

    Forward: ``q_n^T st_r`` for every (node, border) as one matmul over DK, then the
    ``m``-weighted sum over borders (measured 10% faster on CPU than ``m * q`` first and one
    matmul over (border, DK)); hand-written backward as in :func:`_write`.
    """
    return _read_fwd(m, q, st)[0]


def _read_fwd(m, q, st):
    batch, (N, R), dk = m.shape[:-2], m.shape[-2:], q.shape[-1]
    m_, q_, st_ = _flat_batch(m, q, st)
    dv = st_.shape[-1] // dk
    p = jnp.einsum("bnd,brdv->bnrv", q_, st_.reshape(-1, R, dk, dv))  # q_n^T st_r
    h = jnp.einsum("bnrv,bnr->bnv", p, m_)
    return h.reshape(batch + (N, dv)), (m, q, st)


def _read_bwd(res, g):
    """``g [.., N, DV]``: ``dst_r = sum_n m[n, r] q_n g_n^T`` (the forward of
    :func:`_write`), ``dm[n, r] = q_n^T st_r g_n``, ``dq_n = sum_r m[n, r] st_r g_n``."""
    m, q, st = res
    m_, q_, st_ = _flat_batch(m, q, st)
    b, N, R = m_.shape
    dk = q_.shape[-1]
    dv = st_.shape[-1] // dk
    g_ = g.reshape(b, N, dv)
    d_st = _write_fwd(jnp.swapaxes(m_, 1, 2), q_, g_)[0]
    gq = jnp.einsum("bnv,bkv->bnk", g_, st_.reshape(b, R * dk, dv)).reshape(b, N, R, dk)
    d_m = jnp.sum(gq * q_[:, :, None], -1)
    d_q = jnp.einsum("bnrd,bnr->bnd", gq, m_)
    return d_m.reshape(m.shape), d_q.reshape(q.shape), d_st.reshape(st.shape)


_read.defvjp(_read_fwd, _read_bwd)


def one_orientation(gates: Gates2D, q, k, v, init_r, init_d, *, cx: int, cy: int):
    """One orientation's outputs and outgoing grid-border states (frame of that orientation).

    A ``lax.scan`` over chunk rows carries the axis-0 border states entering the row. Per
    row: every chunk writes its border states (``w``, one batched op); the axis-1 border states
    passed from chunk to chunk follow ``in1[y + 1] = T11[y] in1[y] + (T10[y] in0[y] + w1[y])``
    (``T`` the chunk's border transfer, ``cx x cx`` and ``cx x cy`` blocks), an inner
    ``lax.scan`` over the row's chunks; then every chunk forms its axis-0 outputs and reads its
    node outputs at once. Each chunk is visited exactly once (an anti-diagonal wavefront pads
    about half of its slots: measured 1.4x slower at 32 x 32), and the inner scan is a chain
    of small ``[cx, cx] @ [cx, F]`` products (an associative scan there was 1.6x slower).

    Args:
      gates: scalar gates ``[B, Xp, Yp, 1, ...]`` (J axes of size 1; None turns allowed).
      q, k, v: chunked ``[B, NX, NY, N, DK|DV]`` (N = cx * cy nodes, row-major in the chunk).
      init_r: ``[B, NY, cy, F]`` states entering chunk row 0 (F = DK * DV);
      init_d: ``[B, NX, cx, F]`` states entering chunk column 0.

    Returns:
      ``h [B, NX, NY, N, DV]`` (unscaled, without D), ``right [B, NY, cy, F]``,
      ``bottom [B, NX, cx, F]``.
    """
    NY = q.shape[2]
    transfer, source, mark, g = _leaf(gates, cx, cy)
    scores = jnp.einsum("bxynd,bxymd->bxynm", q, k) * g
    h_intra = jnp.einsum("bxynm,bxymv->bxynv", scores, v)

    rows = lambda a: jnp.moveaxis(a, 1, 0)  # noqa: E731  [B, NX, ...] -> [NX, B, ...]

    def row(in0, x):
        # in0 [B, NY, cy, F]: axis-0 border states entering this chunk row, per chunk.
        tr, src, mk, qr, kr, vr, i1 = x
        w = _write(src, kr, vr)  # [B, NY, R, F]
        b = tr[..., cy:, :cy] @ in0 + w[..., cy:, :]  # [B, NY, cx, F]

        def along(cur, ab):  # cur [B, cx, F]: axis-1 borders entering chunk y
            t11, b_y = ab
            nxt = t11 @ cur + b_y
            return nxt, nxt

        cols = lambda a: jnp.moveaxis(a, 1, 0)  # noqa: E731  [B, NY, ...] -> [NY, B, ...]
        _, out1 = jax.lax.scan(along, i1, (cols(tr[..., cy:, cy:]), cols(b)), unroll=min(NY, 8))
        out1 = cols(out1)  # [B, NY, cx, F] leaving each chunk
        in1 = jnp.concatenate([i1[:, None], out1[:, :-1]], axis=1)
        inc = jnp.concatenate([in0, in1], axis=2)  # [B, NY, R, F] entering each chunk
        out0 = tr[..., :cy, :] @ inc + w[..., :cy, :]
        return out0, (_read(mk, qr, inc), out1[:, -1])

    xs = tuple(rows(a) for a in (transfer, source, mark, q, k, v, init_d))
    right, (h_rows, bottom) = jax.lax.scan(row, init_r, xs)
    return h_intra + rows(h_rows), right, rows(bottom)
