"""Parallel 2D pLSTM on grids: hierarchical cell operators, fused orientations, and a
wavefront ``lax.scan`` that passes chunk-border states.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997). Node/edge conventions as in :mod:`augpar.plstm.gates`.

A *cell* is an sx x sy block of nodes. Its operators map its incoming border states (left:
r-edges entering its first row, indexed by column; top: d-edges entering its first column,
indexed by row) and its nodes' k x v to its outgoing border states (right / bottom) and to its
nodes' outputs. Cells are merged pairwise, first along axis 0 (a above b), then along axis 1
(a left of c), which builds a leaf chunk's operators and its dense gating matrix G in
log2(sx) + log2(sy) steps. Chunks then exchange border states along anti-diagonals of the
chunk grid with one ``lax.scan`` (X/cx + Y/cy - 1 steps).

``method="dense"`` uses one chunk covering the padded grid (O(N^2) memory, like attention);
``method="state_passing"`` uses small leaf chunks, so memory grows about linearly in N. With
scalar gates (all J = 1, the P/D-mode layers) state passing runs one orientation at a time,
scans over chunk rows instead of anti-diagonals and keeps only chunk-border states for the
backward pass (:mod:`augpar.plstm.wavefront2d`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from augpar.plstm._checks import bind_shapes, check_power_of_two, next_pow2
from augpar.plstm.gates import Gates2D
from augpar.plstm.wavefront2d import one_orientation


class _Cells(NamedTuple):
    """Cell operators on a cell grid ``[B, nx, ny, ...]``; Jr = sy*JT, Id = sx*JT borders
    (border position major, JT minor); KV = JK*JV; OQ = JO*JQ.

    rl ``[.., Jr_out, Jr_in]`` left->right, du ``[.., Id_out, Id_in]`` top->bottom,
    dl ``[.., Id_out, Jr_in]`` left->bottom, ru ``[.., Jr_out, Id_in]`` top->right,
    sr ``[.., Jr, sx, sy, KV]``, sd ``[.., Id, sx, sy, KV]`` node -> right / bottom border,
    ml ``[.., sx, sy, OQ, Jr]``, mu ``[.., sx, sy, OQ, Id]`` left / top border -> node,
    g ``[.., sx, sy, OQ, sx, sy, KV]`` node -> node inside the cell (strictly monotone paths).
    """

    rl: jax.Array
    du: jax.Array
    dl: jax.Array
    ru: jax.Array
    sr: jax.Array
    sd: jax.Array
    ml: jax.Array
    mu: jax.Array
    g: jax.Array


def _ts(t, s):  # border transfer applied to cell sources: [.., R, S] x [.., S, w, z, KV]
    return jnp.einsum("...rs,...swzk->...rwzk", t, s)


def _mt(m, t):  # cell marks times a border transfer: [.., w, z, OQ, R] x [.., R, S]
    return jnp.einsum("...wzor,...rs->...wzos", m, t)


def _ms(m, s):  # gating block from marks and sources
    return jnp.einsum("...wzor,...rxyk->...wzoxyk", m, s)


def _block(a11, a12, a21, a22):
    return jnp.concatenate([jnp.concatenate([a11, a12], -1), jnp.concatenate([a21, a22], -1)], -2)


def _merge0(c: _Cells) -> _Cells:
    """Merges cell pairs along axis 0: a = rows [0, sx), b = rows [sx, 2sx)."""

    def split(x):
        x = x.reshape(x.shape[:1] + (x.shape[1] // 2, 2) + x.shape[2:])
        return x[:, :, 0], x[:, :, 1]

    a, b = (_Cells(*p) for p in zip(*(split(x) for x in c), strict=True))
    du = _block(a.du, jnp.zeros_like(a.du), b.dl @ a.ru, b.du)
    sd_a = jnp.concatenate([a.sd, _ts(b.dl, a.sr)], -4)
    sd_b = jnp.concatenate([jnp.zeros_like(b.sd), b.sd], -4)
    mu_a = jnp.concatenate([a.mu, jnp.zeros_like(a.mu)], -1)
    mu_b = jnp.concatenate([_mt(b.ml, a.ru), b.mu], -1)
    g_top = jnp.concatenate([a.g, jnp.zeros_like(a.g)], -3)
    g_bot = jnp.concatenate([_ms(b.ml, a.sr), b.g], -3)
    return _Cells(
        rl=b.rl @ a.rl,
        du=du,
        dl=jnp.concatenate([a.dl, b.dl @ a.rl], -2),
        ru=jnp.concatenate([b.rl @ a.ru, b.ru], -1),
        sr=jnp.concatenate([_ts(b.rl, a.sr), b.sr], -3),
        sd=jnp.concatenate([sd_a, sd_b], -3),
        ml=jnp.concatenate([a.ml, _mt(b.ml, a.rl)], -4),
        mu=jnp.concatenate([mu_a, mu_b], -4),
        g=jnp.concatenate([g_top, g_bot], -6),
    )


def _merge1(c: _Cells) -> _Cells:
    """Merges cell pairs along axis 1: a = columns [0, sy), c = columns [sy, 2sy)."""

    def split(x):
        x = x.reshape(x.shape[:2] + (x.shape[2] // 2, 2) + x.shape[3:])
        return x[:, :, :, 0], x[:, :, :, 1]

    a, b = (_Cells(*p) for p in zip(*(split(x) for x in c), strict=True))
    rl = _block(a.rl, jnp.zeros_like(a.rl), b.ru @ a.dl, b.rl)
    sr_a = jnp.concatenate([a.sr, _ts(b.ru, a.sd)], -4)
    sr_b = jnp.concatenate([jnp.zeros_like(b.sr), b.sr], -4)
    ml_a = jnp.concatenate([a.ml, jnp.zeros_like(a.ml)], -1)
    ml_b = jnp.concatenate([_mt(b.mu, a.dl), b.ml], -1)
    g_top = jnp.concatenate([a.g, jnp.zeros_like(a.g)], -2)
    g_bot = jnp.concatenate([_ms(b.mu, a.sd), b.g], -2)
    return _Cells(
        rl=rl,
        du=b.du @ a.du,
        dl=jnp.concatenate([b.du @ a.dl, b.dl], -1),
        ru=jnp.concatenate([a.ru, b.ru @ a.du], -2),
        sr=jnp.concatenate([sr_a, sr_b], -2),
        sd=jnp.concatenate([_ts(b.du, a.sd), b.sd], -2),
        ml=jnp.concatenate([ml_a, ml_b], -3),
        mu=jnp.concatenate([a.mu, _mt(b.mu, a.du)], -3),
        g=jnp.concatenate([g_top, g_bot], -5),
    )


def _leaf_cells(gates: Gates2D, cx: int, cy: int) -> _Cells:
    """Operators of cx x cy leaf chunks from node gates ``[B, X, Y, ...]`` (None -> 0)."""
    B, X, Y, jt = gates.T_rl.shape[:4]
    jo, jq = gates.M_l.shape[-3:-1]
    jk, jv = gates.S_r.shape[-2:]
    zero_t = jnp.zeros_like(gates.T_rl)
    dl = zero_t if gates.T_dl is None else gates.T_dl
    ru = zero_t if gates.T_ru is None else gates.T_ru
    cells = _Cells(
        rl=gates.T_rl, du=gates.T_du, dl=dl, ru=ru,
        sr=gates.S_r.reshape(B, X, Y, jt, 1, 1, jk * jv),
        sd=gates.S_d.reshape(B, X, Y, jt, 1, 1, jk * jv),
        ml=gates.M_l.reshape(B, X, Y, 1, 1, jo * jq, jt),
        mu=gates.M_u.reshape(B, X, Y, 1, 1, jo * jq, jt),
        g=jnp.zeros((B, X, Y, 1, 1, jo * jq, 1, 1, jk * jv), gates.S_r.dtype),
    )  # fmt: skip
    sx = sy = 1
    while sx < cx or sy < cy:
        if sx < cx:
            cells, sx = _merge0(cells), sx * 2
        if sy < cy:
            cells, sy = _merge1(cells), sy * 2
    return cells


def _flip(a: jax.Array, o: int, ax: int) -> jax.Array:
    """Flips grid axes ``ax`` (axis 0 of the grid) and ``ax + 1`` as orientation o says."""
    if o & 1:
        a = jnp.flip(a, ax)
    if o & 2:
        a = jnp.flip(a, ax + 1)
    return a


def _wavefront(transfers, skv_r, skv_d, init_r, init_d):
    """Chunk-border states by a ``lax.scan`` over anti-diagonals of the chunk grid.

    Args:
      transfers: the leaf chunks' ``(rl, du, dl, ru)`` border transfers ``[B, NX, NY, ...]``.
      skv_r, skv_d: ``[B, NX, NY, Jr|Id, F]`` border states written by each chunk's nodes.
      init_r: ``[B, NY, Jr, F]`` states entering chunk row 0; init_d: ``[B, NX, Id, F]``.

    Returns:
      ``l_in [B, NX, NY, Jr, F]``, ``u_in [B, NX, NY, Id, F]`` (states entering every chunk)
      and the outgoing ``right [B, NY, Jr, F]`` / ``bottom [B, NX, Id, F]`` grid borders.
    """
    B, NX, NY = skv_r.shape[:3]
    NT = NX + NY - 1

    def skew(a):  # [B, NX, NY, ...] -> [NT, B, NX, ...]; chunk (x, y) at step x + y
        rest = [(0, 0)] * (a.ndim - 3)
        rows = [jnp.pad(a[:, x], [(0, 0), (x, NX - 1 - x)] + rest) for x in range(NX)]
        return jnp.moveaxis(jnp.stack(rows, 1), 2, 0)

    def unskew(a):  # [NT, B, NX, ...] -> [B, NX, NY, ...] (slices, no gathers)
        return jnp.stack([jnp.moveaxis(a[x : x + NY, :, x], 0, 1) for x in range(NX)], 1)

    xs = tuple(skew(a) for a in (*transfers, skv_r, skv_d))
    init_r_t = jnp.moveaxis(jnp.pad(init_r, [(0, 0), (0, NX - 1), (0, 0), (0, 0)]), 1, 0)
    t_idx = jnp.arange(NT)

    def step(carry, x):
        cr, cd = carry
        rl, du, dl, ru, sr, sd, ir, t = x
        left = jnp.concatenate([ir[:, None], cr[:, :-1]], axis=1)
        first_col = (jnp.arange(NX) == t).astype(cd.dtype)[None, :, None, None]
        up = cd + first_col * init_d
        out_r = rl @ left + ru @ up + sr
        out_d = du @ up + dl @ left + sd
        xb = jnp.clip(t - (NY - 1), 0, NX - 1)
        bottom = jax.lax.dynamic_index_in_dim(out_d, xb, axis=1, keepdims=False)
        return (out_r, out_d), (left, up, out_r[:, NX - 1], bottom)

    z_r = jnp.zeros((B, NX) + skv_r.shape[3:], skv_r.dtype)
    z_d = jnp.zeros((B, NX) + skv_d.shape[3:], skv_d.dtype)
    _, (l_sk, u_sk, r_sk, b_sk) = jax.lax.scan(step, (z_r, z_d), xs + (init_r_t, t_idx))
    l_in, u_in = unskew(l_sk), unskew(u_sk)
    right = jnp.moveaxis(r_sk[NX - 1 :], 0, 1)
    bottom = jnp.moveaxis(b_sk[NY - 1 :], 0, 1)
    return l_in, u_in, right, bottom


def _to_chunks(a: jax.Array, cx: int, cy: int) -> jax.Array:
    """``[B, Xp, Yp, ...] -> [B, NX, NY, cx, cy, ...]``."""
    B, Xp, Yp = a.shape[:3]
    a = a.reshape((B, Xp // cx, cx, Yp // cy, cy) + a.shape[3:])
    return jnp.moveaxis(a, 3, 2)


def _from_chunks(a: jax.Array) -> jax.Array:
    """``[B, NX, NY, cx, cy, ...] -> [B, Xp, Yp, ...]``."""
    B, NX, NY, cx, cy = a.shape[:5]
    return jnp.moveaxis(a, 2, 3).reshape((B, NX * cx, NY * cy) + a.shape[5:])


_METHODS = ("dense", "state_passing")


def plstm_2d(
    q: Float[Array, "*b X Y DK JQ"],
    k: Float[Array, "*b X Y DK JK"],
    v: Float[Array, "*b X Y DV JV"],
    gates: Gates2D,
    D: Float[Array, "*b X Y JO JQ JK JV"] | None = None,
    *,
    orientations: Sequence[int] = (0, 1, 2, 3),
    method: str = "state_passing",
    chunk_size: int = 8,
    initial_left: Float[Array, "*b O Y DK DV JT"] | None = None,
    initial_top: Float[Array, "*b O X DK DV JT"] | None = None,
    scale: float | None = None,
    return_state: bool = False,
    remat: bool = False,
):
    """Parallel 2D pLSTM on an X x Y grid (any sizes), orientations fused.

    Orientation o runs the recurrence of :func:`augpar.plstm.plstm_2d_reference` on the grid
    flipped along axis 0 if ``o & 1`` and along axis 1 if ``o & 2`` (0: identity, 1: flip
    axis 0, 2: flip axis 1, 3: both), with its own gates; q, k, v and D are shared. The output
    is the sum over orientations, with D counted once. Gates and initial/final border states
    are given in the original (unflipped) grid coordinates.

    Padding is exact: padded nodes get zero q/k/v/S/M/D and transitions that only carry the
    border states straight through, so every result equals the unpadded recurrence.

    Args:
      q, k, v: ``[..., X, Y, DK|DV, J]``.
      gates: :class:`Gates2D` whose arrays are ``[..., O, X, Y, ...]`` with
        ``O = len(orientations)`` (gate ``o`` belongs to ``orientations[o]``); ``T_dl`` /
        ``T_ru`` may be None (D-mode patterns).
      D: ``[..., X, Y, JO, JQ, JK, JV]`` or None.
      orientations: distinct values in {0, 1, 2, 3}.
      method: ``"dense"``: one chunk covering the grid padded to powers of two, a dense
        N x N gating matrix (O(N^2) memory and work, log depth); ``"state_passing"``:
        ``chunk_size`` x ``chunk_size`` leaf chunks with dense G inside and border states
        passed between chunks by a ``lax.scan`` over chunk anti-diagonals (over chunk rows
        with scalar gates; memory about linear in N).
      chunk_size: leaf chunk side (a power of two) for ``"state_passing"``; 1 is the
        node-level wavefront recurrence. Ignored by ``"dense"``.
      initial_left: ``[..., O, Y, DK, DV, JT]`` states on the r-edges entering the first row
        that orientation visits (row 0, or row X-1 if it flips axis 0), indexed by column.
      initial_top: ``[..., O, X, DK, DV, JT]`` likewise for the d-edges entering its first
        column, indexed by row.
      scale: read-out scale, default ``DK ** -0.5``.
      return_state: also return ``(right [..., O, Y, DK, DV, JT], bottom [..., O, X, DK, DV,
        JT])``, the states leaving each orientation's last row / last column.
      remat: recompute the leaf-chunk operators in the backward pass (``jax.checkpoint``).
        With all J = 1, ``"state_passing"`` always recomputes chunk internals (it stores
        only the chunk-border states of one orientation at a time) and ignores this flag.

    Returns:
      ``h [..., X, Y, DV, JO]`` (and the border states with ``return_state``).
    """
    fn = "plstm_2d"
    g = gates
    batch, dims = bind_shapes(
        fn,
        [("q", q, "X Y DK JQ"), ("k", k, "X Y DK JK"), ("v", v, "X Y DV JV"),
         ("gates.S_r", g.S_r, "O X Y JT JK JV"), ("gates.S_d", g.S_d, "O X Y JT JK JV"),
         ("gates.T_rl", g.T_rl, "O X Y JT JT"), ("gates.T_du", g.T_du, "O X Y JT JT"),
         ("gates.T_dl", g.T_dl, "O X Y JT JT"), ("gates.T_ru", g.T_ru, "O X Y JT JT"),
         ("gates.M_l", g.M_l, "O X Y JO JQ JT"), ("gates.M_u", g.M_u, "O X Y JO JQ JT"),
         ("D", D, "X Y JO JQ JK JV"), ("initial_left", initial_left, "O Y DK DV JT"),
         ("initial_top", initial_top, "O X DK DV JT")],
    )  # fmt: skip
    orientations = tuple(int(o) for o in orientations)
    if (
        not orientations
        or len(set(orientations)) != len(orientations)
        or any(o not in (0, 1, 2, 3) for o in orientations)
    ):
        raise ValueError(f"{fn}: orientations={orientations}; allowed: distinct values in 0..3")
    if dims["O"] != len(orientations):
        raise ValueError(
            f"{fn}: gates have an orientation axis of size {dims['O']} (gates.S_r shape "
            f"{tuple(g.S_r.shape)}) but orientations={orientations}; allowed: equal sizes"
        )
    if method not in _METHODS:
        raise ValueError(f"{fn}: method={method!r}; allowed: {_METHODS}")
    check_power_of_two(fn, "chunk_size", chunk_size)
    X, Y, dk, dv = dims["X"], dims["Y"], dims["DK"], dims["DV"]
    jt, jo, jq, jk, jv = (dims[n] for n in ("JT", "JO", "JQ", "JK", "JV"))
    n_or = len(orientations)
    scale = dk**-0.5 if scale is None else scale
    arrays = [q, k, v, *(a for a in g if a is not None)] + ([] if D is None else [D])
    dtype = jnp.result_type(*arrays)
    if method == "dense":
        cx, cy = next_pow2(X), next_pow2(Y)
    else:
        cx, cy = min(chunk_size, next_pow2(X)), min(chunk_size, next_pow2(Y))
    Xp, Yp = -(-X // cx) * cx, -(-Y // cy) * cy
    nb = len(batch)
    Bf = int(np.prod(batch, dtype=np.int64)) if batch else 1

    def pad_grid(a, ax):  # zero-pad grid axes ax, ax+1 at the high end
        widths = [(0, 0)] * a.ndim
        widths[ax], widths[ax + 1] = (0, Xp - X), (0, Yp - Y)
        return jnp.pad(a.astype(dtype), widths)

    def flat(a, tail):  # [..., tail] -> [Bf, tail]
        return a.reshape((Bf,) + a.shape[nb:])

    prow = np.arange(Xp) >= X
    pcol = np.arange(Yp) >= Y
    eye = np.eye(jt)
    carry_rl = jnp.asarray((prow[:, None] & ~pcol[None, :])[..., None, None] * eye, dtype)
    carry_du = jnp.asarray((~prow[:, None] & pcol[None, :])[..., None, None] * eye, dtype)

    def orient_gates(a, carry=None):  # [..., O, X, Y, r] -> [Bf*O, Xp, Yp, r] (flipped)
        if a is None:
            return None
        a = pad_grid(flat(a, None), 2)
        if carry is not None:
            a = a + carry[None, None]
        a = jnp.stack([_flip(a[:, i], o, 1) for i, o in enumerate(orientations)], 1)
        return a.reshape((Bf * n_or,) + a.shape[2:])

    go = Gates2D(
        S_r=orient_gates(g.S_r), S_d=orient_gates(g.S_d),
        T_rl=orient_gates(g.T_rl, carry_rl), T_du=orient_gates(g.T_du, carry_du),
        T_dl=orient_gates(g.T_dl), T_ru=orient_gates(g.T_ru),
        M_l=orient_gates(g.M_l), M_u=orient_gates(g.M_u),
    )  # fmt: skip
    qp, kp, vp = (pad_grid(flat(a, None), 1) for a in (q, k, v))

    def orient_nodes(a):  # [Bf, Xp, Yp, r] -> [Bf*O, NX, NY, cx, cy, r] in each frame
        a = jnp.stack([_flip(a, o, 1) for o in orientations], 1)
        return _to_chunks(a.reshape((Bf * n_or,) + a.shape[2:]), cx, cy)

    def orient_border(a, axis_flip_bit, n, c):  # [..., O, n, DK, DV, JT] -> [Bf*O, n/c, c*JT, F]
        a = flat(a, None).astype(dtype)
        a = jnp.pad(a, [(0, 0), (0, 0), (0, n - a.shape[2]), (0, 0), (0, 0), (0, 0)])
        a = jnp.stack(
            [jnp.flip(a[:, i], 1) if o & axis_flip_bit else a[:, i]
             for i, o in enumerate(orientations)], 1,
        )  # fmt: skip
        a = jnp.moveaxis(a, -1, -3).reshape(Bf * n_or, n // c, c * jt, dk * dv)
        return a

    NX, NY = Xp // cx, Yp // cy
    if initial_left is None:
        init_r = jnp.zeros((Bf * n_or, NY, cy * jt, dk * dv), dtype)
    else:
        init_r = orient_border(initial_left, 2, Yp, cy)
    if initial_top is None:
        init_d = jnp.zeros((Bf * n_or, NX, cx * jt, dk * dv), dtype)
    else:
        init_d = orient_border(initial_top, 1, Xp, cx)

    k_o, v_o, q_o = orient_nodes(kp), orient_nodes(vp), orient_nodes(qp)
    qc, kc, vc = (_to_chunks(a, cx, cy) for a in (qp, kp, vp))

    scalar = all(dims[j] == 1 for j in ("JQ", "JK", "JV", "JT", "JO"))

    def finish(h, right, bottom):  # h [Bf, Xp, Yp, DV, JO] summed over orientations
        if D is not None:
            h = h + jnp.einsum("bxydj,bxyijkl,bxydk,bxyvl->bxyvi", qp,
                               pad_grid(flat(D, None), 1), kp, vp)  # fmt: skip
        h = (scale * h)[:, :X, :Y].reshape(batch + (X, Y, dv, jo))
        if not return_state:
            return h
        return h, (unorient_border(right, 2, Y), unorient_border(bottom, 1, X))

    def unorient_border(a, axis_flip_bit, n):  # [Bf*O, N, c*JT, F] -> [..., O, n, DK, DV, JT]
        a = a.reshape(Bf, n_or, -1, jt, dk, dv)
        a = jnp.moveaxis(a, 3, -1)
        a = jnp.stack(
            [jnp.flip(a[:, i], 1) if o & axis_flip_bit else a[:, i]
             for i, o in enumerate(orientations)], 1,
        )  # fmt: skip
        return a[:, :, :n].reshape(batch + (n_or, n, dk, dv, jt))

    if scalar and method == "state_passing":
        # One orientation at a time, border states only (see augpar.plstm.wavefront2d).
        def per_o(a):  # [Bf*O, ...] -> [O, Bf, ...]
            return None if a is None else jnp.moveaxis(a.reshape((Bf, n_or) + a.shape[1:]), 1, 0)

        def nodes(a):  # [Bf*O, NX, NY, cx, cy, d, 1] -> [O, Bf, NX, NY, N, d]
            return per_o(a).reshape((n_or, Bf, NX, NY, cx * cy, a.shape[-2]))

        per_orientation = jax.checkpoint(functools.partial(one_orientation, cx=cx, cy=cy))
        h_o, right, bottom = jax.lax.map(
            lambda a: per_orientation(*a),
            (Gates2D(*(per_o(a) for a in go)), nodes(q_o), nodes(k_o), nodes(v_o),
             per_o(init_r), per_o(init_d)),
        )  # fmt: skip
        h_o = _from_chunks(h_o.reshape((n_or * Bf, NX, NY, cx, cy, dv)))
        h_o = h_o.reshape((n_or, Bf, Xp, Yp, dv))
        h = sum(_flip(h_o[i], o, 1) for i, o in enumerate(orientations))[..., None]
        to_flat = lambda a: jnp.moveaxis(a, 0, 1).reshape((Bf * n_or,) + a.shape[2:])  # noqa: E731
        return finish(h, to_flat(right), to_flat(bottom))

    def write(s, k_o, v_o):  # border states written by a chunk's nodes: [.., R, F]
        if scalar:  # (S * k) first, then one matmul over the chunk's nodes
            sk = s[..., 0][..., None] * k_o[:, :, :, None, ..., 0]  # [.., R, w, z, DK]
            out = jnp.einsum("bxyrwzd,bxywzv->bxyrdv", sk, v_o[..., 0])
        else:
            s6 = s.reshape(s.shape[:-1] + (jk, jv))
            out = jnp.einsum("bxyrwzjl,bxywzdj,bxywzvl->bxyrdv", s6, k_o, v_o)
        return out.reshape(s.shape[:4] + (dk * dv,))

    def pre(go, k_o, v_o):
        cells = _leaf_cells(go, cx, cy)
        return cells, [write(cells.sr, k_o, v_o), write(cells.sd, k_o, v_o)]

    def post(cells, q_o, qc, kc, vc, l_in, u_in):
        B = Bf * n_or
        sh = (B, NX, NY)

        def read(m, st):  # border states -> node outputs [.., w, z, DV, JO]
            st = st.reshape(sh + (st.shape[3], dk, dv))
            if scalar:  # (M * q) first, then one matmul over (border, DK)
                qm = m[..., 0, :, None] * q_o[..., None, :, 0]  # [.., w, z, R, DK]
                return jnp.einsum("bxywzrd,bxyrdv->bxywzv", qm, st)[..., None]
            m6 = m.reshape(sh + (cx, cy, jo, jq, m.shape[-1]))
            return jnp.einsum("bxywzdj,bxywzijr,bxyrdv->bxywzvi", q_o, m6, st)

        inter = _from_chunks(read(cells.ml, l_in) + read(cells.mu, u_in))
        inter = inter.reshape((Bf, n_or) + inter.shape[1:])
        h = sum(_flip(inter[:, i], o, 1) for i, o in enumerate(orientations))
        gg = cells.g.reshape((Bf, n_or, NX, NY, cx, cy, jo, jq, cx, cy, jk, jv))
        G = 0.0
        for i, o in enumerate(orientations):
            gi = gg[:, i]
            if o & 1:
                gi = jnp.flip(gi, (1, 3, 7))
            if o & 2:
                gi = jnp.flip(gi, (2, 4, 8))
            G = G + gi
        if scalar:
            A = jnp.einsum("bxywzd,bxyWZd->bxywzWZ", qc[..., 0], kc[..., 0])
            W = A * G[..., 0, 0, :, :, 0, 0]
            intra = jnp.einsum("bxywzWZ,bxyWZv->bxywzv", W, vc[..., 0])[..., None]
        else:
            A = jnp.einsum("bxywzdj,bxyWZdk->bxywzWZjk", qc, kc)
            W = jnp.einsum("bxywzijWZkl,bxywzWZjk->bxywzWZil", G, A)
            intra = jnp.einsum("bxywzWZil,bxyWZvl->bxywzvi", W, vc)
        return h + _from_chunks(intra)

    if remat:
        # Only the border transfers and written border states leave the first checkpoint;
        # the second rebuilds the leaf operators for the read-out in the backward pass.
        def pre_transfers(go, k_o, v_o):
            cells, skv = pre(go, k_o, v_o)
            return (cells.rl, cells.du, cells.dl, cells.ru), skv

        def post_rebuild(go, k_o, v_o, *rest):
            return post(pre(go, k_o, v_o)[0], *rest)

        transfers, (skv_r, skv_d) = jax.checkpoint(pre_transfers)(go, k_o, v_o)
        l_in, u_in, right, bottom = _wavefront(transfers, skv_r, skv_d, init_r, init_d)
        h = jax.checkpoint(post_rebuild)(go, k_o, v_o, q_o, qc, kc, vc, l_in, u_in)
    else:
        cells, (skv_r, skv_d) = pre(go, k_o, v_o)
        transfers = (cells.rl, cells.du, cells.dl, cells.ru)
        l_in, u_in, right, bottom = _wavefront(transfers, skv_r, skv_d, init_r, init_d)
        h = post(cells, q_o, qc, kc, vc, l_in, u_in)
    return finish(h, right, bottom)
