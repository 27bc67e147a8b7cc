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
from jaxtyping import Array, Int

from augpar.augment import _color, _warp
from augpar.augment._checks import (  # noqa: F401  (re-exported: policies use them via ops)
    INTERPOLATIONS,
    Image,
    Scalar,
    _check_factor,
    _check_interpolation,
    _is_static,
    check_image,
    fill_array,
)
from augpar.augment.basics import (
    center_crop,
    flip_left_right,
    flip_up_down,
    pad,
    random_crop,
    random_flip_left_right,
    resize,
)

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
