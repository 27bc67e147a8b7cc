"""Validation helpers and type aliases shared by the uint8 image ops (``augpar.augment.ops``,
``augpar.augment.basics``)."""

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt8

Image = UInt8[Array, "h w c"]
Scalar = float | int | Float[Array, ""] | Int[Array, ""]

INTERPOLATIONS = ("nearest", "bilinear")


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
