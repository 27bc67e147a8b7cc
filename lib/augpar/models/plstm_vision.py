"""pLSTM vision model (Pöppel et al., 2025, arXiv:2506.11997) in Flax NNX.

Patch embedding with a learnable 2D position embedding (bicubically resized when the token grid
changes, e.g. when evaluating at a larger image size), a stack of "PD" blocks (a P-mode then a
D-mode pLSTM block, each pre-norm with an MLP), a final RMSNorm, corner pooling (the four
corner tokens, each the end point of one scan orientation) and a linear head.
"""

from __future__ import annotations

from typing import Any

from flax import nnx
from jaxtyping import Array, Float

from augpar.models.embed import PatchEmbed, head_init_fn
from augpar.plstm.layers import METHODS_2D, PDBlock, corner_pool

# depth counts PD blocks (two pLSTM layers each). T/S/B follow the paper's configs (ImageNet,
# 224 px, 1000 classes: about 6.3 M / 23.3 M / 89.1 M parameters); the small sizes are for CPU.
PLSTM_VISION_SIZES: dict[str, dict[str, Any]] = {
    "T": dict(dim=192, num_heads=3, depth=6),
    "S": dict(dim=384, num_heads=6, depth=6),
    "B": dict(dim=768, num_heads=12, depth=6),
    "cpu_small": dict(dim=64, num_heads=4, depth=2),
    "cpu_tiny": dict(dim=32, num_heads=2, depth=1),
}

POOLINGS = ("corners", "mean")


class PLSTMVisionModel(nnx.Module):
    """pLSTM image classifier: ``[B, H, W, C]`` images -> ``[B, num_classes]`` logits.

    Args:
      image_size: training image side (the position embedding covers ``image_size/patch``
        tokens per side and is resized for other sizes).
      patch_size: patch side; image sides must be multiples of it.
      num_classes: head width.
      size: optional key of :data:`PLSTM_VISION_SIZES`; sets dim/num_heads/depth (explicit
        arguments override it).
      dim, num_heads, depth: width, heads per pLSTM layer, number of PD blocks.
      mlp_ratio, mlp_multiple: MLP inner width ``mlp_ratio * dim`` rounded up to
        ``mlp_multiple`` (paper: 4 and 64).
      pooling: ``"corners"`` (paper) or ``"mean"``.
      use_position_embedding: learnable 2D position embedding on/off.
      method, chunk_size: :func:`augpar.plstm.scan2d.plstm_2d` form used by every layer.
      layer_kwargs: further keyword arguments for :class:`augpar.plstm.layers.PLSTM2DLayer`
        (gate bias inits, chirality).
      head_init: ``"small"`` (SmallInit, the paper's) or ``"zero"``
        (:func:`augpar.models.embed.head_init_fn`).
    """

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        num_classes: int,
        size: str | None = None,
        dim: int | None = None,
        num_heads: int | None = None,
        depth: int | None = None,
        mlp_ratio: float = 4.0,
        mlp_multiple: int = 64,
        in_channels: int = 3,
        pooling: str = "corners",
        use_position_embedding: bool = True,
        method: str = "dense",
        chunk_size: int = 8,
        layer_kwargs: dict[str, Any] | None = None,
        head_init: str = "small",
        rngs: nnx.Rngs,
    ):
        if size is not None and size not in PLSTM_VISION_SIZES:
            raise ValueError(
                f"PLSTMVisionModel: size={size!r}; allowed: {sorted(PLSTM_VISION_SIZES)} or None"
            )
        preset = dict(PLSTM_VISION_SIZES[size]) if size is not None else {}
        given = {"dim": dim, "num_heads": num_heads, "depth": depth}
        preset.update({k: v for k, v in given.items() if v is not None})
        missing = [k for k in given if k not in preset]
        if missing:
            raise ValueError(f"PLSTMVisionModel: {missing} not given and no size preset chosen")
        dim, num_heads, depth = preset["dim"], preset["num_heads"], preset["depth"]
        if depth < 1:
            raise ValueError(f"PLSTMVisionModel: depth={depth}; allowed: >= 1 PD blocks")
        if pooling not in POOLINGS:
            raise ValueError(f"PLSTMVisionModel: pooling={pooling!r}; allowed: {POOLINGS}")
        if method not in METHODS_2D:
            raise ValueError(f"PLSTMVisionModel: method={method!r}; allowed: {METHODS_2D}")
        self.dim, self.num_heads, self.depth, self.pooling = dim, num_heads, depth, pooling
        self.embed = PatchEmbed(
            image_size=image_size,
            patch_size=patch_size,
            in_channels=in_channels,
            dim=dim,
            use_position_embedding=use_position_embedding,
            rngs=rngs,
        )
        kwargs = dict(layer_kwargs or {}, method=method, chunk_size=chunk_size)
        self.blocks = nnx.List(
            [
                PDBlock(
                    dim,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    mlp_multiple=mlp_multiple,
                    rngs=rngs,
                    **kwargs,
                )
                for _ in range(depth)
            ]
        )
        self.norm = nnx.RMSNorm(dim, epsilon=1e-5, rngs=rngs)
        pooled = 4 * dim if pooling == "corners" else dim
        self.head = nnx.Linear(
            pooled, num_classes, kernel_init=head_init_fn(head_init, pooled), rngs=rngs
        )

    def features(self, images: Float[Array, "b h w c"]) -> Float[Array, "b gh gw d"]:
        """Normalised token grid ``[B, H/p, W/p, dim]`` after all blocks."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def __call__(
        self,
        images: Float[Array, "b h w c"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b k"]:
        """Logits ``[B, num_classes]``; ``deterministic``/``rngs`` are accepted for a common
        interface with :class:`augpar.models.ViT` (the model has no dropout)."""
        del deterministic, rngs
        if images.ndim != 4:
            raise ValueError(f"PLSTMVisionModel: images shape {images.shape}; expected [B,H,W,C]")
        x = self.features(images)
        pooled = corner_pool(x) if self.pooling == "corners" else x.mean(axis=(1, 2))
        return self.head(pooled)
