"""Vision Transformer (Dosovitskiy et al., 2021) in Flax NNX, with position-embedding resizing.

Evaluating at a larger image size than trained on interpolates the position embedding
bicubically, as in the arrow-pointing extrapolation benchmark of the pLSTM paper.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from augpar.models.attention import SelfAttention
from augpar.models.embed import PatchEmbed, head_init_fn


class MLP(nnx.Module):
    """Two-layer GELU MLP, ``dim -> hidden -> dim``."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        x = jax.nn.gelu(self.fc1(x))
        return self.fc2(self.drop(x, deterministic=deterministic, rngs=rngs))


class EncoderBlock(nnx.Module):
    """Pre-norm Transformer block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, *, dropout: float, rngs: nnx.Rngs
    ):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = SelfAttention(dim, num_heads, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout, rngs=rngs)

    def __call__(self, x, *, deterministic: bool = True, rngs: nnx.Rngs | None = None):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x), deterministic=deterministic, rngs=rngs)


class ViT(nnx.Module):
    """ViT classifier: class-token or mean pooling, position embedding resized to the input grid.

    Sizes: ViT-T is ``dim=192, depth=12, num_heads=3``. ``head_init``: ``"small"`` (the pLSTM
    paper's SmallInit, default) or ``"zero"`` (see :func:`augpar.models.embed.head_init_fn`).
    """

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        num_classes: int,
        dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
        dropout: float = 0.0,
        position_embedding: str = "learned",
        pool: str = "cls",
        head_init: str = "small",
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}.")
        if pool not in ("cls", "gap"):
            raise ValueError(f"pool {pool!r}; allowed: 'cls' (class token) or 'gap' (mean).")
        self.pool = pool
        self.embed = PatchEmbed(
            image_size=image_size,
            patch_size=patch_size,
            in_channels=in_channels,
            dim=dim,
            position_embedding=position_embedding,
            rngs=rngs,
        )
        self.cls = nnx.Param(jnp.zeros((1, 1, dim))) if pool == "cls" else None
        self.blocks = nnx.List(
            [
                EncoderBlock(dim, num_heads, mlp_ratio, dropout=dropout, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(
            dim, num_classes, kernel_init=head_init_fn(head_init, dim), rngs=rngs
        )

    def __call__(
        self,
        images: Float[Array, "b h w c"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b k"]:
        """Logits ``[b, num_classes]`` for images ``[b, h, w, c]`` (sides: patch multiples)."""
        tokens = self.embed(images)
        b = tokens.shape[0]
        x = tokens.reshape(b, -1, tokens.shape[-1])
        if self.pool == "cls":
            cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (b, 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
        for block in self.blocks:
            x = block(x, deterministic=deterministic, rngs=rngs)
        pooled = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
        return self.head(self.norm(pooled))
