"""plstm_2d (dense and state-passing, fused orientations) against plstm_2d_reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augpar.plstm import Gates2D, d_mode, p_mode, plstm_2d, plstm_2d_reference
from tests.plstm.plstm_testutil import (
    J_BIG,
    J_ONE,
    Keys,
    assert_close,
    assert_tree_close,
    flip_grid,
    fused_reference_2d,
    gates_2d,
    nodes,
    normal,
    with_pattern,
)

LEVELS = [("dense", 1), ("state_passing", 1), ("state_passing", 2), ("state_passing", 4)]


def _single(g: Gates2D) -> Gates2D:
    """Adds the orientation axis of size 1 that plstm_2d expects."""
    return Gates2D(*(None if a is None else a[:, None] for a in g))


def _all_levels(q, k, v, g, D, il, it):
    return [
        plstm_2d(q, k, v, g, D, orientations=(0,), method=method, chunk_size=chunk,
                 initial_left=il, initial_top=it, return_state=True)
        for method, chunk in LEVELS
    ]  # fmt: skip


_all_levels_jit = jax.jit(_all_levels)


def _zeros_for_none(g: Gates2D) -> Gates2D:
    return g._replace(
        **{n: jnp.zeros_like(g.T_rl) for n in ("T_dl", "T_ru") if g._asdict()[n] is None}
    )


@pytest.mark.parametrize("pattern", ["P", "L", "R"])
def test_every_level_every_pattern_float64(pattern):
    """Non-square odd grid 5x6, all J > 1, initial and final border states: every leaf
    level (chunk 1, 2, 4 and the dense single chunk) equals the node recurrence to 1e-10.
    (The dropped turn is passed as zeros here so that the patterns share one compile;
    ``test_none_turn_equals_zero_turn`` checks that None means zero.)"""
    with jax.enable_x64(True):
        keys = Keys(10)
        B, X, Y, dk, dv = 2, 5, 6, 3, 2
        q, k, v, D = nodes(keys, (B,), (X, Y), dk, dv, J_BIG, jnp.float64)
        g = with_pattern(gates_2d(keys, (B,), X, Y, J_BIG, jnp.float64), pattern)
        il = normal(keys, (B, 1, Y, dk, dv, J_BIG["JT"]), jnp.float64)
        it = normal(keys, (B, 1, X, dk, dv, J_BIG["JT"]), jnp.float64)
        h_ref, (r_ref, b_ref) = plstm_2d_reference(
            q, k, v, g, D, initial_left=il[:, 0], initial_top=it[:, 0], return_state=True
        )
        outs = _all_levels_jit(q, k, v, _single(_zeros_for_none(g)), D, il, it)
        for (method, chunk), (h, (r, b)) in zip(LEVELS, outs, strict=True):
            what = f"{pattern} {method} chunk={chunk}"
            assert_close(h, h_ref, 1e-10, what)
            assert_close(r[:, 0], r_ref, 1e-10, what + " right border")
            assert_close(b[:, 0], b_ref, 1e-10, what + " bottom border")


def test_none_turn_equals_zero_turn():
    keys = Keys(17)
    q, k, v, D = nodes(keys, (1,), (4, 3), 2, 2, J_ONE, jnp.float32)
    g = _single(gates_2d(keys, (1,), 4, 3, J_ONE, jnp.float32))
    f = jax.jit(functools.partial(plstm_2d, orientations=(0,), chunk_size=2))
    for name in ("T_dl", "T_ru"):
        h_none = f(q, k, v, g._replace(**{name: None}), D)
        h_zero = f(q, k, v, g._replace(**{name: jnp.zeros_like(g.T_rl)}), D)
        np.testing.assert_array_equal(np.asarray(h_none), np.asarray(h_zero))
        assert not np.allclose(np.asarray(h_none), np.asarray(f(q, k, v, g, D)))


@pytest.mark.parametrize("method,chunk", [("dense", 1), ("state_passing", 2)])
def test_fused_four_directions_equal_sum_of_flipped_float64(method, chunk):
    with jax.enable_x64(True):
        keys = Keys(11)
        B, X, Y = 2, 3, 5
        q, k, v, D = nodes(keys, (B,), (X, Y), 3, 2, J_BIG, jnp.float64)
        g4 = gates_2d(keys, (B, 4), X, Y, J_BIG, jnp.float64)
        ref = fused_reference_2d(q, k, v, g4, D)
        f = functools.partial(plstm_2d, method=method, chunk_size=chunk)
        assert_close(jax.jit(f)(q, k, v, g4, D), ref, 1e-10, method)


def test_subset_of_orientations_in_given_order():
    """orientations=(3, 1): gate o belongs to orientations[o], D counted once."""
    with jax.enable_x64(True):
        keys = Keys(12)
        q, k, v, D = nodes(keys, (1,), (3, 4), 2, 2, J_ONE, jnp.float64)
        g = gates_2d(keys, (1, 2), 3, 4, J_ONE, jnp.float64)
        ref = 0.0
        for i, o in enumerate((3, 1)):
            go = Gates2D(*(flip_grid(a[:, i], o, 1) for a in g))
            fl = functools.partial(flip_grid, o=o, ax=1)
            ref = ref + fl(plstm_2d_reference(fl(q), fl(k), fl(v), go, fl(D) if i == 0 else None))
        f = jax.jit(functools.partial(plstm_2d, orientations=(3, 1), chunk_size=2))
        assert_close(f(q, k, v, g, D), ref, 1e-10)


def test_float32_values_and_gradients():
    """float32, rtol 1e-5 (atol 1e-5 * max|ref|), grid 5x3 with all four transitions: state
    passing (chunk 2, 3x2 chunks, padded) and dense, values and gradients w.r.t. q, k, v,
    every gate and D."""
    keys = Keys(13)
    B, X, Y, dk, dv = 2, 5, 3, 4, 4
    q, k, v, D = nodes(keys, (B,), (X, Y), dk, dv, J_ONE, jnp.float32)
    g = gates_2d(keys, (B,), X, Y, J_ONE, jnp.float32, t_scale=0.6)
    w = normal(keys, (B, X, Y, dv, 1), jnp.float32)
    args = (q, k, v, g, D)

    def loss_ref(a):
        return jnp.sum(w * plstm_2d_reference(*a))

    v_ref, g_ref = jax.jit(jax.value_and_grad(loss_ref))(args)
    for method in ("state_passing", "dense"):

        def loss(a, method=method):
            q, k, v, g, D = a
            return jnp.sum(w * plstm_2d(q, k, v, _single(g), D, orientations=(0,),
                                        method=method, chunk_size=2))  # fmt: skip

        val, grad = jax.jit(jax.value_and_grad(loss))(args)
        assert_close(val, v_ref, 1e-5, method)
        assert_tree_close(grad, g_ref, 1e-5, method + " grads")


def test_remat_same_values_and_gradients():
    keys = Keys(14)
    q, k, v, D = nodes(keys, (1,), (5, 4), 3, 3, J_ONE, jnp.float32)
    g = gates_2d(keys, (1, 2), 5, 4, J_ONE, jnp.float32)

    def loss(remat):
        return lambda a: jnp.sum(
            jnp.sin(plstm_2d(*a, D, orientations=(0, 3), chunk_size=2, remat=remat))
        )

    g0 = jax.jit(jax.grad(loss(False)))((q, k, v, g))
    g1 = jax.jit(jax.grad(loss(True)))((q, k, v, g))
    assert_tree_close(g1, g0, 1e-5, "remat grads")


@jax.jit
def _corner_weights(gates: Gates2D):
    n = gates.S_r.shape[1]
    one = jnp.ones((1, n, n, 1, 1), jnp.float32)
    k = jnp.zeros_like(one).at[:, 0, 0].set(1.0)
    h = plstm_2d(one, k, one, _single(gates), None, orientations=(0,), chunk_size=8, scale=1.0)
    return h[0, :, :, 0, 0]


def _path_weights_from_corner(gates: Gates2D, n: int):
    """G[(i, j), (0, 0)] for all (i, j) of an n x n grid: a unit k v at the corner only,
    DK = DV = 1, q = 1, scale 1, no D. Uses the state-passing form (8x8 leaf chunks).
    A dropped turn is passed as zeros (one compile for all gate sets)."""
    return np.asarray(_corner_weights(_zeros_for_none(gates)))


@pytest.mark.slow
def test_p_and_d_mode_path_weights_bounded_on_large_grid():
    """128x128: under P-mode, |G| <= max|M| * max_n(|S_r| + |S_d|) (mass conservation; the
    two halves of one source may meet again); under D-mode (multitree), |G| <= max|M| max|S|.
    Neither vanishes to exactly 0 at the far corner (decays near 1 chosen so float32 can
    hold it). Unconstrained gates blow up on the same grid, so the check has teeth."""
    n = 128
    rng = np.random.default_rng(15)
    lg = lambda mean=0.0: jnp.asarray(mean + rng.standard_normal((1, n, n)), jnp.float32)  # noqa: E731
    gp = p_mode(lg(), lg(6.0), lg(), lg())
    Gp = _path_weights_from_corner(gp, n)
    bound_p = float(jnp.max(jnp.abs(gp.M_l))) * float(jnp.max(jnp.abs(gp.S_r) + jnp.abs(gp.S_d)))
    assert np.all(np.isfinite(Gp)) and np.abs(Gp).max() <= bound_p * (1 + 1e-5)
    assert Gp[-1, -1] > 0.0

    gd = d_mode(lg(), lg(), lg(4.0), lg(4.0), lg(4.0), lg(), lg(), chirality="L")
    Gd = _path_weights_from_corner(gd, n)
    s_max = max(float(jnp.max(jnp.abs(gd.S_r))), float(jnp.max(jnp.abs(gd.S_d))))
    m_max = max(float(jnp.max(jnp.abs(gd.M_l))), float(jnp.max(jnp.abs(gd.M_u))))
    assert np.all(np.isfinite(Gd)) and np.abs(Gd).max() <= m_max * s_max * (1 + 1e-5)
    assert Gd[-1, -1] != 0.0

    t = jnp.full((1, n, n, 1, 1), 0.9, jnp.float32)
    s = jnp.ones((1, n, n, 1, 1, 1), jnp.float32)
    Gu = _path_weights_from_corner(Gates2D(s, s, t, t, t, t, s, s), n)
    assert not np.all(np.abs(Gu) <= 1.0)


def test_errors_name_what_was_given():
    keys = Keys(16)
    q, k, v, D = nodes(keys, (1,), (3, 4), 2, 2, J_ONE, jnp.float32)
    g = gates_2d(keys, (1, 4), 3, 4, J_ONE, jnp.float32)
    with pytest.raises(ValueError, match=r"method='scan'.*dense.*state_passing"):
        plstm_2d(q, k, v, g, D, method="scan")
    with pytest.raises(ValueError, match=r"orientation axis of size 4.*orientations=\(0,\)"):
        plstm_2d(q, k, v, g, D, orientations=(0,))
    with pytest.raises(ValueError, match=r"orientations=\(0, 0, 1, 2\)"):
        plstm_2d(q, k, v, g, D, orientations=(0, 0, 1, 2))
    with pytest.raises(ValueError, match=r"chunk_size=6"):
        plstm_2d(q, k, v, g, D, chunk_size=6)
    with pytest.raises(ValueError, match=r"order visits node \(1, 1\) before"):
        g0 = Gates2D(*(a[:, 0] for a in g))
        plstm_2d_reference(q, k, v, g0, D, order=[(0, 0), (1, 1), (1, 0), (0, 1)] + [
            (i, j) for i in range(3) for j in range(4) if (i, j) not in
            ((0, 0), (1, 1), (1, 0), (0, 1))])  # fmt: skip
