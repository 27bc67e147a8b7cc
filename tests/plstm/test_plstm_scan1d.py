"""plstm_1d (chunkwise) against plstm_1d_reference (sequential), values and gradients."""

import functools

import jax
import jax.numpy as jnp
import pytest

from augpar.plstm import plstm_1d, plstm_1d_reference
from tests.plstm.plstm_testutil import (
    J_BIG,
    J_ONE,
    Keys,
    assert_close,
    assert_tree_close,
    nodes,
    normal,
)


def inputs_1d(seed, lead, L, dk, dv, J, dtype, t_scale=0.5):
    keys = Keys(seed)
    q, k, v, D = nodes(keys, lead, (L,), dk, dv, J, dtype)
    jt = J["JT"]
    S = normal(keys, lead + (L, jt, J["JK"], J["JV"]), dtype)
    T = normal(keys, lead + (L, jt, jt), dtype, t_scale)
    M = normal(keys, lead + (L, J["JO"], J["JQ"], jt), dtype)
    C0 = normal(keys, lead + (dk, dv, jt), dtype)
    return (q, k, v, S, T, M, D), C0


def test_every_chunk_size_float64_general_shapes():
    """Agreement to 1e-10 in float64 for every chunk size 1..16 (16 = whole padded
    sequence), odd length 13, all J > 1 and distinct, initial state and final state."""
    with jax.enable_x64(True):
        args, C0 = inputs_1d(0, (2, 3), 13, 4, 5, J_BIG, jnp.float64)
        h_ref, c_ref = plstm_1d_reference(*args, initial_state=C0, return_state=True)
        for chunk in (1, 2, 4, 8, 16):
            f = jax.jit(functools.partial(plstm_1d, chunk_size=chunk, return_state=True))
            h, c = f(*args, initial_state=C0)
            assert_close(h, h_ref, 1e-10, f"h chunk={chunk}")
            assert_close(c, c_ref, 1e-10, f"state chunk={chunk}")


def _loss(fn, w, args, C0):
    return jnp.sum(w * fn(*args, initial_state=C0))


@functools.cache
def _reference_value_and_grad():
    args, C0 = inputs_1d(1, (2, 2), 50, 8, 8, J_ONE, jnp.float32)
    w = normal(Keys(9), (2, 2, 50, 8, 1), jnp.float32)
    vg = jax.value_and_grad(functools.partial(_loss, plstm_1d_reference, w), (0, 1))
    return args, C0, w, jax.jit(vg)(args, C0)


@pytest.mark.parametrize("chunk", [4, 64])
def test_float32_values_and_gradients(chunk):
    """float32, rtol 1e-5 (atol 1e-5 * max|ref|): values and gradients w.r.t. every input,
    L = 50 (padded), chunk 4 (13 chunks scanned) and 64 (one chunk)."""
    args, C0, w, (v_ref, g_ref) = _reference_value_and_grad()
    fn = functools.partial(plstm_1d, chunk_size=chunk)
    v, g = jax.jit(jax.value_and_grad(functools.partial(_loss, fn, w), (0, 1)))(args, C0)
    assert_close(v, v_ref, 1e-5, "loss")
    assert_tree_close(g, g_ref, 1e-5, "grads")


def test_remat_same_values_and_gradients():
    args, _ = inputs_1d(2, (3,), 24, 4, 3, J_ONE, jnp.float32)

    def loss(remat):
        return lambda a: jnp.sum(jnp.sin(plstm_1d(*a, chunk_size=8, remat=remat)))

    g0 = jax.jit(jax.grad(loss(False)))(args)
    g1 = jax.jit(jax.grad(loss(True)))(args)
    assert_tree_close(g1, g0, 1e-6, "remat grads")


def test_no_unrolled_loop_over_chunks():
    """The traced program does not grow with the number of chunks (a lax.scan carries
    the state), so compile time stays flat in the sequence length."""
    sizes = []
    for L in (64, 1024):
        args, _ = inputs_1d(3, (1,), L, 4, 4, J_ONE, jnp.float32)
        jaxpr = jax.make_jaxpr(lambda *a: plstm_1d(*a, chunk_size=16))(*args)
        sizes.append(len(jaxpr.eqns))
        assert any(e.primitive.name == "scan" for e in jaxpr.eqns)
    assert sizes[0] == sizes[1], sizes


def test_errors_name_what_was_given():
    args, _ = inputs_1d(4, (1,), 8, 4, 4, J_ONE, jnp.float32)
    with pytest.raises(ValueError, match=r"chunk_size=3.*power of two"):
        plstm_1d(*args, chunk_size=3)
    q, k, v, S, T, M, D = args
    with pytest.raises(ValueError, match=r"k has shape \(1, 8, 5, 1\).*DK=5.*DK=4"):
        plstm_1d(q, jnp.zeros((1, 8, 5, 1)), v, S, T, M, D)
    with pytest.raises(ValueError, match=r"leading batch dims \(2,\)"):
        plstm_1d(q, k, jnp.zeros((2, 8, 4, 1)), S, T, M, D)


def test_exact_zero_and_negative_transitions_values_and_gradients():
    """Scalar fast path (log-form products inside chunks, exact custom backward): T with
    exact zeros, negative and tiny entries; float32, rtol 1e-5 (atol 1e-5 * max|ref|) on
    values and on gradients w.r.t. every input (the gradient at an exactly-zero T is the
    product of the other factors, as in the sequential recurrence)."""
    args, C0 = inputs_1d(5, (2,), 37, 4, 4, J_ONE, jnp.float32, t_scale=1.0)
    q, k, v, S, T, M, D = args
    T = T.at[0, 3].set(0.0).at[1, 10].set(0.0).at[1, 11].set(0.0).at[0, 20].set(-1e-3)
    args = (q, k, v, S, T, M, D)
    w = normal(Keys(6), (2, 37, 4, 1), jnp.float32)
    ref = jax.jit(jax.value_and_grad(functools.partial(_loss, plstm_1d_reference, w), (0, 1)))
    v_ref, g_ref = ref(args, C0)
    for chunk in (8, 64):
        fn = functools.partial(plstm_1d, chunk_size=chunk)
        vg = jax.jit(jax.value_and_grad(functools.partial(_loss, fn, w), (0, 1)))
        val, grad = vg(args, C0)
        assert_close(val, v_ref, 1e-5, f"loss chunk={chunk}")
        assert_tree_close(grad, g_ref, 1e-5, f"grads chunk={chunk}")
        assert float(jnp.abs(grad[0][4][0, 3]).max()) > 0.0  # zero T still gets a gradient
