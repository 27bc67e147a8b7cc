"""Random pLSTM inputs and comparison helpers shared by the tests in tests/plstm."""

from __future__ import annotations

import functools

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


def fused_reference_2d(q, k, v, g, D, orientations=(0, 1, 2, 3), il=None, it=None):
    """Sum over ``orientations`` of the node recurrence on the flipped grid (D counted once),
    gates ``[B, O, X, Y, ...]``; with initial border states ``il [B, O, Y, ...]`` /
    ``it [B, O, X, ...]`` also each orientation's outgoing borders in original coordinates.

    Returns ``h`` (and ``(right [B, O, Y, ...], bottom [B, O, X, ...])`` when ``il`` is given).
    """
    from augpar.plstm import plstm_2d_reference  # test oracle

    total, rights, bottoms = 0.0, [], []
    for i, o in enumerate(orientations):
        go = Gates2D(*(flip_grid(None if a is None else a[:, i], o, 1) for a in g))
        fl = functools.partial(flip_grid, o=o, ax=1)
        kw = {}
        if il is not None:
            kw["initial_left"] = jnp.flip(il[:, i], 1) if o & 2 else il[:, i]
            kw["initial_top"] = jnp.flip(it[:, i], 1) if o & 1 else it[:, i]
        h, (r, b) = plstm_2d_reference(
            fl(q), fl(k), fl(v), go, fl(D) if i == 0 else None, return_state=True, **kw
        )
        total = total + fl(h)
        rights.append(jnp.flip(r, 1) if o & 2 else r)
        bottoms.append(jnp.flip(b, 1) if o & 1 else b)
    if il is None:
        return total
    return total, (jnp.stack(rights, 1), jnp.stack(bottoms, 1))


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
