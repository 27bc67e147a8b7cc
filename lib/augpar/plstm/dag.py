"""General-DAG pLSTM engine: states on edges, propagated generation by generation.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997), Sec. 2. Conventions as in :mod:`augpar.plstm.reference` and
:mod:`augpar.plstm.graph`.

The nodes are grouped into topological generations (longest distance from a source). All
edges leaving generation g are computed in one step from the edges entering it, with a gather
over line-graph links and a ``segment_sum`` into the outgoing edges. Sizes are padded to the
largest generation, so the whole propagation is a single ``lax.scan`` with static shapes
(depth = number of generations). Batches of graphs run as one disjoint union
(:func:`augpar.plstm.graph.disjoint_union`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from augpar.plstm._checks import bind_shapes, check_graph_dims
from augpar.plstm.gates import Gates2D
from augpar.plstm.graph import DAG, GridLayout


def _schedule(graph: DAG):
    """Static per-generation index tables (padded with dummies E / NL / Emax)."""
    E, NL = graph.num_edges, graph.num_links
    egen = graph.node_generation[graph.edge_src]
    gens = np.unique(egen)
    edges = [np.nonzero(egen == g)[0] for g in gens]
    pos = np.zeros(E, np.int64)
    for es in edges:
        pos[es] = np.arange(len(es))
    lgen = egen[graph.link_out]
    links = [np.nonzero(lgen == g)[0] for g in gens]
    emax = max(len(es) for es in edges)
    lmax = max(1, max(len(ls) for ls in links))
    G = len(gens)
    edge_tab = np.full((G, emax), E, np.int32)
    link_tab = np.full((G, lmax), NL, np.int32)
    seg_tab = np.full((G, lmax), emax, np.int32)
    src_tab = np.full((G, lmax), E, np.int32)
    for gi, (es, ls) in enumerate(zip(edges, links, strict=True)):
        edge_tab[gi, : len(es)] = es
        link_tab[gi, : len(ls)] = ls
        seg_tab[gi, : len(ls)] = pos[graph.link_out[ls]]
        src_tab[gi, : len(ls)] = graph.link_in[ls]
    return edge_tab, link_tab, seg_tab, src_tab, emax


def plstm_dag(
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
    """pLSTM on a DAG, equal to :func:`augpar.plstm.plstm_dag_reference`; jit-able (the graph
    is static: close over it or mark it static).

    Args:
      q, k, v: per node ``[..., N, DK|DV, J]``.
      S: ``[..., E, JT, JK, JV]`` per edge (node ``edge_src[e]`` -> edge e).
      T: ``[..., NL, JT, JT]`` per line-graph link (``graph.link_in -> graph.link_out``).
      M: ``[..., E, JO, JQ, JT]`` per edge (edge e -> node ``edge_dst[e]``).
      D: ``[..., N, JO, JQ, JK, JV]`` or None.
      graph: a :class:`augpar.plstm.graph.DAG` (built by ``make_dag``, which rejects cycles).
      initial_state: optional ``[..., E, DK, DV, JT]`` added to every edge state.
      scale: read-out scale, default ``DK ** -0.5``.
      return_state: also return all edge states ``[..., E, DK, DV, JT]``.

    Returns:
      ``h [..., N, DV, JO]`` (and the edge states with ``return_state``).
    """
    fn = "plstm_dag"
    if not isinstance(graph, DAG):
        raise ValueError(f"{fn}: graph is a {type(graph).__name__}; allowed: a DAG (make_dag)")
    batch, dims = bind_shapes(
        fn,
        [("q", q, "N DK JQ"), ("k", k, "N DK JK"), ("v", v, "N DV JV"),
         ("S", S, "E JT JK JV"), ("T", T, "NL JT JT"), ("M", M, "E JO JQ JT"),
         ("D", D, "N JO JQ JK JV"), ("initial_state", initial_state, "E DK DV JT")],
    )  # fmt: skip
    check_graph_dims(fn, graph, dims)
    dk, dv, jt, jo = dims["DK"], dims["DV"], dims["JT"], dims["JO"]
    scale = dk**-0.5 if scale is None else scale
    dtype = jnp.result_type(q, k, v, S, T, M, *(() if D is None else (D,)))
    nb = len(batch)
    Bf = int(np.prod(batch, dtype=np.int64)) if batch else 1
    E, N = graph.num_edges, graph.num_nodes

    def lead(a):  # [..., X, r] -> [X, Bf, r]
        a = a.astype(dtype).reshape((Bf,) + a.shape[nb:])
        return jnp.moveaxis(a, 1, 0)

    q_, k_, v_, S_, T_, M_ = (lead(a) for a in (q, k, v, S, T, M))
    h = jnp.zeros((N, Bf, dv, jo), dtype)
    if E:
        src, dst = graph.edge_src, graph.edge_dst
        skv = jnp.einsum("ebijk,ebdj,ebvk->ebdvi", S_, k_[src], v_[src])
        if initial_state is not None:
            skv = skv + lead(initial_state)
        edge_tab, link_tab, seg_tab, src_tab, emax = _schedule(graph)
        zero_state = jnp.zeros((1, Bf, dk, dv, jt), dtype)
        skv_pad = jnp.concatenate([skv, zero_state], 0)
        T_pad = jnp.concatenate([T_, jnp.zeros((1, Bf, jt, jt), dtype)], 0)

        def step(buf, x):
            e_idx, l_idx, seg, s_idx = x
            moved = jnp.einsum("lbij,lbdvj->lbdvi", T_pad[l_idx], buf[s_idx])
            new = jax.ops.segment_sum(moved, seg, num_segments=emax) + skv_pad[e_idx]
            return buf.at[e_idx].set(new), None

        buf0 = jnp.zeros((E + 1, Bf, dk, dv, jt), dtype)
        tabs = tuple(jnp.asarray(t) for t in (edge_tab, link_tab, seg_tab, src_tab))
        buf, _ = jax.lax.scan(step, buf0, tabs)
        states = buf[:E]
        reads = jnp.einsum("ebdj,ebijk,ebdvk->ebvi", q_[dst], M_, states)
        h = h + jax.ops.segment_sum(reads, jnp.asarray(dst), num_segments=N)
    else:
        states = jnp.zeros((0, Bf, dk, dv, jt), dtype)
    if D is not None:
        h = h + jnp.einsum("nbdj,nbijkl,nbdk,nbvl->nbvi", q_, lead(D), k_, v_)
    out = jnp.moveaxis(scale * h, 0, 1).reshape(batch + (N, dv, jo))
    if not return_state:
        return out
    return out, jnp.moveaxis(states, 0, 1).reshape(batch + (E, dk, dv, jt))


def grid_gates_to_dag(gates: Gates2D, layout: GridLayout) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Lays single-orientation 2D gates ``[..., X, Y, ...]`` out on :func:`grid_dag`'s edges
    and links.

    Returns:
      ``(S [..., E, JT, JK, JV], T [..., NL, JT, JT], M [..., E, JO, JQ, JT])``: an r-edge of
      (i, j) carries ``S_r[i, j]`` and is read with ``M_l[i+1, j]``; a d-edge carries
      ``S_d[i, j]`` and is read with ``M_u[i, j+1]``; links take ``T_rl/T_du/T_dl/T_ru``.
    """
    X, Y = layout.shape
    nb = gates.S_r.ndim - 5
    if tuple(gates.S_r.shape[nb : nb + 2]) != (X, Y):
        raise ValueError(
            f"grid_gates_to_dag: gates.S_r has shape {tuple(gates.S_r.shape)}; expected "
            f"[..., {X}, {Y}, JT, JK, JV] for the {X}x{Y} layout"
        )
    at = lambda a, i, j: a[(Ellipsis, i, j) + (slice(None),) * (a.ndim - nb - 2)]  # noqa: E731
    kind, ei, ej = layout.edge_kind, layout.edge_i, layout.edge_j
    is_r = kind == 0
    sel = lambda mask, a: jnp.reshape(  # noqa: E731
        jnp.asarray(mask), (1,) * nb + (-1,) + (1,) * (a.ndim - nb - 1)
    )
    S_r, S_d = at(gates.S_r, ei, ej), at(gates.S_d, ei, ej)
    S = jnp.where(sel(is_r, S_r), S_r, S_d)
    hi, hj = np.where(is_r, ei + 1, ei), np.where(is_r, ej, ej + 1)
    M_l, M_u = at(gates.M_l, hi, hj), at(gates.M_u, hi, hj)
    M = jnp.where(sel(is_r, M_l), M_l, M_u)
    T = jnp.zeros(gates.T_rl.shape[:nb] + (len(layout.link_kind),) + gates.T_rl.shape[-2:])
    T = T.astype(gates.T_rl.dtype)
    for t, name in enumerate(("T_rl", "T_du", "T_dl", "T_ru")):
        mask = layout.link_kind == t
        if not mask.any():
            continue
        arr = getattr(gates, name)
        if arr is None:
            raise ValueError(f"grid_gates_to_dag: the layout uses {name} but gates.{name} is None")
        vals = at(arr, layout.link_i, layout.link_j)
        T = jnp.where(sel(mask, vals), vals, T)
    return S, T, M


def normalize_p_mode(T: Float[Array, "*b NL JT JT"], graph: DAG) -> jax.Array:
    """P-mode normalisation on any DAG: for every incoming edge e,
    ``sum_{links e -> e'} ||T_link||_F <= 1``.

    Each link is divided by ``max(1, sum of the Frobenius norms of the links leaving the same
    incoming edge)`` (Frobenius >= spectral norm, so the induced-norm bound holds for JT > 1);
    groups already within the bound are left unchanged.
    """
    nb = T.ndim - 3
    if T.ndim < 3 or T.shape[nb] != graph.num_links:
        raise ValueError(
            f"normalize_p_mode: T has shape {tuple(T.shape)}; expected [..., "
            f"{graph.num_links}, JT, JT] (one transition per line-graph link)"
        )
    sq = jnp.sum(jnp.square(T), axis=(-2, -1))  # [..., NL]
    norms = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)  # NaN-free gradient
    seg = jnp.asarray(graph.link_in)
    total = jax.ops.segment_sum(jnp.moveaxis(norms, -1, 0), seg, num_segments=graph.num_edges)
    denom = jnp.maximum(1.0, jnp.moveaxis(total[seg], 0, -1))
    return T / denom[..., None, None]
