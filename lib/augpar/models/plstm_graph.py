"""pLSTM graph model (Pöppel et al., 2025, arXiv:2506.11997) in Flax NNX.

Node features -> linear embedding -> ``depth`` pLSTM-DAG blocks (alternating P- and D-mode,
see :class:`augpar.plstm.layers.PLSTMDAGLayer`) -> RMSNorm -> pooling over readout nodes ->
linear head. One pLSTM layer carries information along every path of the DAG, however long.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from augpar.plstm.graph import DAG
from augpar.plstm.layers import MODES_2D, PLSTMDAGBlock


def masked_mean_pool(
    x: Float[Array, "b n d"], weights: Float[Array, " n"] | None
) -> Float[Array, "b d"]:
    """Weighted mean over nodes (``weights`` ``[N]`` >= 0, e.g. a 0/1 readout mask); the plain
    mean when ``weights`` is None."""
    if weights is None:
        return x.mean(axis=1)
    if weights.shape != (x.shape[1],):
        raise ValueError(f"masked_mean_pool: weights {weights.shape}; expected ({x.shape[1]},)")
    w = weights.astype(x.dtype)
    return jnp.einsum("bnd,n->bd", x, w) / jnp.maximum(w.sum(), 1e-6)


class PLSTMGraphModel(nnx.Module):
    """Graph classifier: ``x [B, N, F]`` on a shared DAG -> logits ``[B, num_classes]``.

    Args:
      in_features: F; dim, num_heads: width and heads of the pLSTM layers.
      depth: number of pLSTM-DAG blocks (each one pLSTM layer and one MLP).
      modes: mode of each block, cycled (default ``"PD"``: P, D, P, ...).
      mlp_ratio, mlp_multiple: MLP inner width.
    """

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        dim: int = 32,
        num_heads: int = 2,
        depth: int = 2,
        modes: str = "PD",
        mlp_ratio: float = 2.0,
        mlp_multiple: int = 16,
        rngs: nnx.Rngs,
    ):
        if depth < 1 or not modes or any(m not in MODES_2D for m in modes):
            raise ValueError(
                f"PLSTMGraphModel: depth={depth}, modes={modes!r}; allowed: depth >= 1 and "
                f"a non-empty string over {MODES_2D}"
            )
        self.embed = nnx.Linear(in_features, dim, rngs=rngs)
        self.blocks = nnx.List(
            [
                PLSTMDAGBlock(
                    dim,
                    num_heads=num_heads,
                    mode=modes[i % len(modes)],
                    mlp_ratio=mlp_ratio,
                    mlp_multiple=mlp_multiple,
                    rngs=rngs,
                )
                for i in range(depth)
            ]
        )
        self.norm = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(
        self,
        x: Float[Array, "b n f"],
        graph: DAG,
        readout: Float[Array, " n"] | None = None,
    ) -> Float[Array, "b k"]:
        """Logits; ``readout`` weights the nodes pooled for the head (None: all nodes)."""
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, graph)
        return self.head(masked_mean_pool(self.norm(h), readout))
