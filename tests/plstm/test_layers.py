"""pLSTM NNX layers: shapes, gate layout and bounds, jit without retrace, form equivalence."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from augpar.plstm.gates import Gates2D
from augpar.plstm.layers import (
    PDBlock,
    PLSTM1DLayer,
    PLSTM2DLayer,
    PLSTMBlock,
    corner_pool,
    gate_logits_2d,
    mlp_width,
    multihead_rms_norm,
)
from augpar.plstm.reference import plstm_1d_reference
from augpar.plstm.scan2d import plstm_2d


def _randomize_gates(layer, key, std=2.0):
    """Input-dependent gates with large weights, to stress the bounds."""
    k = layer.gates.kernel
    k[...] = std * jax.random.normal(key, k.shape)


def test_1d_layer_shape_and_reference_wiring():
    layer = PLSTM1DLayer(16, num_heads=2, chunk_size=4, rngs=nnx.Rngs(0))
    _randomize_gates(layer, jax.random.key(1), std=0.5)
    x = jax.random.normal(jax.random.key(2), (3, 11, 16))
    y = layer(x)
    assert y.shape == (3, 11, 16) and bool(jnp.all(jnp.isfinite(y)))
    # Same layer with the chunkwise scan swapped for the reference recurrence.
    import augpar.plstm.layers as L

    orig = L.plstm_1d
    try:
        L.plstm_1d = lambda *a, chunk_size, **kw: plstm_1d_reference(*a, **kw)
        y_ref = layer(x)
    finally:
        L.plstm_1d = orig
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("mode", ["P", "D"])
def test_2d_layer_shapes_and_dense_equals_state_passing(mode):
    kw = dict(num_heads=2, mode=mode, chunk_size=2)
    dense = PLSTM2DLayer(16, method="dense", rngs=nnx.Rngs(0), **kw)
    sp = PLSTM2DLayer(16, method="state_passing", rngs=nnx.Rngs(0), **kw)
    _randomize_gates(dense, jax.random.key(1), std=0.5)
    _randomize_gates(sp, jax.random.key(1), std=0.5)
    x = jax.random.normal(jax.random.key(2), (2, 3, 6, 16))  # non-square, not powers of 2
    apply = nnx.jit(lambda layer, x: layer(x))
    y = apply(dense, x)
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
    # float32; rtol 1e-4 covers reassociation between one dense chunk and 2x2 leaf chunks.
    np.testing.assert_allclose(np.asarray(y), np.asarray(apply(sp, x)), rtol=1e-4, atol=1e-5)
    masked = PLSTM2DLayer(16, method="masked", rngs=nnx.Rngs(0), **kw)
    _randomize_gates(masked, jax.random.key(1), std=0.5)
    np.testing.assert_allclose(np.asarray(y), np.asarray(apply(masked, x)), rtol=1e-4, atol=1e-5)


def test_gate_logits_layout():
    G, n_or, H = 3, 4, 2
    proj = jnp.arange(G * n_or * H, dtype=jnp.float32)[None, None, None] * jnp.ones((2, 3, 5, 1))
    z = gate_logits_2d(proj, G, n_or)
    assert z.shape == (G, 2, H, n_or, 3, 5)
    for g in range(G):
        for o in range(n_or):
            for h in range(H):
                assert float(z[g, 1, h, o, 2, 4]) == g * n_or * H + o * H + h
    with pytest.raises(ValueError, match="not a multiple"):
        gate_logits_2d(proj[..., :5], G, n_or)


def test_p_mode_layer_gates_satisfy_the_bound():
    layer = PLSTM2DLayer(16, num_heads=2, mode="P", rngs=nnx.Rngs(0))
    _randomize_gates(layer, jax.random.key(3), std=5.0)
    g = layer.make_gates(jax.random.normal(jax.random.key(4), (2, 7, 9, 16)))
    assert g.S_r.shape == (2, 2, 4, 7, 9, 1, 1, 1) and g.T_rl.shape == (2, 2, 4, 7, 9, 1, 1)
    # Per incoming edge: sum over outgoing |T| <= 1 (l -> r, d and u -> r, d); sources too.
    assert float(jnp.max(jnp.abs(g.T_rl) + jnp.abs(g.T_dl))) <= 1.0 + 1e-6
    assert float(jnp.max(jnp.abs(g.T_ru) + jnp.abs(g.T_du))) <= 1.0 + 1e-6
    assert float(jnp.max(jnp.abs(g.S_r) + jnp.abs(g.S_d))) <= 1.0 + 1e-6
    # The direction alpha starts spread over heads (bias linspace(-2, 2)), not all equal.
    fresh = PLSTM2DLayer(16, num_heads=2, mode="P", rngs=nnx.Rngs(0)).make_gates(
        jnp.zeros((1, 2, 2, 16))
    )
    assert float(jnp.abs(fresh.T_rl[0, 0] - fresh.T_rl[0, 1]).max()) > 0.1


def test_d_mode_layer_gates_are_a_multitree_pattern():
    layer = PLSTM2DLayer(16, num_heads=2, mode="D", chirality="L", rngs=nnx.Rngs(0))
    _randomize_gates(layer, jax.random.key(3), std=5.0)
    g = layer.make_gates(jax.random.normal(jax.random.key(4), (2, 5, 5, 16)))
    assert g.T_dl is None and g.T_ru is not None
    for t in (g.T_rl, g.T_du, g.T_ru):
        assert float(jnp.max(jnp.abs(t))) <= 1.0


def _gating_matrix(gates: Gates2D, X: int, Y: int, orientation: int) -> np.ndarray:
    """G[n, n'] of one orientation for batch 0 / head 0, read off with DK = 1, q = k = 1 and
    one-hot values (h[n, v=n'] = G[n, n'])."""
    sel = lambda a: None if a is None else a[0, 0, orientation : orientation + 1]  # noqa: E731
    g1 = Gates2D(*(sel(a) for a in gates))
    N = X * Y
    q = jnp.ones((X, Y, 1, 1))
    v = jnp.eye(N).reshape(X, Y, N, 1)
    run = jax.jit(lambda q, v, g: plstm_2d(q, q, v, g, None, orientations=(orientation,)))
    h = run(q, v, g1)
    return np.asarray(h[..., 0]).reshape(N, N)


@pytest.mark.parametrize("mode", ["P", "D"])
def test_layer_path_weights_bounded_on_a_large_grid(mode):
    X, Y = 8, 12
    layer = PLSTM2DLayer(8, num_heads=1, mode=mode, transition_bias=6.0, rngs=nnx.Rngs(0))
    _randomize_gates(layer, jax.random.key(5), std=1.0)
    gates = layer.make_gates(jax.random.normal(jax.random.key(6), (1, X, Y, 8)))
    for o in (0, 3):
        G = _gating_matrix(gates, X, Y, o)
        sl = slice(o, o + 1)
        bound = float(
            jnp.max(jnp.maximum(gates.M_l[0, 0, sl], gates.M_u[0, 0, sl]))
            * jnp.max(jnp.maximum(gates.S_r[0, 0, sl], gates.S_d[0, 0, sl]))
        )
        assert np.abs(G).max() <= bound * (1 + 1e-5), (mode, o, np.abs(G).max(), bound)
        # No vanishing to exactly zero at distance: the far corner still hears the near one.
        first, last = (0, X * Y - 1) if o == 0 else (X * Y - 1, 0)  # o=3 runs backwards
        assert abs(G[last, first]) > 0.0, (mode, o)


def test_blocks_and_pooling_shapes():
    x = jax.random.normal(jax.random.key(0), (2, 4, 6, 32))
    pd = PDBlock(32, num_heads=4, mlp_ratio=2.0, mlp_multiple=16, rngs=nnx.Rngs(0))
    assert pd.p.mixer.mode == "P" and pd.d.mixer.mode == "D"  # (run in the jit test below)
    assert pd.p.mlp.up.out_features == 64
    seq = PLSTMBlock(32, num_heads=2, kind="1d", chunk_size=4, rngs=nnx.Rngs(0))
    assert nnx.jit(lambda m, x: m(x))(seq, x[:, 0]).shape == (2, 6, 32)
    pooled = corner_pool(x)
    np.testing.assert_array_equal(np.asarray(pooled[:, 32:64]), np.asarray(x[:, 0, -1]))
    assert pooled.shape == (2, 128)
    assert mlp_width(192, 4.0, 64) == 768 and mlp_width(100, 4.0, 64) == 448


def test_multihead_rms_norm_per_head():
    x = jnp.stack([jnp.full((4,), 3.0), jnp.full((4,), 0.1)])[None]  # heads with very
    y = multihead_rms_norm(x, jnp.ones((2, 4)))  # different scales both come out at RMS 1
    np.testing.assert_allclose(np.asarray(jnp.sqrt(jnp.mean(y**2, -1))), 1.0, rtol=1e-3)


def test_jit_does_not_retrace_across_calls():
    layer = PDBlock(16, num_heads=2, mlp_ratio=2.0, mlp_multiple=16, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(state, x):
        return nnx.merge(graphdef, state)(x)

    chex.clear_trace_counter()
    x = jnp.ones((2, 4, 4, 16))
    y1 = apply(state, x)
    state2 = jax.tree.map(lambda a: a * 1.01, state)  # new parameter values, same structure
    y2 = apply(state2, x + 1.0)
    assert y1.shape == y2.shape == x.shape
    assert not np.allclose(np.asarray(y1), np.asarray(y2))
    with pytest.raises(AssertionError, match="traced > 1 times"):
        apply(state, jnp.ones((2, 4, 8, 16)))  # a new grid size is a new trace


def test_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="mode='X'.*allowed"):
        PLSTM2DLayer(16, num_heads=2, mode="X", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="method='fast'.*allowed"):
        PLSTM2DLayer(16, num_heads=2, method="fast", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dim=10, num_heads=3"):
        PLSTM1DLayer(10, num_heads=3, rngs=nnx.Rngs(0))
    layer = PLSTM2DLayer(16, num_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"expected \[B, X, Y, 16\]"):
        layer(jnp.ones((2, 4, 4, 8)))
