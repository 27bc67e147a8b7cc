"""uint8 image ops with the exact semantics of ``torchvision.transforms.v2.functional``.

Every op takes ONE image ``[H, W, C]`` of dtype uint8 (HWC, unlike torchvision's CHW) and returns
uint8 ``[H, W, C]``; use ``jax.vmap`` for batches. Parameters may be Python numbers (validated at
trace time, geometry matrices built in double precision exactly as torchvision does) or traced
JAX scalars (not validated; geometry matrices then built in float32 and may differ from
torchvision in the last bit, which can flip a nearest-neighbour tie).

Parity with torchvision 0.29.1 / torch 2.14.1 on CPU (tests/augment/test_ops.py, golden fixtures):
bit-exact for invert, posterize, solarize, equalize, autocontrast, brightness, saturation,
contrast, sharpness and every warp, nearest and bilinear, with and without fill (0 of 315,648
bilinear fixture values differ). This needs torch's exact float32 rounding pattern, including
its fused multiply-adds, which ``_exact`` reproduces whatever XLA contracts. ``resize`` is not
part of the parity set.

References: Cubuk et al., "RandAugment" (2020), for the op set; torchvision v2 functional for the
pixel semantics.
"""

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt8

from augpar.augment import _color, _warp

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_sharpness",
    "affine",
    "autocontrast",
    "center_crop",
    "equalize",
    "flip_left_right",
    "flip_up_down",
    "invert",
    "pad",
    "posterize",
    "random_crop",
    "random_flip_left_right",
    "resize",
    "rotate",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
]

Image = UInt8[Array, "h w c"]
Scalar = float | int | Float[Array, ""] | Int[Array, ""]

INTERPOLATIONS = ("nearest", "bilinear")


# --------------------------------------------------------------------------------------------
# Validation helpers


def _is_static(x) -> bool:
    return isinstance(x, numbers.Number | np.number) or (isinstance(x, np.ndarray) and x.ndim == 0)


