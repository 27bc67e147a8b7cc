"""Patch embedding and learnable 2D position embeddings that resize to new grids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float


def resize_position_embedding(
    pos: Float[Array, "gh gw d"], grid: tuple[int, int], *, method: str = "bicubic"
) -> Float[Array, "h w d"]:
    """Resizes a 2D position embedding to a new token grid (identity when the grid matches).

    Args:
      pos: the learned embedding on the training grid, ``[gh, gw, d]``.
      grid: the target ``(h, w)`` in tokens.
      method: any ``jax.image.resize`` method; ``bicubic`` as in ViT fine-tuning at higher
        resolution.

    Returns:
      ``[h, w, d]``.
    """
    h, w = grid
    if h < 1 or w < 1:
        raise ValueError(f"Target grid must be positive; got {grid}.")
    if (h, w) == pos.shape[:2]:
        return pos
    return jax.image.resize(pos, (h, w, pos.shape[-1]), method=method).astype(pos.dtype)


def patchify(images: Float[Array, "b h w c"], patch_size: int) -> Float[Array, "b gh gw pc"]:
    """Cuts images into non-overlapping ``patch_size`` squares, flattened per patch.

    Raises:
      ValueError: if the image sides are not multiples of ``patch_size``.
    """
    b, h, w, c = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"Image size {h}x{w} is not a multiple of the patch size {patch_size}.")
    x = images.reshape(b, h // patch_size, patch_size, w // patch_size, patch_size, c)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(b, h // patch_size, w // patch_size, patch_size * patch_size * c)


class PatchEmbed(nnx.Module):
    """Linear patch embedding plus a learnable 2D position embedding resized to the input grid.

    ``__call__`` maps images ``[b, h, w, c]`` to tokens ``[b, h/p, w/p, dim]``; a grid other than
    the training grid ``(image_size/p)^2`` uses the bicubically resized position embedding.
    """

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        in_channels: int,
        dim: int,
        use_position_embedding: bool = True,
        rngs: nnx.Rngs,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}."
            )
        self.patch_size = patch_size
        self.proj = nnx.Linear(patch_size * patch_size * in_channels, dim, rngs=rngs)
        grid = image_size // patch_size
        self.pos = (
            nnx.Param(0.02 * jax.random.normal(rngs.params(), (grid, grid, dim)))
            if use_position_embedding
            else None
        )

    def __call__(self, images: Float[Array, "b h w c"]) -> Float[Array, "b gh gw d"]:
        tokens = self.proj(patchify(images, self.patch_size))
        if self.pos is not None:
            pos = resize_position_embedding(self.pos[...], tokens.shape[1:3])
            tokens = tokens + pos[None].astype(tokens.dtype)
        return tokens
