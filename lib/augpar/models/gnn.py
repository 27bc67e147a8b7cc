"""A message-passing graph network (Gilmer et al., 2017, "Neural Message Passing for Quantum
Chemistry") in Flax NNX: the baseline the pLSTM graph model is compared with at equal depth.

Messages flow along the directed edges of a DAG (the same direction pLSTM propagates), so
after ``depth`` layers a node has heard exactly the nodes at most ``depth`` hops upstream.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from augpar.models.plstm_graph import masked_mean_pool
from augpar.plstm.graph import DAG


def aggregate_messages(
    messages: Float[Array, "b n d"], graph: DAG, *, reduce: str = "mean"
) -> Float[Array, "b n d"]:
    """Sums (or averages) ``messages[src e]`` into ``dst e`` over the edges of ``graph``."""
    if reduce not in ("sum", "mean"):
        raise ValueError(f"aggregate_messages: reduce={reduce!r}; allowed: 'sum', 'mean'")
    src, dst = jnp.asarray(graph.edge_src), jnp.asarray(graph.edge_dst)
    n = graph.num_nodes
    out = jax.ops.segment_sum(jnp.moveaxis(messages[:, src], 1, 0), dst, num_segments=n)
    if reduce == "mean":
        deg = jax.ops.segment_sum(jnp.ones(src.shape, messages.dtype), dst, num_segments=n)
        out = out / jnp.maximum(deg, 1.0)[:, None, None]
    return jnp.moveaxis(out, 0, 1)


class MessagePassingLayer(nnx.Module):
    """``h <- h + MLP(RMSNorm([h, mean_{u -> v} W h_u]))`` (pre-norm, residual)."""

    def __init__(self, dim: int, *, hidden: int, rngs: nnx.Rngs):
        self.message = nnx.Linear(dim, dim, rngs=rngs)
        self.norm = nnx.RMSNorm(2 * dim, epsilon=1e-5, rngs=rngs)
        self.up = nnx.Linear(2 * dim, hidden, rngs=rngs)
        self.down = nnx.Linear(hidden, dim, rngs=rngs)

    def __call__(self, h: Float[Array, "b n d"], graph: DAG) -> Float[Array, "b n d"]:
        m = aggregate_messages(self.message(h), graph)
        z = self.norm(jnp.concatenate([h, m], axis=-1))
        return h + self.down(jax.nn.gelu(self.up(z)))


class MessagePassingGNN(nnx.Module):
    """Graph classifier ``x [B, N, F]`` -> logits ``[B, num_classes]`` with ``depth``
    message-passing layers, the same readout pooling as :class:`PLSTMGraphModel`."""

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        dim: int = 32,
        depth: int = 2,
        mlp_ratio: float = 2.0,
        rngs: nnx.Rngs,
    ):
        if depth < 1:
            raise ValueError(f"MessagePassingGNN: depth={depth}; allowed: >= 1")
        self.embed = nnx.Linear(in_features, dim, rngs=rngs)
        hidden = max(1, int(round(mlp_ratio * dim)))
        self.layers = nnx.List(
            [MessagePassingLayer(dim, hidden=hidden, rngs=rngs) for _ in range(depth)]
        )
        self.norm = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(
        self,
        x: Float[Array, "b n f"],
        graph: DAG,
        readout: Float[Array, " n"] | None = None,
    ) -> Float[Array, "b k"]:
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h, graph)
        return self.head(masked_mean_pool(self.norm(h), readout))
