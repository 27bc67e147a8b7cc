"""plstm_2d state passing with scalar gates (all J = 1: the one-orientation-at-a-time
wavefront of augpar.plstm.wavefront2d) against plstm_2d_reference, values and gradients."""

import functools

import jax
import jax.numpy as jnp
import pytest

from augpar.plstm import plstm_2d
from tests.plstm.plstm_testutil import (
    J_ONE,
    Keys,
    assert_close,
    assert_tree_close,
    fused_reference_2d,
    gates_2d,
    nodes,
    normal,
    with_pattern,
)


@pytest.mark.parametrize("pattern", ["P", "L", "R"])
def test_fused_every_chunk_float64_with_borders(pattern):
    """Odd non-square 7x5 grid (padded), four orientations fused, initial and final border
    states, every leaf chunk 1, 2, 4, 8 (8: one chunk): agreement to 1e-10 in float64."""
    with jax.enable_x64(True):
        keys = Keys(20)
        B, X, Y, dk, dv = 2, 7, 5, 3, 2
        q, k, v, D = nodes(keys, (B,), (X, Y), dk, dv, J_ONE, jnp.float64)
        g4 = with_pattern(gates_2d(keys, (B, 4), X, Y, J_ONE, jnp.float64), pattern)
        il = normal(keys, (B, 4, Y, dk, dv, 1), jnp.float64)
        it = normal(keys, (B, 4, X, dk, dv, 1), jnp.float64)
        h_ref, (r_ref, b_ref) = fused_reference_2d(q, k, v, g4, D, il=il, it=it)
        for chunk in (1, 2, 4, 8):
            f = functools.partial(plstm_2d, chunk_size=chunk, return_state=True)
            h, (r, b) = jax.jit(f)(q, k, v, g4, D, initial_left=il, initial_top=it)
            what = f"{pattern} chunk={chunk}"
            assert_close(h, h_ref, 1e-10, what)
            assert_close(r, r_ref, 1e-10, what + " right")
            assert_close(b, b_ref, 1e-10, what + " bottom")


@pytest.mark.parametrize("pattern", ["P", "L"])
def test_fused_float32_values_and_gradients(pattern):
    """float32, rtol 1e-5 (atol 1e-5 * max|ref|): 6x5 grid, chunk 2 (3x3 chunks, padded),
    four orientations, values and gradients w.r.t. q, k, v, every gate, D and both initial
    border states."""
    keys = Keys(21)
    B, X, Y, dk, dv = 2, 6, 5, 4, 4
    q, k, v, D = nodes(keys, (B,), (X, Y), dk, dv, J_ONE, jnp.float32)
    g4 = with_pattern(gates_2d(keys, (B, 4), X, Y, J_ONE, jnp.float32, t_scale=0.6), pattern)
    il = normal(keys, (B, 4, Y, dk, dv, 1), jnp.float32)
    it = normal(keys, (B, 4, X, dk, dv, 1), jnp.float32)
    w = normal(keys, (B, X, Y, dv, 1), jnp.float32)
    wr = normal(keys, (B, 4, Y, dk, dv, 1), jnp.float32)
    args = (q, k, v, g4, D, il, it)

    def loss_ref(a):
        q, k, v, g, D, il, it = a
        h, (r, _) = fused_reference_2d(q, k, v, g, D, il=il, it=it)
        return jnp.sum(w * h) + jnp.sum(wr * r)

    def loss(a):
        q, k, v, g, D, il, it = a
        h, (r, _) = plstm_2d(q, k, v, g, D, chunk_size=2, initial_left=il, initial_top=it,
                             return_state=True)  # fmt: skip
        return jnp.sum(w * h) + jnp.sum(wr * r)

    v_ref, g_ref = jax.jit(jax.value_and_grad(loss_ref))(args)
    val, grad = jax.jit(jax.value_and_grad(loss))(args)
    assert_close(val, v_ref, 1e-5, "loss")
    assert_tree_close(grad, g_ref, 1e-5, "grads")


def test_scalar_path_equals_general_path():
    """The scalar wavefront equals the general-J state passing, forced here by a second
    output channel (JO = 2) whose marks are 0."""
    with jax.enable_x64(True):
        keys = Keys(22)
        B, X, Y, dk, dv = 1, 5, 6, 2, 3
        q, k, v, _ = nodes(keys, (B,), (X, Y), dk, dv, J_ONE, jnp.float64)
        g4 = gates_2d(keys, (B, 4), X, Y, J_ONE, jnp.float64)
        f = jax.jit(functools.partial(plstm_2d, chunk_size=4))
        h1 = f(q, k, v, g4, None)

        def pad_jo(a):  # M [.., JO, JQ, JT] -> JO = 2 with a zero second channel
            return jnp.concatenate([a, jnp.zeros_like(a)], axis=-3)

        h2 = f(q, k, v, g4._replace(M_l=pad_jo(g4.M_l), M_u=pad_jo(g4.M_u)), None)
        assert_close(h2[..., :1], h1, 1e-10, "general vs scalar")
        assert float(jnp.abs(h2[..., 1:]).max()) == 0.0


def test_border_write_read_vjps_match_autodiff():
    """The hand-written backward passes of the border write / read (wavefront2d) equal JAX's
    autodiff of the plain contractions, float64 to 1e-12, with two leading batch axes."""
    from augpar.plstm.wavefront2d import _read, _write

    with jax.enable_x64(True):
        keys = Keys(23)
        lead, R, N, dk, dv = (2, 3), 5, 6, 4, 3
        s = normal(keys, lead + (R, N), jnp.float64)
        k = normal(keys, lead + (N, dk), jnp.float64)
        v = normal(keys, lead + (N, dv), jnp.float64)
        m = normal(keys, lead + (N, R), jnp.float64)
        st = normal(keys, lead + (R, dk * dv), jnp.float64)
        gw = normal(keys, lead + (R, dk * dv), jnp.float64)
        gr = normal(keys, lead + (N, dv), jnp.float64)

        def write_ref(s, k, v):
            return jnp.einsum("...rn,...nd,...nv->...rdv", s, k, v).reshape(lead + (R, -1))

        def read_ref(m, q, st):
            return jnp.einsum("...nr,...nd,...rdv->...nv", m, q, st.reshape(lead + (R, dk, dv)))

        for fast, ref, args, g in ((_write, write_ref, (s, k, v), gw),
                                   (_read, read_ref, (m, k, st), gr)):  # fmt: skip
            assert_close(fast(*args), ref(*args), 1e-12, fast.__name__)

            def loss(fn, g=g):
                return lambda *a: jnp.sum(g * fn(*a))

            grads = jax.grad(loss(fast), argnums=(0, 1, 2))(*args)
            grads_ref = jax.grad(loss(ref), argnums=(0, 1, 2))(*args)
            assert_tree_close(grads, grads_ref, 1e-12, fast.__name__ + " grads")
