"""plstm_dag (generation-parallel engine) against plstm_dag_reference and plstm_2d; DAG
structure helpers (cycles, disjoint union, multitree pruning, P-mode normalisation)."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augpar.plstm import (
    Gates2D,
    disjoint_union,
    grid_dag,
    grid_gates_to_dag,
    is_multitree,
    make_dag,
    normalize_p_mode,
    plstm_2d,
    plstm_dag,
    plstm_dag_reference,
    prune_to_multitree,
)
from tests.plstm.plstm_testutil import (
    J_BIG,
    J_ONE,
    Keys,
    assert_close,
    assert_tree_close,
    gates_2d,
    nodes,
    normal,
    with_pattern,
)


def dag_inputs(keys, lead, graph, dk, dv, J, dtype, t_scale=0.5):
    q, k, v, D = nodes(keys, lead, (graph.num_nodes,), dk, dv, J, dtype)
    jt = J["JT"]
    S = normal(keys, lead + (graph.num_edges, jt, J["JK"], J["JV"]), dtype)
    T = normal(keys, lead + (graph.num_links, jt, jt), dtype, t_scale)
    M = normal(keys, lead + (graph.num_edges, J["JO"], J["JQ"], jt), dtype)
    return q, k, v, S, T, M, D


@pytest.mark.parametrize("pattern", ["P", "L", "R"])
def test_grid_as_dag_equals_plstm_2d_float64(pattern):
    with jax.enable_x64(True):
        keys = Keys(20)
        B, X, Y = 2, 4, 5
        q, k, v, D = nodes(keys, (B,), (X, Y), 3, 2, J_BIG, jnp.float64)
        g = with_pattern(gates_2d(keys, (B,), X, Y, J_BIG, jnp.float64), pattern)
        dag, layout = grid_dag(X, Y, pattern=pattern)
        S, T, M = grid_gates_to_dag(g, layout)
        flat = lambda a: a.reshape((B, X * Y) + a.shape[3:])  # noqa: E731
        h_dag = jax.jit(functools.partial(plstm_dag, graph=dag))(
            flat(q), flat(k), flat(v), S, T, M, flat(D)
        )
        g1 = Gates2D(*(None if a is None else a[:, None] for a in g))
        h_2d = plstm_2d(q, k, v, g1, D, orientations=(0,), chunk_size=2)
        assert_close(h_dag.reshape(h_2d.shape), h_2d, 1e-10, pattern)


def test_grid_as_dag_gradients_float32():
    """float32, rtol 1e-5: gradients w.r.t. q, k, v, all 2D gates and D agree between the
    DAG engine on the grid graph and the 2D state-passing form."""
    keys = Keys(21)
    B, X, Y = 1, 4, 3
    q, k, v, D = nodes(keys, (B,), (X, Y), 4, 4, J_ONE, jnp.float32)
    g = gates_2d(keys, (B,), X, Y, J_ONE, jnp.float32, t_scale=0.6)
    w = normal(keys, (B, X, Y, 4, 1), jnp.float32)
    dag, layout = grid_dag(X, Y)
    flat = lambda a: a.reshape((B, X * Y) + a.shape[3:])  # noqa: E731

    def loss_dag(a):
        q, k, v, g, D = a
        S, T, M = grid_gates_to_dag(g, layout)
        h = plstm_dag(flat(q), flat(k), flat(v), S, T, M, flat(D), dag)
        return jnp.sum(w * h.reshape(w.shape))

    def loss_2d(a):
        q, k, v, g, D = a
        g1 = Gates2D(*(x[:, None] for x in g))
        return jnp.sum(w * plstm_2d(q, k, v, g1, D, orientations=(0,), chunk_size=2))

    args = (q, k, v, g, D)
    v1, g_dag = jax.jit(jax.value_and_grad(loss_dag))(args)
    v2, g_2d = jax.jit(jax.value_and_grad(loss_2d))(args)
    assert_close(v1, v2, 1e-5)
    assert_tree_close(g_dag, g_2d, 1e-5, "grads")


@st.composite
def random_dags(draw, max_nodes=7):
    n = draw(st.integers(1, max_nodes))
    perm = draw(st.permutations(range(n)))
    pairs = [(perm[i], perm[j]) for i in range(n) for j in range(i + 1, n)]
    picked = draw(st.lists(st.sampled_from(pairs), max_size=12)) if pairs else []
    graph = make_dag(n, np.asarray(picked, np.int64).reshape(-1, 2))
    keep = draw(st.lists(st.booleans(), min_size=graph.num_links, max_size=graph.num_links))
    links = np.stack([graph.link_in, graph.link_out], 1)[np.asarray(keep, bool)]
    return make_dag(n, np.asarray(picked, np.int64).reshape(-1, 2), links.reshape(-1, 2))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_dags(), seed=st.integers(0, 2**16))
def test_random_dags_engine_equals_reference_float64(graph, seed):
    """Random DAGs (parallel edges, random subsets of line-graph links, any node order),
    all J > 1, with injected edge states; values and all edge states to 1e-10."""
    with jax.enable_x64(True):
        keys = Keys(seed)
        args = dag_inputs(keys, (2,), graph, 3, 2, J_BIG, jnp.float64)
        init = normal(keys, (2, graph.num_edges, 3, 2, J_BIG["JT"]), jnp.float64)
        f = jax.jit(functools.partial(plstm_dag, graph=graph, return_state=True))
        h, states = f(*args, initial_state=init)
        h_ref, s_ref = plstm_dag_reference(*args, graph, initial_state=init, return_state=True)
        assert_close(h, h_ref, 1e-10, "h")
        assert_close(states, s_ref, 1e-10, "states")


def test_fixed_dag_gradients_float32():
    """float32, rtol 1e-5: gradients of the engine equal those of the reference on a DAG
    with parallel edges, a node of in-degree 3 and two sources."""
    edges = [(0, 2), (1, 2), (2, 3), (2, 3), (1, 4), (3, 4), (0, 4), (4, 5), (3, 5)]
    graph = make_dag(6, edges)
    keys = Keys(22)
    args = dag_inputs(keys, (2,), graph, 4, 3, J_ONE, jnp.float32)
    w = normal(keys, (2, 6, 3, 1), jnp.float32)

    def loss(fn, a):
        return jnp.sum(w * fn(*a, graph))

    v1, g1 = jax.jit(jax.value_and_grad(functools.partial(loss, plstm_dag)))(args)
    v2, g2 = jax.jit(jax.value_and_grad(functools.partial(loss, plstm_dag_reference)))(args)
    assert_close(v1, v2, 1e-5)
    assert_tree_close(g1, g2, 1e-5, "grads")


def test_disjoint_union_batches_graphs():
    with jax.enable_x64(True):
        g1 = make_dag(3, [(0, 1), (1, 2), (0, 2)])
        g2 = make_dag(4, [(3, 2), (2, 1), (1, 0), (3, 0)])
        keys = Keys(23)
        a1 = dag_inputs(keys, (), g1, 2, 2, J_ONE, jnp.float64)
        a2 = dag_inputs(keys, (), g2, 2, 2, J_ONE, jnp.float64)
        union, no, eo, lo = disjoint_union([g1, g2])
        assert list(no) == [0, 3, 7] and union.num_links == g1.num_links + g2.num_links
        cat = [jnp.concatenate([x, y], 0) for x, y in zip(a1, a2, strict=True)]
        h = plstm_dag(*cat, union)
        assert_close(h[:3], plstm_dag(*a1, g1), 1e-12)
        assert_close(h[3:], plstm_dag(*a2, g2), 1e-12)


def test_errors_name_what_was_given():
    with pytest.raises(ValueError, match=r"3 given edges over 3 nodes contain a cycle"):
        make_dag(3, [(0, 1), (1, 2), (2, 0)])
    with pytest.raises(ValueError, match=r"self-loop on node 1"):
        make_dag(2, [(0, 1), (1, 1)])
    with pytest.raises(ValueError, match=r"range over \[0, 5\].*\[0, 2\]"):
        make_dag(3, [(0, 5)])
    with pytest.raises(ValueError, match=r"does not meet at a node"):
        make_dag(3, [(0, 1), (0, 2)], links=[(0, 1)])
    graph = make_dag(3, [(0, 1), (1, 2)])
    args = list(dag_inputs(Keys(24), (), graph, 2, 2, J_ONE, jnp.float32))
    args[3], args[5] = jnp.zeros((5, 1, 1, 1)), jnp.zeros((5, 1, 1, 1))
    with pytest.raises(ValueError, match=r"E axis has size 5, but the graph has 2 edges"):
        plstm_dag(*args, graph)


def _count_paths(graph):
    """Brute-force number of directed line-graph paths between every ordered edge pair."""
    E = graph.num_edges
    A = np.zeros((E, E), np.int64)
    for a, b in zip(graph.link_in, graph.link_out, strict=True):
        A[b, a] += 1
    total, power = np.zeros((E, E), np.int64), np.eye(E, dtype=np.int64)
    for _ in range(E):
        power = A @ power
        total += power
    return total


@settings(max_examples=40, deadline=None)
@given(graph=random_dags(max_nodes=8))
def test_prune_to_multitree_property(graph):
    pruned = prune_to_multitree(graph)
    assert _count_paths(pruned).max(initial=0) <= 1
    assert is_multitree(pruned)
    assert is_multitree(graph) == (_count_paths(graph).max(initial=0) <= 1)
    kept = set(zip(pruned.link_in.tolist(), pruned.link_out.tolist(), strict=True))
    assert kept <= set(zip(graph.link_in.tolist(), graph.link_out.tolist(), strict=True))
    if is_multitree(graph):
        assert pruned.num_links == graph.num_links


def test_grid_patterns_and_pruning():
    """The full grid line graph is not a multitree; the D-mode chiralities L and R are, and
    pruning keeps all their links; pruning the full grid yields a multitree."""
    full, _ = grid_dag(5, 6, pattern="P")
    assert not is_multitree(full)
    assert is_multitree(prune_to_multitree(full))
    for pattern in ("L", "R"):
        dag, _ = grid_dag(5, 6, pattern=pattern)
        assert is_multitree(dag)
        assert prune_to_multitree(dag).num_links == dag.num_links


def test_p_mode_normalisation_bounds_path_weights():
    """After normalize_p_mode, sum over outgoing links of ||T|| <= 1 per incoming edge, and
    the path-summed weight from any source node is <= max|M| * max_n sum_out |S| (mass
    on an antichain of edges never exceeds the emitted mass)."""
    rng = np.random.default_rng(25)
    n = 40
    edges = [(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4)) if rng.random() < 0.8]
    graph = make_dag(n, edges)
    T = jnp.asarray(2.0 * rng.random((1, graph.num_links, 1, 1)), jnp.float32)
    Tn = normalize_p_mode(T, graph)
    sums = np.zeros(graph.num_edges)
    np.add.at(sums, graph.link_in, np.abs(np.asarray(Tn)[0, :, 0, 0]))
    assert sums.max() <= 1 + 1e-6
    small = T * 0.1 / 4
    np.testing.assert_array_equal(np.asarray(normalize_p_mode(small, graph)), np.asarray(small))
    S = jnp.asarray(rng.random((1, graph.num_edges, 1, 1, 1)), jnp.float32)
    M = jnp.asarray(rng.random((1, graph.num_edges, 1, 1, 1)), jnp.float32)
    one = jnp.ones((1, n, 1, 1), jnp.float32)
    out_mass = np.zeros(n)
    np.add.at(out_mass, graph.edge_src, np.asarray(S)[0, :, 0, 0, 0])
    bound = float(M.max()) * out_mass.max()
    for src in (0, 1, 5):
        k = jnp.zeros_like(one).at[:, src].set(1.0)
        h = np.asarray(plstm_dag(one, k, one, S, Tn, M, None, graph, scale=1.0))
        assert np.abs(h).max() <= bound * (1 + 1e-5)
        h_raw = np.asarray(plstm_dag(one, k, one, S, T * 4, M, None, graph, scale=1.0))
        if src == 0:
            assert np.abs(h_raw).max() > bound  # the unnormalised gates do blow past it


def test_generations_and_order():
    graph = make_dag(5, [(4, 3), (3, 2), (2, 1), (1, 0), (4, 0)])
    assert graph.node_generation.tolist() == [4, 3, 2, 1, 0]
    order = graph.edge_order().tolist()
    pos = {e: i for i, e in enumerate(order)}
    for a, b in itertools.product(range(graph.num_edges), repeat=2):
        if graph.edge_dst[a] == graph.edge_src[b]:
            assert pos[a] < pos[b]
