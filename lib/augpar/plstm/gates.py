"""Gate containers and the stable P-mode / D-mode gate builders of pLSTM.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997), Sec. 3 (P-mode: directed propagation, D-mode: diffusive distribution).

Grid conventions (per orientation): node (i, j), i along axis 0, j along axis 1. Each node has
two outgoing edges, ``r`` (to (i+1, j)) and ``d`` (to (i, j+1)), and two incoming ones, ``l``
(from (i-1, j)) and ``u`` (from (i, j-1)). Transitions are named out+in: ``T_rl`` (l->r),
``T_du`` (u->d), ``T_dl`` (l->d, a turn) and ``T_ru`` (u->r, a turn).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class Gates2D(NamedTuple):
    """Source/transition/mark gates of one (or, with a leading orientation axis, several)
    2D grid pass. ``...`` is the batch shape shared with q/k/v (for the fused
    ``plstm_2d`` an orientation axis ``O`` sits right before ``X``).

    Attributes:
      S_r, S_d: ``[..., X, Y, JT, JK, JV]`` node -> its outgoing r / d edge.
      T_rl, T_du: ``[..., X, Y, JT, JT]`` straight transitions (out x in).
      T_dl, T_ru: ``[..., X, Y, JT, JT]`` turning transitions, or ``None`` (treated as 0; the
        D-mode chiralities drop one of them).
      M_l, M_u: ``[..., X, Y, JO, JQ, JT]`` incoming l / u edge -> node output.
    """

    S_r: jax.Array
    S_d: jax.Array
    T_rl: jax.Array
    T_du: jax.Array
    T_dl: jax.Array | None
    T_ru: jax.Array | None
    M_l: jax.Array
    M_u: jax.Array


def _same_shape(fn: str, **arrays: jax.Array) -> tuple[int, ...]:
    shapes = {name: tuple(a.shape) for name, a in arrays.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise ValueError(f"{fn}: all logits must have the same shape [..., X, Y]; got {shapes}")
    if len(first) < 2:
        raise ValueError(f"{fn}: logits need at least the two grid axes [..., X, Y]; got {shapes}")
    return first


def p_mode(
    alpha_logit: Float[Array, "*b X Y"],
    tau_logit: Float[Array, "*b X Y"],
    source_logit: Float[Array, "*b X Y"],
    mark_logit: Float[Array, "*b X Y"],
) -> Gates2D:
    """P-mode (directed propagation) gates with scalar states (all J = 1).

    With ``a = sigmoid(alpha_logit)`` (the propagation direction) and
    ``tau = sigmoid(tau_logit)`` in [0, 1] (the decay per step):

    * ``S_r = a * sigmoid(s)``, ``S_d = (1 - a) * sigmoid(s)``;
    * ``T_rl = T_ru = a * tau``, ``T_dl = T_du = (1 - a) * tau``;
    * ``M_l = M_u = sigmoid(m)``.

    Hence for every incoming edge the outgoing transitions satisfy
    ``|T_r.| + |T_d.| = tau <= 1`` (the P-mode bound), and ``|S_r| + |S_d| <= 1``, so every
    path-summed gating entry obeys ``|G| <= max|M| * max|S|``. (The reference code uses
    ``1 - a*tau`` with ``tau`` in (-1, 1) and ``S_d = 1 - a*sigmoid(s)``, which can break the
    bound; this builder does not.)

    Args:
      alpha_logit, tau_logit, source_logit, mark_logit: ``[..., X, Y]`` per-node logits.

    Returns:
      ``Gates2D`` with shapes ``S: [..., X, Y, 1, 1, 1]``, ``T: [..., X, Y, 1, 1]``,
      ``M: [..., X, Y, 1, 1, 1]``.
    """
    _same_shape(
        "p_mode",
        alpha_logit=alpha_logit,
        tau_logit=tau_logit,
        source_logit=source_logit,
        mark_logit=mark_logit,
    )
    a = jax.nn.sigmoid(alpha_logit)
    tau = jax.nn.sigmoid(tau_logit)
    s = jax.nn.sigmoid(source_logit)
    m = jax.nn.sigmoid(mark_logit)
    s3 = lambda x: x[..., None, None, None]  # noqa: E731
    t2 = lambda x: x[..., None, None]  # noqa: E731
    t_r = t2(a * tau)
    t_d = t2((1.0 - a) * tau)
    return Gates2D(
        S_r=s3(a * s),
        S_d=s3((1.0 - a) * s),
        T_rl=t_r,
        T_du=t_d,
        T_dl=t_d,
        T_ru=t_r,
        M_l=s3(m),
        M_u=s3(m),
    )


def d_mode(
    source_r_logit: Float[Array, "*b X Y"],
    source_d_logit: Float[Array, "*b X Y"],
    t_rl_logit: Float[Array, "*b X Y"],
    t_du_logit: Float[Array, "*b X Y"],
    t_turn_logit: Float[Array, "*b X Y"],
    mark_l_logit: Float[Array, "*b X Y"],
    mark_u_logit: Float[Array, "*b X Y"],
    *,
    chirality: str = "L",
) -> Gates2D:
    """D-mode (diffusive distribution) gates with scalar states (all J = 1).

    Sources and marks are sigmoids, transitions ``tanh`` (so ``|T| < 1``), and one turning
    transition is dropped so that the line graph is a multitree (one path between any two
    nodes): chirality ``"L"`` keeps ``T_ru`` (u->r) and drops ``T_dl``; ``"R"`` keeps ``T_dl``
    and drops ``T_ru``. Then every gating entry is a single product, ``|G| <= max|M| max|S|``.

    Args:
      *_logit: ``[..., X, Y]`` per-node logits; ``t_turn_logit`` feeds the kept turn.
      chirality: ``"L"`` or ``"R"``.

    Returns:
      ``Gates2D`` (J = 1 shapes as in :func:`p_mode`) with the dropped turn set to ``None``.
    """
    if chirality not in ("L", "R"):
        raise ValueError(f"d_mode: chirality={chirality!r}; allowed: 'L' or 'R'")
    _same_shape(
        "d_mode",
        source_r_logit=source_r_logit,
        source_d_logit=source_d_logit,
        t_rl_logit=t_rl_logit,
        t_du_logit=t_du_logit,
        t_turn_logit=t_turn_logit,
        mark_l_logit=mark_l_logit,
        mark_u_logit=mark_u_logit,
    )
    s3 = lambda x: jax.nn.sigmoid(x)[..., None, None, None]  # noqa: E731
    t2 = lambda x: jnp.tanh(x)[..., None, None]  # noqa: E731
    turn = t2(t_turn_logit)
    return Gates2D(
        S_r=s3(source_r_logit),
        S_d=s3(source_d_logit),
        T_rl=t2(t_rl_logit),
        T_du=t2(t_du_logit),
        T_dl=turn if chirality == "R" else None,
        T_ru=turn if chirality == "L" else None,
        M_l=s3(mark_l_logit),
        M_u=s3(mark_u_logit),
    )
