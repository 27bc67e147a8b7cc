"""The reference recurrences against independent closed forms (explicit gating matrices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augpar.plstm import d_mode, plstm_1d_reference, plstm_2d_reference
from tests.plstm.plstm_testutil import J_BIG, J_ONE, Keys, assert_close, gates_2d, nodes, normal


def test_1d_reference_equals_explicit_gating_matrix():
    """h_t = scale * sum_s (G[t, s] . (q_t k_s) v_s) with G[t, s] = M_t T_{t-1}..T_{s+1} S_s
    (s < t), G[t, t] = D_t, built with NumPy loops in float64, all J > 1."""
    with jax.enable_x64(True):
        keys = Keys(30)
        L, dk, dv = 6, 3, 2
        q, k, v, D = (np.asarray(a) for a in nodes(keys, (), (L,), dk, dv, J_BIG, jnp.float64))
        jt = J_BIG["JT"]
        S = np.asarray(normal(keys, (L, jt, J_BIG["JK"], J_BIG["JV"]), jnp.float64))
        T = np.asarray(normal(keys, (L, jt, jt), jnp.float64, 0.7))
        M = np.asarray(normal(keys, (L, J_BIG["JO"], J_BIG["JQ"], jt), jnp.float64))
        h = np.zeros((L, dv, J_BIG["JO"]))
        for t in range(L):
            for s in range(t + 1):
                if s == t:
                    G = D[t]
                else:
                    P = np.eye(jt)
                    for u in range(s + 1, t):
                        P = T[u] @ P
                    G = np.einsum("ijk,kl,lmn->ijmn", M[t], P, S[s])
                h[t] += np.einsum("ijkl,dj,dk,vl->vi", G, q[t], k[s], v[s])
        h *= dk**-0.5
        out = plstm_1d_reference(*(jnp.asarray(a) for a in (q, k, v, S, T, M, D)))
        assert_close(out, h, 1e-12)


def test_2d_reference_any_topological_order():
    with jax.enable_x64(True):
        keys = Keys(31)
        X, Y = 3, 4
        q, k, v, D = nodes(keys, (2,), (X, Y), 2, 2, J_BIG, jnp.float64)
        g = gates_2d(keys, (2,), X, Y, J_BIG, jnp.float64)
        raster = plstm_2d_reference(q, k, v, g, D)
        cols = [(i, j) for j in range(Y) for i in range(X)]
        diag = sorted(((i, j) for i in range(X) for j in range(Y)), key=lambda n: (sum(n), -n[0]))
        for order in (cols, diag):
            assert_close(plstm_2d_reference(q, k, v, g, D, order=order), raster, 1e-14)
        with pytest.raises(ValueError, match=r"order has 3 entries"):
            plstm_2d_reference(q, k, v, g, D, order=[(0, 0), (0, 1), (1, 0)])


def test_2d_reference_d_mode_closed_form():
    """Chirality L: the single path from (i0, j0) to (i1, j1), i1 > i0, j1 > j0, is
    S_d, T_du along axis 1, the turn T_ru at (i0, j1), T_rl along axis 0, read by M_l;
    straight paths when i1 == i0 (S_d, T_du, M_u) or j1 == j0 (S_r, T_rl, M_l)."""
    with jax.enable_x64(True):
        n = 5
        rng = np.random.default_rng(32)
        logits = [jnp.asarray(rng.standard_normal((n, n)), jnp.float64) for _ in range(7)]
        g = d_mode(*logits, chirality="L")
        a = {f: np.asarray(getattr(g, f)).reshape(n, n) for f in g._fields if f != "T_dl"}
        src = (1, 1)
        one = jnp.ones((n, n, 1, 1), jnp.float64)
        kk = jnp.zeros_like(one).at[src].set(1.0)
        h = np.asarray(plstm_2d_reference(one, kk, one, g, None, scale=1.0))[..., 0, 0]
        i0, j0 = src
        for i1 in range(n):
            for j1 in range(n):
                if (i1, j1) == src or i1 < i0 or j1 < j0:
                    want = 0.0
                elif i1 == i0:
                    want = a["S_d"][i0, j0] * a["M_u"][i1, j1]
                    want *= np.prod([a["T_du"][i0, j] for j in range(j0 + 1, j1)])
                elif j1 == j0:
                    want = a["S_r"][i0, j0] * a["M_l"][i1, j1]
                    want *= np.prod([a["T_rl"][i, j0] for i in range(i0 + 1, i1)])
                else:
                    want = a["S_d"][i0, j0] * a["T_ru"][i0, j1] * a["M_l"][i1, j1]
                    want *= np.prod([a["T_du"][i0, j] for j in range(j0 + 1, j1)])
                    want *= np.prod([a["T_rl"][i, j1] for i in range(i0 + 1, i1)])
                np.testing.assert_allclose(h[i1, j1], want, rtol=1e-12, atol=1e-15)


def test_2d_reference_initial_states_enter_first_row_and_column():
    """With zero S, the output is q M (transported initial states) only."""
    with jax.enable_x64(True):
        keys = Keys(33)
        X, Y = 3, 3
        q, k, v, _ = nodes(keys, (), (X, Y), 2, 2, J_ONE, jnp.float64)
        g = gates_2d(keys, (), X, Y, J_ONE, jnp.float64)
        g = g._replace(S_r=jnp.zeros_like(g.S_r), S_d=jnp.zeros_like(g.S_d))
        il = normal(keys, (Y, 2, 2, 1), jnp.float64)
        h = plstm_2d_reference(q, k, v, g, None, initial_left=il)
        it = normal(keys, (X, 2, 2, 1), jnp.float64)
        h = plstm_2d_reference(q, k, v, g, None, initial_left=il, initial_top=it)
        read = lambda qn, m, c: jnp.einsum("dx,xyz,dvz->vx", qn, m, c)  # noqa: E731
        want = (read(q[0, 0], g.M_l[0, 0], il[0]) + read(q[0, 0], g.M_u[0, 0], it[0])) * 2**-0.5
        assert_close(h[0, 0], want, 1e-12)
        assert float(jnp.abs(h).min()) > 0.0
        assert float(jnp.abs(plstm_2d_reference(q, k, v, g, None)).max()) == 0.0
