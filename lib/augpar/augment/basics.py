"""Crop, flip, pad and resize for uint8 images ``[H, W, C]``: the training-pipeline basics.

Re-exported by :mod:`augpar.augment.ops`. ``resize`` is not part of the torchvision parity set.
"""

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from augpar.augment._checks import Image, check_image

__all__ = [
    "center_crop",
    "flip_left_right",
    "flip_up_down",
    "pad",
    "random_crop",
    "random_flip_left_right",
    "resize",
]


def _size_pair(size, name: str = "size") -> tuple[int, int]:
    pair = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    if len(pair) != 2 or any(int(s) != s or s <= 0 for s in pair):
        raise ValueError(f"{name} must be a positive int or a pair (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def flip_left_right(image: Image) -> Image:
    """Mirror the width axis. Args: image ``[H, W, C]``."""
    check_image(image)
    return image[:, ::-1, :]


def flip_up_down(image: Image) -> Image:
    """Mirror the height axis. Args: image ``[H, W, C]``."""
    check_image(image)
    return image[::-1, :, :]


def random_flip_left_right(key: jax.Array, image: Image, *, p: float = 0.5) -> Image:
    """Mirror the width axis with probability ``p`` (one Bernoulli draw from ``key``)."""
    check_image(image)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    flip = jax.random.bernoulli(key, p)
    return jnp.where(flip, image[:, ::-1, :], image)


def pad(image: Image, padding, *, fill: float = 0, mode: str = "constant") -> Image:
    """Pad height and width (torchvision ``pad`` semantics for ``padding``).

    Args:
      image: uint8 ``[H, W, C]``.
      padding: int (all sides), ``(lr, tb)`` or ``(left, top, right, bottom)``.
      fill: constant in [0, 255] for mode "constant".
      mode: "constant", "edge", "reflect" or "symmetric".
    """
    check_image(image)
    if isinstance(padding, numbers.Integral):
        padding = (padding,) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        padding = (padding[0], padding[1], padding[0], padding[1])
    if len(padding) != 4 or min(padding) < 0:
        raise ValueError(f"padding must be 1, 2 or 4 non-negative ints, got {padding!r}")
    left, top, right, bottom = padding
    widths = ((top, bottom), (left, right), (0, 0))
    if mode == "constant":
        if not 0 <= fill <= 255:
            raise ValueError(f"fill must lie in [0, 255], got {fill}")
        return jnp.pad(image, widths, mode="constant", constant_values=np.uint8(fill))
    if mode not in ("edge", "reflect", "symmetric"):
        raise ValueError(f"mode must be constant/edge/reflect/symmetric, got {mode!r}")
    return jnp.pad(image, widths, mode=mode)


def random_crop(
    key: jax.Array,
    image: Image,
    size: int | tuple[int, int],
    *,
    padding=None,
    fill: float = 0,
    padding_mode: str = "constant",
) -> Image:
    """torchvision ``RandomCrop``: optional padding, then a uniformly placed ``size`` crop.

    Args:
      key: PRNG key (one draw of the top-left corner).
      image: uint8 ``[H, W, C]``.
      size: output ``(height, width)`` or an int.
      padding, fill, padding_mode: as in ``pad`` (CIFAR: ``padding=4``).

    Returns:
      uint8 ``[size_h, size_w, C]``.
    """
    check_image(image)
    th, tw = _size_pair(size)
    if padding is not None:
        image = pad(image, padding, fill=fill, mode=padding_mode)
    h, w, c = image.shape
    if th > h or tw > w:
        raise ValueError(f"crop size {(th, tw)} exceeds the (padded) image size {(h, w)}")
    key_y, key_x = jax.random.split(key)
    top = jax.random.randint(key_y, (), 0, h - th + 1)
    left = jax.random.randint(key_x, (), 0, w - tw + 1)
    return jax.lax.dynamic_slice(image, (top, left, 0), (th, tw, c))


def center_crop(image: Image, size: int | tuple[int, int]) -> Image:
    """torchvision ``center_crop`` (top = ``round((H - h) / 2)``, Python's half-to-even round).

    Pads with zeros first when ``size`` exceeds the image, as torchvision does.
    """
    check_image(image)
    th, tw = _size_pair(size)
    h, w, _ = image.shape
    if th > h or tw > w:
        pad_lr = ((tw - w) // 2 if tw > w else 0, (tw - w + 1) // 2 if tw > w else 0)
        pad_tb = ((th - h) // 2 if th > h else 0, (th - h + 1) // 2 if th > h else 0)
        image = pad(image, (pad_lr[0], pad_tb[0], pad_lr[1], pad_tb[1]))
        h, w, _ = image.shape
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return image[top : top + th, left : left + tw, :]


def resize(image: Image, size: int | tuple[int, int], *, interpolation: str = "bilinear") -> Image:
    """Resize to ``size`` with ``jax.image.resize`` (antialiased when downsampling).

    Not bit-exact to torchvision: ``resize`` is outside the parity set; values round half to even.
    Args: image uint8 ``[H, W, C]``; size ``(height, width)`` or an int (square);
    interpolation "nearest", "bilinear" or "bicubic".
    """
    check_image(image)
    th, tw = _size_pair(size)
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        raise ValueError(f"interpolation must be nearest/bilinear/bicubic, got {interpolation!r}")
    method = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}[interpolation]
    out = jax.image.resize(image.astype(jnp.float32), (th, tw, image.shape[-1]), method=method)
    return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
