"""DAG structures for pLSTM on graphs: construction, cycle check, generations, batching by
disjoint union, grid graphs, and multitree pruning (the D-mode requirement).

All of this is jit-free preprocessing on NumPy integer arrays; the arrays become constants
when :func:`augpar.plstm.plstm_dag` is traced.

States live on edges. The line graph has one node per edge and a *link* ``e -> e'`` whenever
``dst[e] == src[e']`` (= node n); the transition of that link is ``T^n_{e'e}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class DAG:
    """A directed acyclic graph with explicit line-graph links.

    Attributes:
      num_nodes: N.
      edge_src, edge_dst: ``int32[E]`` tail and head node of every edge.
      link_in, link_out: ``int32[NL]`` for every line-graph link, the incoming edge ``e``
        (``edge_dst[e] == n``) and the outgoing edge ``e'`` (``edge_src[e'] == n``).
      node_generation: ``int32[N]``: 0 for nodes without incoming edges, else
        1 + the largest generation of a predecessor.
    """

    num_nodes: int
    edge_src: np.ndarray
    edge_dst: np.ndarray
    link_in: np.ndarray
    link_out: np.ndarray
    node_generation: np.ndarray

    @property
    def num_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def num_links(self) -> int:
        return int(self.link_in.shape[0])

    def edge_order(self) -> np.ndarray:
        """A topological order of the line graph (edges sorted by generation of their tail)."""
        return np.argsort(self.node_generation[self.edge_src], kind="stable")


def _generations(num_nodes: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    indeg = np.bincount(dst, minlength=num_nodes)
    out_edges: list[list[int]] = [[] for _ in range(num_nodes)]
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        out_edges[s].append(d)
    gen = np.zeros(num_nodes, np.int32)
    frontier = [n for n in range(num_nodes) if indeg[n] == 0]
    done = 0
    indeg = indeg.copy()
    while frontier:
        nxt = []
        for n in frontier:
            done += 1
            for d in out_edges[n]:
                gen[d] = max(gen[d], gen[n] + 1)
                indeg[d] -= 1
                if indeg[d] == 0:
                    nxt.append(d)
        frontier = nxt
    if done != num_nodes:
        stuck = sorted(int(n) for n in np.nonzero(indeg > 0)[0])[:10]
        raise ValueError(
            f"make_dag: the {len(src)} given edges over {num_nodes} nodes contain a cycle "
            f"(nodes on or behind a cycle include {stuck}); allowed: an acyclic edge list"
        )
    return gen


def make_dag(
    num_nodes: int,
    edges: np.ndarray | Sequence[tuple[int, int]],
    links: np.ndarray | Sequence[tuple[int, int]] | None = None,
) -> DAG:
    """Builds a :class:`DAG` and checks it.

    Args:
      num_nodes: number of nodes N (>= 1).
      edges: ``[E, 2]`` integer pairs ``(src, dst)``; parallel edges are allowed, self-loops
        and cycles are not.
      links: optional ``[NL, 2]`` pairs ``(e_in, e_out)`` of edge indices with
        ``dst[e_in] == src[e_out]``; default: every such pair (the full line graph).

    Raises:
      ValueError: on out-of-range indices, a cycle, or a link whose edges do not meet.
    """
    if not isinstance(num_nodes, int | np.integer) or num_nodes < 1:
        raise ValueError(f"make_dag: num_nodes={num_nodes!r}; allowed: an int >= 1")
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2) if len(edges) else np.zeros((0, 2))
    e = e.astype(np.int32)
    if e.size and (e.min() < 0 or e.max() >= num_nodes):
        raise ValueError(
            f"make_dag: edge endpoints range over [{e.min()}, {e.max()}]; allowed: "
            f"[0, {num_nodes - 1}] for num_nodes={num_nodes}"
        )
    src, dst = e[:, 0].copy(), e[:, 1].copy()
    loops = np.nonzero(src == dst)[0]
    if loops.size:
        raise ValueError(
            f"make_dag: edge {int(loops[0])} is a self-loop on node {int(src[loops[0]])}, "
            "a cycle; allowed: an acyclic edge list"
        )
    gen = _generations(int(num_nodes), src, dst)
    if links is None:
        by_src: list[list[int]] = [[] for _ in range(num_nodes)]
        for idx, s in enumerate(src.tolist()):
            by_src[s].append(idx)
        pairs = [(ei, eo) for ei, d in enumerate(dst.tolist()) for eo in by_src[d]]
        lk = np.asarray(pairs, np.int32).reshape(-1, 2)
    else:
        lk = np.asarray(links, dtype=np.int64).reshape(-1, 2).astype(np.int32)
        if lk.size and (lk.min() < 0 or lk.max() >= len(src)):
            raise ValueError(
                f"make_dag: link edge indices range over [{lk.min()}, {lk.max()}]; allowed: "
                f"[0, {len(src) - 1}]"
            )
        bad = np.nonzero(dst[lk[:, 0]] != src[lk[:, 1]])[0] if lk.size else []
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"make_dag: link {i} = edges ({lk[i, 0]}, {lk[i, 1]}) does not meet at a node "
                f"(dst={dst[lk[i, 0]]}, src={src[lk[i, 1]]}); allowed: dst[e_in] == src[e_out]"
            )
    return DAG(int(num_nodes), src, dst, lk[:, 0].copy(), lk[:, 1].copy(), gen)


def disjoint_union(graphs: Sequence[DAG]) -> tuple[DAG, np.ndarray, np.ndarray, np.ndarray]:
    """Batches graphs as one DAG. Returns ``(dag, node_offsets, edge_offsets, link_offsets)``,
    each offsets array of length ``len(graphs) + 1``; concatenate per-graph inputs along their
    node / edge / link axes in the same order."""
    if not graphs:
        raise ValueError("disjoint_union: got an empty list; allowed: one or more DAGs")
    no = np.cumsum([0] + [g.num_nodes for g in graphs])
    eo = np.cumsum([0] + [g.num_edges for g in graphs])
    lo = np.cumsum([0] + [g.num_links for g in graphs])
    cat = lambda xs: np.concatenate(xs).astype(np.int32)  # noqa: E731
    dag = DAG(
        int(no[-1]),
        cat([g.edge_src + o for g, o in zip(graphs, no, strict=False)]),
        cat([g.edge_dst + o for g, o in zip(graphs, no, strict=False)]),
        cat([g.link_in + o for g, o in zip(graphs, eo, strict=False)]),
        cat([g.link_out + o for g, o in zip(graphs, eo, strict=False)]),
        cat([g.node_generation for g in graphs]),
    )
    return dag, no, eo, lo


def _ancestor_sets(dag: DAG, keep: np.ndarray) -> list[int]:
    """Bitset of line-graph ancestors (including itself) of every edge, over kept links."""
    preds: list[list[int]] = [[] for _ in range(dag.num_edges)]
    for li in np.nonzero(keep)[0].tolist():
        preds[int(dag.link_out[li])].append(int(dag.link_in[li]))
    anc = [0] * dag.num_edges
    for e in dag.edge_order().tolist():
        a = 1 << e
        for p in preds[e]:
            a |= anc[p]
        anc[e] = a
    return anc


def prune_to_multitree(dag: DAG) -> DAG:
    """Drops line-graph links so that at most one directed path joins any two edges.

    Edges are visited in topological order; an incoming link ``p -> e`` is kept (in link
    order) only if ``p``'s ancestor set is disjoint from the ancestors already reaching ``e``.
    This is exactly the multitree condition (two paths ``a -> e`` must first meet at some
    edge through two predecessors sharing the ancestor ``a``). Links whose order is earlier
    win, so put preferred transitions first.

    Returns:
      A new :class:`DAG` with the same nodes and edges and a subset of the links (their
      relative order kept).
    """
    by_out: list[list[int]] = [[] for _ in range(dag.num_edges)]
    for li in range(dag.num_links):
        by_out[int(dag.link_out[li])].append(li)
    anc = [0] * dag.num_edges
    keep = np.zeros(dag.num_links, bool)
    for e in dag.edge_order().tolist():
        acc = 0
        for li in by_out[e]:
            p = int(dag.link_in[li])
            if anc[p] & acc == 0:
                keep[li] = True
                acc |= anc[p]
        anc[e] = acc | (1 << e)
    return DAG(
        dag.num_nodes,
        dag.edge_src,
        dag.edge_dst,
        dag.link_in[keep].copy(),
        dag.link_out[keep].copy(),
        dag.node_generation,
    )


def is_multitree(dag: DAG) -> bool:
    """True iff the line graph has at most one directed path between any two edges."""
    preds: list[list[int]] = [[] for _ in range(dag.num_edges)]
    for li in range(dag.num_links):
        preds[int(dag.link_out[li])].append(int(dag.link_in[li]))
    anc = _ancestor_sets(dag, np.ones(dag.num_links, bool))
    for e in range(dag.num_edges):
        acc = 0
        for p in preds[e]:
            if anc[p] & acc:
                return False
            acc |= anc[p]
    return True


# --- grids -------------------------------------------------------------------------------

_GRID_PATTERNS = {"P": (0, 1, 2, 3), "L": (0, 1, 3), "R": (0, 1, 2)}
_LINK_NAMES = ("T_rl", "T_du", "T_dl", "T_ru")


@dataclasses.dataclass(frozen=True, eq=False)
class GridLayout:
    """Where the edges and links of :func:`grid_dag` sit on the grid.

    Attributes:
      shape: (X, Y).
      edge_kind: ``int32[E]`` 0 for an r-edge ((i, j) -> (i+1, j)), 1 for a d-edge.
      edge_i, edge_j: tail node of every edge.
      link_kind: ``int32[NL]`` index into ``("T_rl", "T_du", "T_dl", "T_ru")``.
      link_i, link_j: the node at which every link turns.
    """

    shape: tuple[int, int]
    edge_kind: np.ndarray
    edge_i: np.ndarray
    edge_j: np.ndarray
    link_kind: np.ndarray
    link_i: np.ndarray
    link_j: np.ndarray


def grid_dag(x: int, y: int, *, pattern: str = "P") -> tuple[DAG, GridLayout]:
    """The X x Y grid of the 2D pLSTM as a DAG (node id ``i * y + j``).

    Args:
      x, y: grid size (>= 1 each).
      pattern: ``"P"`` (all four transitions), ``"L"`` (D-mode chirality L: no ``T_dl``) or
        ``"R"`` (no ``T_ru``).

    Returns:
      ``(dag, layout)``; pass ``layout`` to :func:`grid_gates_to_dag` to lay 2D gates out on
      the DAG's edges and links.
    """
    if pattern not in _GRID_PATTERNS:
        raise ValueError(f"grid_dag: pattern={pattern!r}; allowed: 'P', 'L', 'R'")
    if x < 1 or y < 1:
        raise ValueError(f"grid_dag: grid {x}x{y}; allowed: both sizes >= 1")
    nid = lambda i, j: i * y + j  # noqa: E731
    edges, kind, ei, ej, eid = [], [], [], [], {}
    for i in range(x):
        for j in range(y):
            if i + 1 < x:
                eid[(0, i, j)] = len(edges)
                edges.append((nid(i, j), nid(i + 1, j)))
                kind.append(0), ei.append(i), ej.append(j)
            if j + 1 < y:
                eid[(1, i, j)] = len(edges)
                edges.append((nid(i, j), nid(i, j + 1)))
                kind.append(1), ei.append(i), ej.append(j)
    links, lkind, li, lj = [], [], [], []
    for i in range(x):
        for j in range(y):
            inc = {"l": eid.get((0, i - 1, j)), "u": eid.get((1, i, j - 1))}
            out = {"r": eid.get((0, i, j)), "d": eid.get((1, i, j))}
            for t in _GRID_PATTERNS[pattern]:
                o, n = _LINK_NAMES[t][2], _LINK_NAMES[t][3]
                if inc[n] is not None and out[o] is not None:
                    links.append((inc[n], out[o]))
                    lkind.append(t), li.append(i), lj.append(j)
    dag = make_dag(x * y, np.asarray(edges).reshape(-1, 2), np.asarray(links).reshape(-1, 2))
    a = lambda v: np.asarray(v, np.int32)  # noqa: E731
    return dag, GridLayout((x, y), a(kind), a(ei), a(ej), a(lkind), a(li), a(lj))
