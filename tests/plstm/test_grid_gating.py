"""plstm_2d_masked (path-sum G by dynamic programming + masked attention) against the node
recurrence plstm_2d_reference: values and gradients, every transition pattern, odd sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augpar.plstm.gates import p_mode
from augpar.plstm.grid_gating import gating_matrix_2d, plstm_2d_masked
from tests.plstm.plstm_testutil import (
    J_BIG,
    J_ONE,
    Keys,
    assert_close,
    assert_tree_close,
    fused_reference_2d,
    gates_2d,
    nodes,
    with_pattern,
)


@pytest.mark.parametrize(
    ("pattern", "shape"), [("P", (5, 4)), ("L", (5, 4)), ("R", (3, 5)), ("P", (1, 6))]
)
def test_masked_equals_reference_float64(pattern, shape):
    """Four orientations fused, odd / degenerate / square grids: agreement to 1e-10."""
    with jax.enable_x64(True):
        keys = Keys(30)
        X, Y = shape
        q, k, v, D = nodes(keys, (2,), (X, Y), 3, 2, J_ONE, jnp.float64)
        g = with_pattern(gates_2d(keys, (2, 4), X, Y, J_ONE, jnp.float64), pattern)
        h = jax.jit(plstm_2d_masked)(q, k, v, g, D)
        assert_close(h, fused_reference_2d(q, k, v, g, D, (0, 1, 2, 3)), 1e-10, pattern)


def test_masked_orientation_subset_and_no_direct_term():
    with jax.enable_x64(True):
        keys = Keys(31)
        q, k, v, _ = nodes(keys, (3,), (5, 3), 2, 4, J_ONE, jnp.float64)
        g = gates_2d(keys, (3, 2), 5, 3, J_ONE, jnp.float64)
        h = plstm_2d_masked(q, k, v, g, None, orientations=(3, 1), scale=0.7)
        ref = fused_reference_2d(q, k, v, g, None, (3, 1))
        assert_close(h, 0.7 * ref * np.sqrt(2), 1e-10)


@pytest.mark.parametrize("pattern", ["R"])  # one pattern (slow reference grad); values: all
def test_masked_float32_values_and_gradients(pattern):
    """float32, rtol 1e-5 (atol 1e-5 * max|ref|), gradients w.r.t. q, k, v, every gate and D."""
    keys = Keys(32)
    B, X, Y = 2, 5, 4
    q, k, v, D = nodes(keys, (B,), (X, Y), 4, 4, J_ONE, jnp.float32)
    g = with_pattern(gates_2d(keys, (B, 4), X, Y, J_ONE, jnp.float32, t_scale=0.6), pattern)
    w = jnp.asarray(np.random.default_rng(0).standard_normal((B, X, Y, 4, 1)), jnp.float32)
    args = (q, k, v, g, D)

    def loss_ref(a):
        return jnp.sum(w * fused_reference_2d(*a, (0, 1, 2, 3)))

    def loss(a):
        return jnp.sum(w * plstm_2d_masked(*a))

    v_ref, g_ref = jax.jit(jax.value_and_grad(loss_ref))(args)
    val, grad = jax.jit(jax.value_and_grad(loss))(args)
    assert_close(val, v_ref, 1e-5, "loss")
    assert_tree_close(grad, g_ref, 1e-5, "grads")


def test_gating_matrix_is_causal_and_bounded_under_p_mode():
    """P-mode on a 24 x 24 grid: G is zero outside monotone paths and on the diagonal, and
    |G| <= max|M| * max|S| everywhere, while distant entries stay positive (no underflow)."""
    X = Y = 24
    r = np.random.default_rng(3)
    logits = [jnp.asarray(r.normal(size=(X, Y)) * 2, jnp.float32) for _ in range(4)]
    logits[1] = logits[1] + 3.0  # tau near 1: long-range propagation
    g = p_mode(*logits)
    sq = [None if a is None else a.reshape(X, Y) for a in g]
    G = np.asarray(gating_matrix_2d(*sq))
    i, j = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    reach = (i[:, :, None, None] >= i[None, None]) & (j[:, :, None, None] >= j[None, None])
    reach &= ~((i[:, :, None, None] == i[None, None]) & (j[:, :, None, None] == j[None, None]))
    assert np.all(G[~reach] == 0.0)
    bound = float(jnp.max(jnp.abs(g.M_l))) * float(jnp.max(jnp.abs(g.S_r) + jnp.abs(g.S_d)))
    assert np.max(np.abs(G)) <= bound * (1 + 1e-6)
    assert G[X - 1, Y - 1, 0, 0] > 0.0


def test_masked_rejects_bad_input():
    keys = Keys(33)
    q, k, v, D = nodes(keys, (1,), (3, 3), 2, 2, J_BIG, jnp.float32)
    g = gates_2d(keys, (1, 4), 3, 3, J_BIG, jnp.float32)
    with pytest.raises(ValueError, match="DK, 1"):
        plstm_2d_masked(q, k, v, g, D)
    q, k, v, D = nodes(keys, (1,), (3, 3), 2, 2, J_ONE, jnp.float32)
    with pytest.raises(ValueError, match="J = 1"):
        plstm_2d_masked(q, k, v, g, D)
    g = gates_2d(keys, (1, 4), 3, 3, J_ONE, jnp.float32)
    with pytest.raises(ValueError, match="orientations"):
        plstm_2d_masked(q, k, v, g, D, orientations=(0, 0, 1, 2))
    with pytest.raises(ValueError, match="expected"):
        plstm_2d_masked(q, k, v, g, D, orientations=(0, 1))
