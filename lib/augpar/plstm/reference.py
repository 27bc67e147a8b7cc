"""Reference recurrences of pLSTM (1D, 2D grid, general DAG): plain, slow, the test oracles.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997), Sec. 2 (Source/Transition/Mark over the line graph of a DAG).

Shapes (every input shares the leading batch dims ``...``, typically (batch, heads)):
  q ``[..., *, DK, JQ]``, k ``[..., *, DK, JK]``, v ``[..., *, DV, JV]``,
  S ``[..., *, JT, JK, JV]``, T ``[..., *, JT, JT]`` (out x in),
  M ``[..., *, JO, JQ, JT]``, D ``[..., *, JO, JQ, JK, JV]``,
  states ``[..., DK, DV, JT]``, output h ``[..., *, DV, JO]``;
``*`` is the sequence / grid / node / edge / link axis of each function. For the usual
scalar gates all J = 1: add ``[..., None]`` axes. ``scale`` defaults to ``DK ** -0.5``.

Per node n with incoming edge states ``C_e``:
  ``C_e' = sum_e T^n_{e'e} C_e + S^n_{e'} (k_n x v_n)`` for every outgoing e',
  ``h_n = scale * (sum_e q_n M^n_e C_e + D^n (q_n . k_n) v_n)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from augpar.plstm._checks import bind_shapes, check_graph_dims
from augpar.plstm.gates import Gates2D
from augpar.plstm.graph import DAG

# Per-node building blocks (the contraction conventions of the paper's code).


def _write(S, k, v):
    """S (k x v): ``[..., JT, JK, JV], [..., DK, JK], [..., DV, JV] -> [..., DK, DV, JT]``."""
    return jnp.einsum("...ijk,...dj,...vk->...dvi", S, k, v)


def _transfer(T, C):
    """T C: ``[..., JT, JT], [..., DK, DV, JT] -> [..., DK, DV, JT]``."""
    return jnp.einsum("...ij,...dvj->...dvi", T, C)


def _read(q, M, C):
    """q M C: ``[..., DK, JQ], [..., JO, JQ, JT], [..., DK, DV, JT] -> [..., DV, JO]``."""
    return jnp.einsum("...dj,...ijk,...dvk->...vi", q, M, C)


def _direct(q, D, k, v):
    """D (q . k) v: ``-> [..., DV, JO]``."""
    return jnp.einsum("...dj,...ijkl,...dk,...vl->...vi", q, D, k, v)


def plstm_1d_reference(
    q: Float[Array, "*b L DK JQ"],
    k: Float[Array, "*b L DK JK"],
    v: Float[Array, "*b L DV JV"],
    S: Float[Array, "*b L JT JK JV"],
    T: Float[Array, "*b L JT JT"],
    M: Float[Array, "*b L JO JQ JT"],
    D: Float[Array, "*b L JO JQ JK JV"] | None = None,
    *,
    initial_state: Float[Array, "*b DK DV JT"] | None = None,
    scale: float | None = None,
    return_state: bool = False,
):
    """Sequential 1D pLSTM: ``C_t = T_t C_{t-1} + S_t k_t v_t``,
    ``h_t = scale (q_t M_t C_{t-1} + D_t (q_t . k_t) v_t)`` (one ``lax.scan`` step per token).

    Returns:
      ``h [..., L, DV, JO]``, and with ``return_state`` also the last state
      ``C_{L-1} [..., DK, DV, JT]``.
    """
    batch, dims = bind_shapes(
        "plstm_1d_reference",
        [("q", q, "L DK JQ"), ("k", k, "L DK JK"), ("v", v, "L DV JV"),
         ("S", S, "L JT JK JV"), ("T", T, "L JT JT"), ("M", M, "L JO JQ JT"),
         ("D", D, "L JO JQ JK JV"), ("initial_state", initial_state, "DK DV JT")],
    )  # fmt: skip
    scale = dims["DK"] ** -0.5 if scale is None else scale
    if D is None:
        D = jnp.zeros(M.shape[:-1] + (dims["JK"], dims["JV"]), M.dtype)
    dtype = jnp.result_type(q, k, v, S, T, M, D)
    if initial_state is None:
        initial_state = jnp.zeros(batch + (dims["DK"], dims["DV"], dims["JT"]), dtype)
    nb = len(batch)
    xs = tuple(jnp.moveaxis(a, nb, 0) for a in (q, k, v, S, T, M, D))

    def step(C, x):
        qt, kt, vt, St, Tt, Mt, Dt = x
        h = scale * (_read(qt, Mt, C) + _direct(qt, Dt, kt, vt))
        return _transfer(Tt, C) + _write(St, kt, vt), h

    C, h = jax.lax.scan(step, initial_state.astype(dtype), xs)
    h = jnp.moveaxis(h, 0, nb)
    return (h, C) if return_state else h


def plstm_2d_reference(
    q: Float[Array, "*b X Y DK JQ"],
    k: Float[Array, "*b X Y DK JK"],
    v: Float[Array, "*b X Y DV JV"],
    gates: Gates2D,
    D: Float[Array, "*b X Y JO JQ JK JV"] | None = None,
    *,
    initial_left: Float[Array, "*b Y DK DV JT"] | None = None,
    initial_top: Float[Array, "*b X DK DV JT"] | None = None,
    order: Sequence[tuple[int, int]] | None = None,
    scale: float | None = None,
    return_state: bool = False,
):
    """Node-by-node 2D pLSTM over one orientation of an X x Y grid (Python loop).

    For node (i, j) with incoming ``l = c_r[i-1, j]`` and ``u = c_d[i, j-1]`` (out-of-grid
    incoming edges are 0 or the given initial border states):
    ``c_r = T_rl l + T_ru u + S_r kv``, ``c_d = T_du u + T_dl l + S_d kv``,
    ``h = scale (q M_l l + q M_u u + D (q . k) v)``.

    Args:
      q, k, v: ``[..., X, Y, DK|DV, J]`` (see the module docstring).
      gates: :class:`Gates2D` with ``[..., X, Y, ...]`` arrays.
      D: direct term ``[..., X, Y, JO, JQ, JK, JV]`` or None (0).
      initial_left: states on the r-edges entering row 0, ``[..., Y, DK, DV, JT]``.
      initial_top: states on the d-edges entering column 0, ``[..., X, DK, DV, JT]``.
      order: the visiting order, any topological order of the grid (default: raster).
        Raises ValueError if it is not one.

    Returns:
      ``h [..., X, Y, DV, JO]``; with ``return_state`` also ``(right, bottom)``, the states
      on the r-edges leaving row X-1 ``[..., Y, DK, DV, JT]`` and on the d-edges leaving
      column Y-1 ``[..., X, DK, DV, JT]``.
    """
    g = gates
    batch, dims = bind_shapes(
        "plstm_2d_reference",
        [("q", q, "X Y DK JQ"), ("k", k, "X Y DK JK"), ("v", v, "X Y DV JV"),
         ("S_r", g.S_r, "X Y JT JK JV"), ("S_d", g.S_d, "X Y JT JK JV"),
         ("T_rl", g.T_rl, "X Y JT JT"), ("T_du", g.T_du, "X Y JT JT"),
         ("T_dl", g.T_dl, "X Y JT JT"), ("T_ru", g.T_ru, "X Y JT JT"),
         ("M_l", g.M_l, "X Y JO JQ JT"), ("M_u", g.M_u, "X Y JO JQ JT"),
         ("D", D, "X Y JO JQ JK JV"), ("initial_left", initial_left, "Y DK DV JT"),
         ("initial_top", initial_top, "X DK DV JT")],
    )  # fmt: skip
    X, Y = dims["X"], dims["Y"]
    scale = dims["DK"] ** -0.5 if scale is None else scale
    if order is None:
        order = [(i, j) for i in range(X) for j in range(Y)]
    order = [(int(i), int(j)) for i, j in order]
    if sorted(order) != [(i, j) for i in range(X) for j in range(Y)]:
        raise ValueError(
            f"plstm_2d_reference: order has {len(order)} entries; allowed: every node of the "
            f"{X}x{Y} grid exactly once"
        )
    nb = len(batch)
    at = lambda a: None if a is None else jnp.moveaxis(a, (nb, nb + 1), (0, 1))  # noqa: E731
    q_, k_, v_, D_ = at(q), at(k), at(v), at(D)
    G = Gates2D(*(at(a) for a in g))
    st = (dims["DK"], dims["DV"], dims["JT"])
    zero = jnp.zeros(batch + st, jnp.result_type(q, k, v, *[a for a in g if a is not None]))
    c_r: dict[tuple[int, int], jax.Array] = {}
    c_d: dict[tuple[int, int], jax.Array] = {}
    h: dict[tuple[int, int], jax.Array] = {}
    for i, j in order:
        if (i > 0 and (i - 1, j) not in c_r) or (j > 0 and (i, j - 1) not in c_d):
            raise ValueError(
                f"plstm_2d_reference: order visits node {(i, j)} before its predecessor; "
                "allowed: a topological order ((i-1, j) and (i, j-1) before (i, j))"
            )
        if i > 0:
            left = c_r[(i - 1, j)]
        else:
            left = zero if initial_left is None else jnp.take(initial_left, j, axis=nb)
        if j > 0:
            up = c_d[(i, j - 1)]
        else:
            up = zero if initial_top is None else jnp.take(initial_top, i, axis=nb)
        qn, kn, vn = q_[i, j], k_[i, j], v_[i, j]
        kv_r = _write(G.S_r[i, j], kn, vn)
        kv_d = _write(G.S_d[i, j], kn, vn)
        cr = _transfer(G.T_rl[i, j], left) + kv_r
        cd = _transfer(G.T_du[i, j], up) + kv_d
        if G.T_ru is not None:
            cr = cr + _transfer(G.T_ru[i, j], up)
        if G.T_dl is not None:
            cd = cd + _transfer(G.T_dl[i, j], left)
        c_r[(i, j)], c_d[(i, j)] = cr, cd
        hn = _read(qn, G.M_l[i, j], left) + _read(qn, G.M_u[i, j], up)
        if D_ is not None:
            hn = hn + _direct(qn, D_[i, j], kn, vn)
        h[(i, j)] = scale * hn
    out = jnp.stack([jnp.stack([h[(i, j)] for j in range(Y)], nb) for i in range(X)], nb)
    if not return_state:
        return out
    right = jnp.stack([c_r[(X - 1, j)] for j in range(Y)], nb)
    bottom = jnp.stack([c_d[(i, Y - 1)] for i in range(X)], nb)
    return out, (right, bottom)


def plstm_dag_reference(
    q: Float[Array, "*b N DK JQ"],
    k: Float[Array, "*b N DK JK"],
    v: Float[Array, "*b N DV JV"],
    S: Float[Array, "*b E JT JK JV"],
    T: Float[Array, "*b NL JT JT"],
    M: Float[Array, "*b E JO JQ JT"],
    D: Float[Array, "*b N JO JQ JK JV"] | None,
    graph: DAG,
    *,
    initial_state: Float[Array, "*b E DK DV JT"] | None = None,
    scale: float | None = None,
    return_state: bool = False,
):
    """Edge-by-edge pLSTM on a DAG, visiting edges in a topological order of the line graph.

    ``C_e = sum_{links l: e_l -> e} T_l C_{e_l} + S_e (k_src v_src) [+ initial_state_e]``,
    then ``h_n = scale (sum_{e: dst(e)=n} q_n M_e C_e + D_n (q_n . k_n) v_n)``.

    Args:
      S, M: per edge (M is read by the edge's head node); T: per link (``graph.link_*``).
      initial_state: optional state added on every edge (for edges leaving source nodes
        this is the initial state).

    Returns:
      ``h [..., N, DV, JO]``; with ``return_state`` also all edge states
      ``[..., E, DK, DV, JT]``.
    """
    batch, dims = bind_shapes(
        "plstm_dag_reference",
        [("q", q, "N DK JQ"), ("k", k, "N DK JK"), ("v", v, "N DV JV"),
         ("S", S, "E JT JK JV"), ("T", T, "NL JT JT"),
         ("M", M, "E JO JQ JT"), ("D", D, "N JO JQ JK JV"),
         ("initial_state", initial_state, "E DK DV JT")],
    )  # fmt: skip
    check_graph_dims("plstm_dag_reference", graph, dims)
    scale = dims["DK"] ** -0.5 if scale is None else scale
    nb = len(batch)
    ax = lambda a, i: jnp.take(a, i, axis=nb)  # noqa: E731
    preds: list[list[int]] = [[] for _ in range(graph.num_edges)]
    for li in range(graph.num_links):
        preds[int(graph.link_out[li])].append(li)
    C: list[jax.Array | None] = [None] * graph.num_edges
    for e in graph.edge_order().tolist():
        n = int(graph.edge_src[e])
        c = _write(ax(S, e), ax(k, n), ax(v, n))
        if initial_state is not None:
            c = c + ax(initial_state, e)
        for li in preds[e]:
            prev = C[int(graph.link_in[li])]
            assert prev is not None, "edge order is not topological"
            c = c + _transfer(ax(T, li), prev)
        C[e] = c
    dtype = jnp.result_type(q, k, v)
    h = [jnp.zeros(batch + (dims["DV"], dims["JO"]), dtype) for _ in range(graph.num_nodes)]
    for e in range(graph.num_edges):
        n = int(graph.edge_dst[e])
        h[n] = h[n] + _read(ax(q, n), ax(M, e), C[e])
    if D is not None:
        for n in range(graph.num_nodes):
            h[n] = h[n] + _direct(ax(q, n), ax(D, n), ax(k, n), ax(v, n))
    out = scale * jnp.stack(h, nb)
    if not return_state:
        return out
    if graph.num_edges == 0:
        states = jnp.zeros(batch + (0, dims["DK"], dims["DV"], dims["JT"]), dtype)
    else:
        states = jnp.stack(C, nb)
    return out, states


__all__ = ["plstm_1d_reference", "plstm_2d_reference", "plstm_dag_reference"]
