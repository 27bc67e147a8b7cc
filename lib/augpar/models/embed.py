"""Patch embedding, learnable 2D position embeddings that resize to new grids, head inits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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


def sincos_position_embedding(
    grid: tuple[int, int],
    dim: int,
    *,
    train_grid: tuple[int, int] | None = None,
    temperature: float = 10_000.0,
) -> Float[Array, "h w d"]:
    """Fixed 2D sine-cosine position embedding (as in MAE / big_vision's ``sincos2d``).

    Token ``(i, j)`` of a ``grid`` sits at ``((i + .5) * th / h - .5, (j + .5) * tw / w - .5)`` in
    units of the training grid ``(th, tw)``: on the training grid these are the integer indices;
    on a finer grid of the same image they are the in-between positions, i.e. the continuous
    embedding is interpolated, not extended.

    Args:
      grid: ``(h, w)`` tokens.
      dim: embedding width, a multiple of 4 (a quarter each for sin/cos of rows and columns).
      train_grid: the grid the model was trained on; defaults to ``grid``.

    Returns:
      ``[h, w, dim]`` float32.
    """
    if dim % 4:
        raise ValueError(f"sincos position embedding needs dim divisible by 4; got {dim}.")
    h, w = grid
    th, tw = train_grid or grid
    ys = (jnp.arange(h) + 0.5) * (th / h) - 0.5
    xs = (jnp.arange(w) + 0.5) * (tw / w) - 0.5
    omega = 1.0 / temperature ** (jnp.arange(dim // 4) / (dim // 4))
    y_emb = ys[:, None] * omega[None, :]  # [h, d/4]
    x_emb = xs[:, None] * omega[None, :]  # [w, d/4]
    y_part = jnp.concatenate([jnp.sin(y_emb), jnp.cos(y_emb)], axis=-1)  # [h, d/2]
    x_part = jnp.concatenate([jnp.sin(x_emb), jnp.cos(x_emb)], axis=-1)  # [w, d/2]
    return jnp.concatenate(
        [
            jnp.broadcast_to(y_part[:, None, :], (h, w, dim // 2)),
            jnp.broadcast_to(x_part[None, :, :], (h, w, dim // 2)),
        ],
        axis=-1,
    ).astype(jnp.float32)


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


POSITION_EMBEDDINGS = ("learned", "sincos2d", "none")
HEAD_INITS = ("small", "zero")


def head_init_fn(kind: str, fan_in: int) -> nnx.Initializer:
    """Initialiser of a classifier head's kernel.

    ``"small"``: normal with std ``sqrt(2 / (5 fan_in))``, the SmallInit of the pLSTM paper's
    code (its ViT and pLSTM heads). ``"zero"``: all zeros (big_vision's default). A zero head
    passes no gradient to the body at step 0, and the body only starts to learn once the head
    has grown along whatever its random features happen to say about the label; on arrow
    pointing both of our models stayed at ln 2 for 1,500+ steps with it and left the plateau
    with SmallInit (experiments/arrow_pointing/README.md).
    """
    if kind not in HEAD_INITS:
        raise ValueError(f"head_init={kind!r}; allowed: {HEAD_INITS}")
    if kind == "zero":
        return nnx.initializers.zeros
    return nnx.initializers.normal(stddev=float(np.sqrt(2.0 / (5.0 * fan_in))))


class PatchEmbed(nnx.Module):
    """Linear patch embedding plus a 2D position embedding fitted to the input grid.

    ``__call__`` maps images ``[b, h, w, c]`` to tokens ``[b, h/p, w/p, dim]``. Position
    embeddings: ``"learned"`` (resized bicubically on a grid other than the training grid
    ``(image_size/p)^2``), ``"sincos2d"`` (fixed, evaluated at the token positions in units of the
    training grid), or ``"none"`` (also selected by ``use_position_embedding=False``).
    """

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        in_channels: int,
        dim: int,
        position_embedding: str = "learned",
        use_position_embedding: bool = True,
        rngs: nnx.Rngs,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}."
            )
        if position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"position_embedding {position_embedding!r}; allowed: {POSITION_EMBEDDINGS}."
            )
        self.patch_size = patch_size
        self.kind = position_embedding if use_position_embedding else "none"
        self.proj = nnx.Linear(patch_size * patch_size * in_channels, dim, rngs=rngs)
        self.grid = (image_size // patch_size,) * 2
        self.pos = (
            nnx.Param(0.02 * jax.random.normal(rngs.params(), (*self.grid, dim)))
            if self.kind == "learned"
            else None
        )

    def __call__(self, images: Float[Array, "b h w c"]) -> Float[Array, "b gh gw d"]:
        tokens = self.proj(patchify(images, self.patch_size))
        grid, dim = tokens.shape[1:3], tokens.shape[-1]
        if self.kind == "learned":
            pos = resize_position_embedding(self.pos[...], grid)
        elif self.kind == "sincos2d":
            pos = sincos_position_embedding(grid, dim, train_grid=self.grid)
        else:
            return tokens
        return tokens + pos[None].astype(tokens.dtype)