def check_image(image, *, name: str = "image", channels: Sequence[int] | None = None) -> None:
    """Raise ValueError unless ``image`` is a uint8 array of rank 3 (``[H, W, C]``)."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"{name} must be a uint8 array [H, W, C], got {type(image).__name__}")
    if len(shape) != 3:
        raise ValueError(f"{name} must have rank 3 [H, W, C], got shape {tuple(shape)}")
    if dtype != jnp.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {dtype}")
    if channels is not None and shape[-1] not in channels:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, channels))} channels, got {shape}"
        )


def _check_factor(name: str, factor) -> None:
    if _is_static(factor) and not float(factor) >= 0.0:
        raise ValueError(f"{name} must be a non-negative number (allowed [0, inf)), got {factor}")


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def fill_array(fill, channels: int) -> jax.Array | None:
    """Normalise ``fill`` (None, a number, or one number per channel) to float32 ``[C]``."""
    if fill is None:
        return None
    values = np.asarray(fill, np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, channels)
    if values.size != channels:
        raise ValueError(f"fill must be a number or {channels} numbers, got {fill!r}")
    if np.any(values < 0) or np.any(values > 255):
        raise ValueError(f"fill values must lie in [0, 255], got {fill!r}")
    return jnp.asarray(values, jnp.float32)


# --------------------------------------------------------------------------------------------
# Lookup-table ops


def invert(image: Image) -> Image:
    """``255 - x``. Args: image uint8 ``[H, W, C]``. Returns uint8 ``[H, W, C]``."""
    check_image(image)
    return jnp.bitwise_not(image)


def posterize_mask(bits) -> jax.Array | int:
    """Bit mask that keeps the ``bits`` most significant bits (255 for 8 bits, 0 for 0 bits)."""
    if _is_static(bits):
        bits = int(bits)
        return ((1 << bits) - 1) << (8 - bits)
    bits = jnp.asarray(bits, jnp.int32)
    return jnp.left_shift(jnp.left_shift(1, bits) - 1, 8 - bits)


def posterize(image: Image, bits: int | Int[Array, ""]) -> Image:
    """Keep the ``bits`` most significant bits of each value.

    Args:
      image: uint8 ``[H, W, C]``.
      bits: integer in 0..8 (8 = unchanged, 0 = black).
    """
    check_image(image)
    if _is_static(bits) and (int(bits) != bits or not 0 <= int(bits) <= 8):
        raise ValueError(f"posterize bits must be an integer in [0, 8], got {bits}")
    return image & jnp.asarray(posterize_mask(bits), jnp.uint8)


def solarize(image: Image, threshold: Scalar) -> Image:
    """Invert every value ``>= threshold`` (compared in float32).

    Args:
      image: uint8 ``[H, W, C]``.
      threshold: number ``<= 255`` (torchvision rejects larger ones); may be fractional.
    """
    check_image(image)
    if _is_static(threshold) and not float(threshold) <= 255.0:
        raise ValueError(
            f"solarize threshold must be <= 255 (allowed (-inf, 255]), got {threshold}"
        )
    thr = jnp.asarray(np.float32(threshold) if _is_static(threshold) else threshold, jnp.float32)
    return jnp.where(image.astype(jnp.float32) >= thr, jnp.bitwise_not(image), image)


def autocontrast(image: Image) -> Image:
    """Stretch each channel to [0, 255] (no cutoff); constant channels are unchanged.

    Args: image uint8 ``[H, W, C]``, C in {1, 3}. Returns uint8 ``[H, W, C]``.
    """
    check_image(image, channels=(1, 3))
    mn = jnp.min(image, axis=(0, 1))
    mx = jnp.max(image, axis=(0, 1))
    table = jax.vmap(_color.autocontrast_lut)(mn, mx)
    return _color.apply_lut(image, table)


def equalize(image: Image) -> Image:
    """Histogram equalisation per channel with PIL's rounding (torchvision's algorithm).

    Args: image uint8 ``[H, W, C]``. Returns uint8 ``[H, W, C]``.
    """
    check_image(image)
    num_pixels = image.shape[0] * image.shape[1]
    hists = jax.vmap(_color.histogram, in_axes=-1)(image)
    table = jax.vmap(_color.equalize_lut, in_axes=(0, None))(hists, num_pixels)
    return _color.apply_lut(image, table.astype(jnp.uint8))


# --------------------------------------------------------------------------------------------
# Blend ops


def _ratio_alpha(factor) -> tuple[jax.Array, jax.Array]:
    """``float32(f)`` and ``float32(1.0 - f)`` with the subtraction in double, as torch."""
    if _is_static(factor):
        f = float(factor)
        return jnp.float32(f), jnp.float32(1.0 - f)
    f = jnp.asarray(factor, jnp.float32)
    return f, jnp.float32(1.0) - f


def _blend_op(image, kind: int, factor) -> jax.Array:
    ratio, alpha = _ratio_alpha(factor)
    out = _color.blend(image.astype(jnp.float32), jnp.int32(kind), ratio, alpha)
    return _color.truncate_u8(out)


def adjust_brightness(image: Image, factor: Scalar) -> Image:
    """``trunc(x * factor)``. Args: image uint8 ``[H, W, C]``, factor >= 0."""
    check_image(image, channels=(1, 3))
    _check_factor("brightness factor", factor)
    return _blend_op(image, _color.DEG_ZERO, factor)


def adjust_saturation(image: Image, factor: Scalar) -> Image:
    """Blend with the (floored) grayscale image; 1-channel images are returned unchanged.

    Args: image uint8 ``[H, W, C]`` with C in {1, 3}; factor >= 0 (0 = gray, 1 = unchanged).
    """
    check_image(image, channels=(1, 3))
    _check_factor("saturation factor", factor)
    if image.shape[-1] == 1:
        return image
    return _blend_op(image, _color.DEG_GRAY, factor)


def adjust_contrast(image: Image, factor: Scalar) -> Image:
    """Blend with the mean of the floored grayscale image.

    Args: image uint8 ``[H, W, C]`` with C in {1, 3}; factor >= 0 (0 = flat mean gray).
    """
    check_image(image, channels=(1, 3))
    _check_factor("contrast factor", factor)
    return _blend_op(image, _color.DEG_MEAN, factor)


def adjust_sharpness(image: Image, factor: Scalar) -> Image:
    """Blend the interior with a rounded 3x3 smoothing; the 1-pixel border is unchanged.

    Args: image uint8 ``[H, W, C]`` with C in {1, 3}; factor >= 0 (0 = smoothed, 1 = unchanged).
    """
    check_image(image, channels=(1, 3))
    _check_factor("sharpness factor", factor)
    return _blend_op(image, _color.DEG_BLUR, factor)


# --------------------------------------------------------------------------------------------
# Geometry


def _pair(value, name: str) -> tuple:
    if isinstance(value, numbers.Number):
        return (value, 0.0) if name == "shear" else (value, value)
    seq = tuple(value)
    if len(seq) == 1:
        return (seq[0], seq[0])
    if len(seq) != 2:
        raise ValueError(f"{name} must be a number or a pair, got {value!r}")
    return seq


def _warp_static_or_traced(image, params, *, interpolation, fill):
    center, angle, translate, scale, shear = params
    static = all(_is_static(v) for v in (angle, scale, *translate, *shear))
    h, w = image.shape[0], image.shape[1]
    if center is None:
        center_f = (0.0, 0.0)
    else:
        center_f = (float(center[0]) - w * 0.5, float(center[1]) - h * 0.5)
    if static:
        matrix = _warp.inverse_affine_matrix(
            center_f,
            float(angle),
            tuple(float(t) for t in translate),
            float(scale),
            tuple(float(s) for s in shear),
        )
        matrix = jnp.asarray(matrix.astype(np.float32))
    else:
        matrix = _warp.inverse_affine_matrix_jnp(center_f, angle, translate, scale, shear)
    return _warp.warp(
        image, matrix, interpolation=interpolation, fill=fill_array(fill, image.shape[-1])
    )


def affine(
    image: Image,
    angle: Scalar = 0.0,
    translate: Sequence[Scalar] = (0, 0),
    scale: Scalar = 1.0,
    shear: Scalar | Sequence[Scalar] = (0.0, 0.0),
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = None,
    center: Sequence[float] | None = None,
) -> Image:
    """torchvision ``affine``: rotate (degrees, clockwise positive), translate (pixels), scale,
    shear (degrees), about ``center`` (pixels; default the image centre).

    Args:
      image: uint8 ``[H, W, C]``.
      angle, translate, scale, shear: as in torchvision (shear a number = x shear only).
      interpolation: "nearest" or "bilinear".
      fill: None (zero padding), a number or one number per channel in [0, 255].
      center: ``(x, y)`` in pixels, or None.

    Returns:
      uint8 ``[H, W, C]``.
    """
    check_image(image)
    _check_interpolation(interpolation)
    if _is_static(scale) and not float(scale) > 0.0:
        raise ValueError(f"scale must be positive (allowed (0, inf)), got {scale}")
    translate = _pair(translate, "translate")
    shear = _pair(shear, "shear")
    return _warp_static_or_traced(
        image, (center, angle, translate, scale, shear), interpolation=interpolation, fill=fill
    )


def rotate(
    image: Image,
    angle: Scalar,
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = None,
    center: Sequence[float] | None = None,
) -> Image:
    """Rotate counter-clockwise by ``angle`` degrees about the centre (torchvision ``rotate``,
    ``expand=False``), including its exact fast paths for 0/180 and, on square images, 90/270.

    Args:
      image: uint8 ``[H, W, C]``.
      angle: degrees (counter-clockwise).
      interpolation, fill, center: as in ``affine``.
    """
    check_image(image)
    _check_interpolation(interpolation)
    h, w = image.shape[0], image.shape[1]
    if center is None and _is_static(angle):
        a = float(angle) % 360
        if a == 0:
            return image
        if a == 180:
            return jnp.rot90(image, k=2, axes=(0, 1))
        if h == w and a in (90.0, 270.0):
            return jnp.rot90(image, k=1 if a == 90 else 3, axes=(0, 1))
        angle = a
    elif not _is_static(angle):
        angle = jnp.mod(jnp.asarray(angle, jnp.float32), 360.0)
    neg = -angle
    return _warp_static_or_traced(
        image, (center, neg, (0.0, 0.0), 1.0, (0.0, 0.0)), interpolation=interpolation, fill=fill
    )


def shear_x(
    image: Image,
    shear: Scalar,
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = None,
) -> Image:
    """RandAugment's ShearX: ``affine(shear=[degrees(atan(shear)), 0], center=[0, 0])``.

    Source column ``x + shear * (y + 0.5)`` for output pixel ``(x, y)``.
    Args: image uint8 ``[H, W, C]``; shear the slope (e.g. 0.3).
    """
    deg = math.degrees(math.atan(shear)) if _is_static(shear) else jnp.degrees(jnp.arctan(shear))
    check_image(image)
    return affine(
        image, 0.0, (0, 0), 1.0, (deg, 0.0), interpolation=interpolation, fill=fill, center=(0, 0)
    )


def shear_y(
    image: Image,
    shear: Scalar,
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = None,
) -> Image:
    """RandAugment's ShearY: ``affine(shear=[0, degrees(atan(shear))], center=[0, 0])``."""
    deg = math.degrees(math.atan(shear)) if _is_static(shear) else jnp.degrees(jnp.arctan(shear))
    check_image(image)
    return affine(
        image, 0.0, (0, 0), 1.0, (0.0, deg), interpolation=interpolation, fill=fill, center=(0, 0)
    )


def _int_pixels(pixels):
    # RandAugment passes int(magnitude): truncation toward zero.
    return int(pixels) if _is_static(pixels) else jnp.trunc(jnp.asarray(pixels, jnp.float32))


def translate_x(
    image: Image,
    pixels: Scalar,
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = None,
) -> Image:
    """RandAugment's TranslateX: content moves right by ``int(pixels)`` (truncated)."""
    check_image(image)
    return affine(
        image,
        0.0,
        (_int_pixels(pixels), 0),
        1.0,
        (0.0, 0.0),
        interpolation=interpolation,
        fill=fill,
    )


def translate_y(
    image: Image,
    pixels: Scalar,
    *,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = None,
) -> Image:
    """RandAugment's TranslateY: content moves down by ``int(pixels)`` (truncated)."""
    check_image(image)
    return affine(
        image,
        0.0,
        (0, _int_pixels(pixels)),
        1.0,
        (0.0, 0.0),
        interpolation=interpolation,
        fill=fill,
    )


# --------------------------------------------------------------------------------------------
# Crop, flip, resize (training-pipeline basics)


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
