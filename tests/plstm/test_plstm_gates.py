"""P-mode / D-mode gate builders: the stability bounds hold for any logits."""

import jax.numpy as jnp
import numpy as np
import pytest

from augpar.plstm import d_mode, p_mode


def _logits(seed, shape=(2, 3, 7, 5), scale=4.0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(scale * rng.standard_normal(shape), jnp.float32) for _ in range(7)]


def test_p_mode_bound_and_split():
    a, t, s, m = _logits(0)[:4]
    g = p_mode(a, t, s, m)
    assert g.S_r.shape == (2, 3, 7, 5, 1, 1, 1) and g.T_rl.shape == (2, 3, 7, 5, 1, 1)
    # Sum over outgoing |T| per incoming edge: l -> {r, d} and u -> {r, d}.
    for out_r, out_d in ((g.T_rl, g.T_dl), (g.T_ru, g.T_du)):
        total = np.abs(np.asarray(out_r)) + np.abs(np.asarray(out_d))
        assert total.max() <= 1.0 + 1e-6
        assert np.asarray(out_r).min() >= 0.0 and np.asarray(out_d).min() >= 0.0
    tau = 1.0 / (1.0 + np.exp(-np.asarray(t)))
    np.testing.assert_allclose(np.asarray(g.T_rl + g.T_dl)[..., 0, 0], tau, rtol=1e-6)
    sig = 1.0 / (1.0 + np.exp(-np.asarray(s)))
    np.testing.assert_allclose(np.asarray(g.S_r + g.S_d)[..., 0, 0, 0], sig, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(g.M_l), np.asarray(g.M_u))


def test_p_mode_extreme_logits_stay_in_bound():
    big = jnp.full((1, 2, 2), 1e4, jnp.float32)
    g = p_mode(big, big, big, -big)
    assert float(jnp.max(jnp.abs(g.T_rl) + jnp.abs(g.T_dl))) <= 1.0
    assert np.all(np.isfinite(np.asarray(g.T_rl)))


@pytest.mark.parametrize("chirality,dropped,kept", [("L", "T_dl", "T_ru"), ("R", "T_ru", "T_dl")])
def test_d_mode_chirality(chirality, dropped, kept):
    g = d_mode(*_logits(1, scale=1.5), chirality=chirality)
    assert getattr(g, dropped) is None
    turn = np.asarray(getattr(g, kept))
    assert np.abs(turn).max() < 1.0 and np.abs(np.asarray(g.T_rl)).max() < 1.0
    assert turn.min() < 0.0 < turn.max()  # tanh keeps signs
    for name in ("S_r", "S_d", "M_l", "M_u"):
        arr = np.asarray(getattr(g, name))
        assert arr.min() >= 0.0 and arr.max() <= 1.0


def test_errors_name_what_was_given():
    a = _logits(2)
    with pytest.raises(ValueError, match=r"chirality='X'.*'L' or 'R'"):
        d_mode(*a, chirality="X")
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3, 7, 4\)"):
        p_mode(a[0], a[1], a[2], a[3][..., :4])
    with pytest.raises(ValueError, match=r"at least the two grid axes"):
        p_mode(*(x[0, 0, 0] for x in a[:4]))
