"""Random pLSTM inputs and comparison helpers shared by the tests in tests/plstm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from augpar.plstm import Gates2D

# J multiplicities with every J > 1 and all different, so that a swapped axis cannot pass.
J_BIG = dict(JQ=2, JK=3, JV=2, JT=2, JO=3)
J_ONE = dict(JQ=1, JK=1, JV=1, JT=1, JO=1)


class Keys:
    """A seeded NumPy generator (host-side draws: no XLA compile per new shape)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)


def normal(keys, shape, dtype, scale=1.0):
    return jnp.asarray(scale * keys.rng.standard_normal(shape), dtype)


def nodes(keys, lead, site, dk, dv, J, dtype):
    """q, k, v, D for node axes ``site`` (a tuple)."""
    s = lead + site
    q = normal(keys, s + (dk, J["JQ"]), dtype)
    k = normal(keys, s + (dk, J["JK"]), dtype)
    v = normal(keys, s + (dv, J["JV"]), dtype)
    D = normal(keys, s + (J["JO"], J["JQ"], J["JK"], J["JV"]), dtype, 0.5)
    return q, k, v, D


def gates_2d(keys, lead, X, Y, J, dtype, t_scale=0.4):
    """Unconstrained random 2D gates ``[*lead, X, Y, ...]`` (T ~ t_scale * N(0, 1))."""
    s = lead + (X, Y)
    jt = J["JT"]
    S = lambda: normal(keys, s + (jt, J["JK"], J["JV"]), dtype)  # noqa: E731
    T = lambda: normal(keys, s + (jt, jt), dtype, t_scale)  # noqa: E731
    M = lambda: normal(keys, s + (J["JO"], J["JQ"], jt), dtype)  # noqa: E731
    return Gates2D(S(), S(), T(), T(), T(), T(), M(), M())


def with_pattern(g: Gates2D, pattern: str) -> Gates2D:
    if pattern == "L":
        return g._replace(T_dl=None)
    if pattern == "R":
        return g._replace(T_ru=None)
    return g


def flip_grid(a, o, ax):
    if a is None:
        return None
    if o & 1:
        a = jnp.flip(a, ax)
    if o & 2:
        a = jnp.flip(a, ax + 1)
    return a


def assert_close(actual, desired, rtol, what=""):
    """allclose with ``atol = rtol * max|desired|`` (entries near 0 get the scale of the
    array, not of themselves)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    if desired.size == 0:
        return
    atol = rtol * max(float(np.max(np.abs(desired))), 1e-30)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def assert_tree_close(actual, desired, rtol, what=""):
    la, ld = jax.tree.leaves(actual), jax.tree.leaves(desired)
    assert len(la) == len(ld), what
    for i, (a, d) in enumerate(zip(la, ld, strict=True)):
        assert_close(a, d, rtol, f"{what} leaf {i}")
