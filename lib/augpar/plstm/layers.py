"""Flax NNX layers of pLSTM: 1D, 2D (P- or D-mode), the pre-norm block, the "PD" vision block
and a DAG layer.

Pöppel et al., "pLSTM: parallelizable Linear Source Transition Mark networks", 2025
(arXiv:2506.11997), Sec. 3-4. The layers own the parameters (q/k/v projections, gate
projections, per-head norm, output projection) and compute gate *logits*; the gates themselves
come from the pure builders in :mod:`augpar.plstm.gates` (:func:`gate_logits_2d` below is the
pure reshaping step) and the recurrence from :func:`augpar.plstm.scan1d.plstm_1d`,
:func:`augpar.plstm.scan2d.plstm_2d` and :func:`augpar.plstm.dag.plstm_dag`.

Layer recipe (the official fused 2D layer, Sec. 1.6 of the research notes):
q, k, v = Linear(x) (SmallInit, std sqrt(2 / (5 D))); gates from Linear(x) with zero weights
and per-gate bias inits; the recurrence per head (DK = DV = D / H, all J = 1); a per-head
RMSNorm over DV; Linear(D -> D) without bias.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from augpar.plstm.dag import normalize_p_mode, plstm_dag
from augpar.plstm.gates import Gates2D, d_mode, p_mode
from augpar.plstm.graph import DAG, prune_to_multitree
from augpar.plstm.grid_gating import plstm_2d_masked
from augpar.plstm.scan1d import plstm_1d
from augpar.plstm.scan2d import plstm_2d

MODES_2D = ("P", "D")
METHODS_2D = ("masked", "dense", "state_passing")


# --- pure helpers ------------------------------------------------------------------------------


def small_init(fan_in: int) -> nnx.Initializer:
    """Normal init with std ``sqrt(2 / (5 fan_in))`` (the "SmallInit" of the paper's code)."""
    return nnx.initializers.normal(stddev=float(np.sqrt(2.0 / (5.0 * fan_in))))


def split_heads(x: Float[Array, "*b d"], num_heads: int) -> Float[Array, "*b h dh"]:
    """``[..., H*dh] -> [..., H, dh]``."""
    if x.shape[-1] % num_heads:
        raise ValueError(f"split_heads: width {x.shape[-1]} not divisible by {num_heads} heads")
    return x.reshape(x.shape[:-1] + (num_heads, x.shape[-1] // num_heads))


def multihead_rms_norm(
    x: Float[Array, "*b h f"], scale: Float[Array, "h f"], *, eps: float = 1e-5
) -> Float[Array, "*b h f"]:
    """RMSNorm over the last axis of every head separately, then a per-head learned scale."""
    x32 = x.astype(jnp.float32)
    inv = jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    scale = scale.astype(jnp.float32).reshape((1,) * (x.ndim - 2) + scale.shape)
    return (x32 * inv * scale).astype(x.dtype)


def gate_logits_2d(
    projected: Float[Array, "b x y gh"], num_gates: int, num_orientations: int
) -> Float[Array, "g b h o x y"]:
    """Reshapes a gate projection ``[B, X, Y, G*O*H]`` (gate-major, then orientation, then
    head) into ``[G, B, H, O, X, Y]``, the layout :func:`augpar.plstm.scan2d.plstm_2d` expects
    (batch dims ``(B, H)``, orientation axis before the grid)."""
    b, x, y, n = projected.shape
    per = num_gates * num_orientations
    if n % per:
        raise ValueError(
            f"gate_logits_2d: last axis {n} is not a multiple of gates x orientations = {per}"
        )
    z = projected.reshape(b, x, y, num_gates, num_orientations, n // per)
    return jnp.transpose(z, (3, 0, 5, 4, 1, 2))


def direct_term(bias: Float[Array, " h"], shape: tuple[int, ...]) -> Float[Array, "*s 1 1 1 1"]:
    """Bias-only direct gate ``D = sigmoid(b_h)`` broadcast to ``[B, H, *grid, 1, 1, 1, 1]``
    (``shape = (B, H, *grid)``)."""
    d = jax.nn.sigmoid(bias).reshape((1, -1) + (1,) * (len(shape) - 2) + (1, 1, 1, 1))
    return jnp.broadcast_to(d, tuple(shape) + (1, 1, 1, 1))


def corner_pool(x: Float[Array, "b x y d"]) -> Float[Array, "b 4d"]:
    """Concatenates the four corner tokens ``(0,0), (0,Y-1), (X-1,0), (X-1,Y-1)`` -> ``[B, 4D]``.

    With four fused orientations, each corner is the end point of one orientation's scan,
    so it has seen the whole grid."""
    return jnp.concatenate([x[:, 0, 0], x[:, 0, -1], x[:, -1, 0], x[:, -1, -1]], axis=-1)


# --- shared pieces -----------------------------------------------------------------------------


class MultiHeadRMSNorm(nnx.Module):
    """Per-head RMSNorm over ``[..., H, F]`` with a learned ``[H, F]`` scale (init 1)."""

    def __init__(self, num_heads: int, features: int, *, eps: float = 1e-5):
        self.scale = nnx.Param(jnp.ones((num_heads, features)))
        self.eps = eps

    def __call__(self, x: Float[Array, "*b h f"]) -> Float[Array, "*b h f"]:
        return multihead_rms_norm(x, self.scale[...], eps=self.eps)


class _QKVOut(nnx.Module):
    """q/k/v projections (SmallInit, bias), per-head norm and the output projection (no bias)."""

    def __init__(self, dim: int, num_heads: int, rngs: nnx.Rngs):
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(
                f"dim={dim}, num_heads={num_heads}; allowed: positive, dim divisible by num_heads"
            )
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        init = small_init(dim)
        self.q = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.k = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.v = nnx.Linear(dim, dim, kernel_init=init, rngs=rngs)
        self.norm = MultiHeadRMSNorm(num_heads, self.head_dim)
        self.out = nnx.Linear(dim, dim, use_bias=False, kernel_init=small_init(dim), rngs=rngs)

    def heads(self, proj: nnx.Linear, x: jax.Array, axis: int) -> jax.Array:
        """``[B, *S, D] -> [B, H, *S, dh, 1]`` (heads moved next to the batch)."""
        return jnp.moveaxis(split_heads(proj(x), self.num_heads), -2, 1)[..., None]

    def finish(self, h: jax.Array) -> jax.Array:
        """``[B, H, *S, DV, 1] -> [B, *S, D]``: per-head norm, concat, output projection."""
        h = jnp.moveaxis(h[..., 0], 1, -2)
        h = self.norm(h)
        return self.out(h.reshape(h.shape[:-2] + (self.dim,)))


# --- 1D ------------------------------------------------------------------------------------------


class PLSTM1DLayer(nnx.Module):
    """pLSTM over sequences ``[B, L, D] -> [B, L, D]`` (chunkwise-parallel, scalar gates).

    Gates per head and position: ``S = sigmoid``, ``T = sigmoid`` (a decay in [0, 1], so the
    recurrence is stable), ``M = sigmoid``, ``D = sigmoid(bias)``.

    Args:
      dim: model width D; num_heads: H (D divisible by H).
      chunk_size: chunk length of :func:`augpar.plstm.scan1d.plstm_1d` (power of two).
      source_bias, transition_bias, mark_bias, direct_bias: gate bias inits (weights start 0).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        chunk_size: int = 64,
        source_bias: float = 0.0,
        transition_bias: float = 3.0,
        mark_bias: float = 0.0,
        direct_bias: float = -6.0,
        rngs: nnx.Rngs,
    ):
        self.io = _QKVOut(dim, num_heads, rngs)
        self.chunk_size = chunk_size
        biases = np.repeat(np.asarray([source_bias, transition_bias, mark_bias]), num_heads)
        self.gates = nnx.Linear(
            dim,
            3 * num_heads,
            kernel_init=nnx.initializers.zeros,
            bias_init=lambda *_: jnp.asarray(biases, jnp.float32),
            rngs=rngs,
        )
        self.direct = nnx.Param(jnp.full((num_heads,), direct_bias, jnp.float32))

    def __call__(self, x: Float[Array, "b l d"]) -> Float[Array, "b l d"]:
        if x.ndim != 3 or x.shape[-1] != self.io.dim:
            raise ValueError(f"PLSTM1DLayer: x shape {x.shape}; expected [B, L, {self.io.dim}]")
        b, length, _ = x.shape
        H = self.io.num_heads
        q, k, v = (self.io.heads(p, x, 1) for p in (self.io.q, self.io.k, self.io.v))
        g = self.gates(x).reshape(b, length, 3, H)
        g = jnp.transpose(g, (2, 0, 3, 1))  # [3, B, H, L]
        S = jax.nn.sigmoid(g[0])[..., None, None, None]
        T = jax.nn.sigmoid(g[1])[..., None, None]
        M = jax.nn.sigmoid(g[2])[..., None, None, None]
        D = direct_term(self.direct[...], (b, H, length)).astype(x.dtype)
        h = plstm_1d(q, k, v, S, T, M, D, chunk_size=self.chunk_size)
        return self.io.finish(h)


# --- 2D ------------------------------------------------------------------------------------------


class PLSTM2DLayer(nnx.Module):
    """pLSTM over grids ``[B, X, Y, D] -> [B, X, Y, D]``, four orientations fused, P or D mode.

    P-mode (:func:`augpar.plstm.gates.p_mode`): per orientation and head, a direction
    ``alpha`` (bias spread over ``linspace(-2, 2)`` across heads), a decay ``tau`` in [0, 1],
    a source and a mark; the P bound holds exactly. D-mode (:func:`augpar.plstm.gates.d_mode`):
    sigmoid sources/marks, tanh transitions on the multitree pattern of ``chirality``.

    Args:
      dim, num_heads: width D and heads H.
      mode: ``"P"`` or ``"D"``.
      chirality: D-mode turn kept (``"L"``: ``T_ru``, ``"R"``: ``T_dl``).
      method: ``"masked"`` (path-sum matrix G by dynamic programming, then masked linear
        attention; :func:`augpar.plstm.grid_gating.plstm_2d_masked`, fastest for 8 x 8
        token grids; from 16 x 16 on ``"state_passing"`` is faster), ``"dense"`` or
        ``"state_passing"`` (see :func:`augpar.plstm.scan2d.plstm_2d`).
      chunk_size: leaf chunk side for ``"state_passing"``.
      source_bias, mark_bias, transition_bias, direct_bias: gate bias inits (weights start 0).
        ``transition_bias`` is the logit of ``tau`` (P) or of the tanh transitions (D).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mode: str = "P",
        chirality: str = "L",
        method: str = "dense",
        chunk_size: int = 8,
        source_bias: float = 0.0,
        mark_bias: float = 0.0,
        transition_bias: float = 2.0,
        direct_bias: float = -6.0,
        rngs: nnx.Rngs,
    ):
        if mode not in MODES_2D:
            raise ValueError(f"PLSTM2DLayer: mode={mode!r}; allowed: {MODES_2D}")
        if method not in METHODS_2D:
            raise ValueError(f"PLSTM2DLayer: method={method!r}; allowed: {METHODS_2D}")
        if chirality not in ("L", "R"):
            raise ValueError(f"PLSTM2DLayer: chirality={chirality!r}; allowed: 'L' or 'R'")
        self.io = _QKVOut(dim, num_heads, rngs)
        self.mode, self.chirality, self.method, self.chunk_size = (
            mode,
            chirality,
            method,
            chunk_size,
        )
        H, n_or = num_heads, 4
        spread = np.linspace(-2.0, 2.0, H) if H > 1 else np.zeros(1)
        if mode == "P":  # alpha, tau, source, mark
            rows = [np.tile(spread, n_or)] + [
                np.full(n_or * H, b) for b in (transition_bias, source_bias, mark_bias)
            ]
        else:  # S_r, S_d, T_rl, T_du, T_turn, M_l, M_u
            rows = [
                np.full(n_or * H, b)
                for b in (source_bias, source_bias) + (transition_bias,) * 3 + (mark_bias,) * 2
            ]
        biases = np.concatenate(rows).astype(np.float32)
        self.num_gates = len(rows)
        self.gates = nnx.Linear(
            dim,
            biases.size,
            kernel_init=nnx.initializers.zeros,
            bias_init=lambda *_: jnp.asarray(biases),
            rngs=rngs,
        )
        self.direct = nnx.Param(jnp.full((H,), direct_bias, jnp.float32))

    def make_gates(self, x: Float[Array, "b x y d"]) -> Gates2D:
        """Gates ``[B, H, 4, X, Y, ...]`` of this layer for input ``x``."""
        logits = gate_logits_2d(self.gates(x), self.num_gates, 4)
        if self.mode == "P":
            return p_mode(*logits)
        return d_mode(*logits, chirality=self.chirality)

    def __call__(self, x: Float[Array, "b x y d"]) -> Float[Array, "b x y d"]:
        if x.ndim != 4 or x.shape[-1] != self.io.dim:
            raise ValueError(f"PLSTM2DLayer: x shape {x.shape}; expected [B, X, Y, {self.io.dim}]")
        b, X, Y, _ = x.shape
        q, k, v = (self.io.heads(p, x, 1) for p in (self.io.q, self.io.k, self.io.v))
        D = direct_term(self.direct[...], (b, self.io.num_heads, X, Y)).astype(x.dtype)
        if self.method == "masked":
            h = plstm_2d_masked(q, k, v, self.make_gates(x), D, orientations=(0, 1, 2, 3))
        else:
            h = plstm_2d(
                q,
                k,
                v,
                self.make_gates(x),
                D,
                orientations=(0, 1, 2, 3),
                method=self.method,
                chunk_size=self.chunk_size,
            )
        return self.io.finish(h)


# --- blocks --------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """``dim -> hidden -> dim`` with GELU and biases."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.up = nnx.Linear(dim, hidden, kernel_init=small_init(dim), rngs=rngs)
        self.down = nnx.Linear(hidden, dim, kernel_init=small_init(hidden), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.gelu(self.up(x)))


def mlp_width(dim: int, ratio: float, multiple: int) -> int:
    """Inner MLP width ``ratio * dim`` rounded up to a multiple of ``multiple``."""
    if ratio <= 0 or multiple < 1:
        raise ValueError(f"mlp_width: ratio={ratio}, multiple={multiple}; allowed: > 0, >= 1")
    return int(-(-int(round(ratio * dim)) // multiple) * multiple)


class PLSTMBlock(nnx.Module):
    """Pre-norm block: ``x + mixer(RMSNorm(x))`` then ``x + MLP(RMSNorm(x))``.

    ``mixer`` is a :class:`PLSTM2DLayer` (``kind="2d"``, with ``mode``) or a
    :class:`PLSTM1DLayer` (``kind="1d"``); extra keyword arguments go to the mixer.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        kind: str = "2d",
        mlp_ratio: float = 4.0,
        mlp_multiple: int = 64,
        rngs: nnx.Rngs,
        **mixer_kwargs,
    ):
        if kind not in ("1d", "2d"):
            raise ValueError(f"PLSTMBlock: kind={kind!r}; allowed: '1d' or '2d'")
        self.norm1 = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        layer = PLSTM2DLayer if kind == "2d" else PLSTM1DLayer
        self.mixer = layer(dim, num_heads=num_heads, rngs=rngs, **mixer_kwargs)
        self.norm2 = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        self.mlp = MLP(dim, mlp_width(dim, mlp_ratio, mlp_multiple), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PDBlock(nnx.Module):
    """The "PD" vision block: a P-mode :class:`PLSTMBlock` followed by a D-mode one.

    ``[B, X, Y, D] -> [B, X, Y, D]``; keyword arguments (``method``, ``chunk_size``, gate
    biases, ``chirality``) go to both 2D layers.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_ratio: float = 4.0,
        mlp_multiple: int = 64,
        rngs: nnx.Rngs,
        **layer_kwargs,
    ):
        common = dict(num_heads=num_heads, mlp_ratio=mlp_ratio, mlp_multiple=mlp_multiple)
        self.p = PLSTMBlock(dim, mode="P", rngs=rngs, **common, **layer_kwargs)
        self.d = PLSTMBlock(dim, mode="D", rngs=rngs, **common, **layer_kwargs)

    def __call__(self, x: Float[Array, "b x y d"]) -> Float[Array, "b x y d"]:
        return self.d(self.p(x))


# --- DAG -----------------------------------------------------------------------------------------


def dag_gate_logits(
    node_proj: Float[Array, "b n g"], graph: DAG
) -> tuple[Float[Array, "b e h"], Float[Array, "b l h"], Float[Array, "b e h"]]:
    """Per-edge source/mark and per-link transition logits from per-node projections.

    ``node_proj`` holds ``5H`` channels per node: ``[S | M | T_at | T_from | T_to]`` (H each).
    Source of edge e: ``S(src e)``; mark of edge e: ``M(dst e)``; transition of link
    ``e_in -> e_out`` at node n: ``T_at(n) + T_from(src e_in) + T_to(dst e_out)`` (so a node
    can route differently towards different successors).

    Returns:
      ``(S [B, E, H], T [B, NL, H], M [B, E, H])`` logits.
    """
    if node_proj.shape[-1] % 5:
        raise ValueError(f"dag_gate_logits: last axis {node_proj.shape[-1]}; allowed: 5 * H")
    s, m, t_at, t_from, t_to = jnp.split(node_proj, 5, axis=-1)
    src, dst = jnp.asarray(graph.edge_src), jnp.asarray(graph.edge_dst)
    lin, lout = jnp.asarray(graph.link_in), jnp.asarray(graph.link_out)
    t = t_at[:, dst[lin]] + t_from[:, src[lin]] + t_to[:, dst[lout]]
    return s[:, src], t, m[:, dst]


class PLSTMDAGLayer(nnx.Module):
    """pLSTM over the nodes of a DAG: ``x [B, N, D]`` -> ``[B, N, D]`` (all B share ``graph``;
    batch different graphs as one :func:`augpar.plstm.graph.disjoint_union` with B = 1).

    Gates: ``S``, ``M`` sigmoid per edge, ``D = sigmoid(bias)`` per head; transitions per link
    from :func:`dag_gate_logits`. P-mode: ``T = sigmoid`` then
    :func:`augpar.plstm.dag.normalize_p_mode` (for every incoming edge, the outgoing
    transitions sum to at most 1). D-mode: ``T = tanh`` on the graph pruned to a multitree
    (:func:`augpar.plstm.graph.prune_to_multitree`), so every gating entry is one product.
    The graph is static (NumPy); a new graph is a new trace under ``jit``.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mode: str = "P",
        source_bias: float = 0.0,
        mark_bias: float = 0.0,
        transition_bias: float = 2.0,
        direct_bias: float = -6.0,
        rngs: nnx.Rngs,
    ):
        if mode not in MODES_2D:
            raise ValueError(f"PLSTMDAGLayer: mode={mode!r}; allowed: {MODES_2D}")
        self.io = _QKVOut(dim, num_heads, rngs)
        self.mode = mode
        H = num_heads
        biases = np.concatenate(
            [np.full(H, source_bias), np.full(H, mark_bias), np.full(H, transition_bias)]
            + [np.zeros(2 * H)]
        ).astype(np.float32)
        self.gates = nnx.Linear(
            dim,
            5 * H,
            kernel_init=nnx.initializers.zeros,
            bias_init=lambda *_: jnp.asarray(biases),
            rngs=rngs,
        )
        self.direct = nnx.Param(jnp.full((H,), direct_bias, jnp.float32))

    def make_gates(self, x: Float[Array, "b n d"], graph: DAG):
        """``(S [B, H, E, 1, 1, 1], T [B, H, NL, 1, 1], M [B, H, E, 1, 1, 1], graph_used)``."""
        if self.mode == "D":
            graph = prune_to_multitree(graph)
        s, t, m = dag_gate_logits(self.gates(x), graph)
        heads_first = lambda a: jnp.moveaxis(a, -1, 1)  # noqa: E731
        S = jax.nn.sigmoid(heads_first(s))[..., None, None, None]
        M = jax.nn.sigmoid(heads_first(m))[..., None, None, None]
        if self.mode == "P":
            T = normalize_p_mode(jax.nn.sigmoid(heads_first(t))[..., None, None], graph)
        else:
            T = jnp.tanh(heads_first(t))[..., None, None]
        return S, T, M, graph

    def __call__(self, x: Float[Array, "b n d"], graph: DAG) -> Float[Array, "b n d"]:
        if x.ndim != 3 or x.shape[-1] != self.io.dim or x.shape[1] != graph.num_nodes:
            raise ValueError(
                f"PLSTMDAGLayer: x shape {x.shape}; expected [B, {graph.num_nodes}, "
                f"{self.io.dim}] (the graph has {graph.num_nodes} nodes)"
            )
        b, n, _ = x.shape
        q, k, v = (self.io.heads(p, x, 1) for p in (self.io.q, self.io.k, self.io.v))
        S, T, M, used = self.make_gates(x, graph)
        D = direct_term(self.direct[...], (b, self.io.num_heads, n)).astype(x.dtype)
        return self.io.finish(plstm_dag(q, k, v, S, T, M, D, used))


class PLSTMDAGBlock(nnx.Module):
    """Pre-norm graph block: ``x + DAGLayer(RMSNorm(x))``, ``x + MLP(RMSNorm(x))``."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mode: str = "P",
        mlp_ratio: float = 2.0,
        mlp_multiple: int = 16,
        rngs: nnx.Rngs,
        **layer_kwargs,
    ):
        self.norm1 = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        self.mixer = PLSTMDAGLayer(dim, num_heads=num_heads, mode=mode, rngs=rngs, **layer_kwargs)
        self.norm2 = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        self.mlp = MLP(dim, mlp_width(dim, mlp_ratio, mlp_multiple), rngs=rngs)

    def __call__(self, x: Float[Array, "b n d"], graph: DAG) -> Float[Array, "b n d"]:
        x = x + self.mixer(self.norm1(x), graph)
        return x + self.mlp(self.norm2(x))
