"""Affine warps with torchvision's conventions: inverse matrix, sampling grid, grid sampler.

The inverse matrix is built in Python doubles (``inverse_affine_matrix``, as torchvision does)
when the parameters are static, or in float32 from traced values (``inverse_affine_matrix_jnp``,
which may differ in the last bit). ``warp`` then reproduces ``_affine_grid`` +
``grid_sample(align_corners=False, padding_mode="zeros")`` on one ``[H, W, C]`` image.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from augpar.augment import _exact


def inverse_affine_matrix(
    center: tuple[float, float],
    angle: float,
    translate: tuple[float, float],
    scale: float,
    shear: tuple[float, float],
) -> np.ndarray:
    """torchvision's inverse affine matrix (6 float64 values), centre relative to image centre."""
    rot = math.radians(angle)
    sx = math.radians(shear[0])
    sy = math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    cos_sy = math.cos(sy)
    tan_sx = math.tan(sx)
    rot_minus_sy = rot - sy
    cx_plus_tx = cx + tx
    cy_plus_ty = cy + ty
    a = math.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot_minus_sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    m[2] += cx - m[0] * cx_plus_tx - m[1] * cy_plus_ty
    m[5] += cy - m[3] * cx_plus_tx - m[4] * cy_plus_ty
    return np.asarray(m, np.float64)


def inverse_affine_matrix_jnp(center, angle, translate, scale, shear) -> jax.Array:
    """Same as ``inverse_affine_matrix`` for traced float32 parameters; returns ``[6]``."""
    f32 = jnp.float32
    deg = f32(math.pi / 180.0)
    rot = jnp.asarray(angle, f32) * deg
    sx = jnp.asarray(shear[0], f32) * deg
    sy = jnp.asarray(shear[1], f32) * deg
    cx, cy = (jnp.asarray(v, f32) for v in center)
    tx, ty = (jnp.asarray(v, f32) for v in translate)
    scale = jnp.asarray(scale, f32)
    cos_sy = jnp.cos(sy)
    tan_sx = jnp.tan(sx)
    a = jnp.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + jnp.sin(rot))
    c = jnp.sin(rot - sy) / cos_sy
    d = jnp.cos(rot) - c * tan_sx
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    return jnp.stack([m0, m1, m2, m3, m4, m5])


def identity_matrix() -> np.ndarray:
    return np.asarray([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], np.float64)


def grid_coefficients_np(matrix: np.ndarray, h: int, w: int) -> np.ndarray:
    """torchvision's rescaled theta: float32 ``matrix / (W/2, W/2, W/2, H/2, H/2, H/2)``."""
    m = np.asarray(matrix, np.float64).astype(np.float32)
    half = np.asarray([0.5 * w] * 3 + [0.5 * h] * 3, np.float32)
    return (m / half).astype(np.float32)


def grid_coefficients(matrix: jax.Array, h: int, w: int) -> jax.Array:
    """``grid_coefficients_np`` for a traced float32 ``matrix[6]`` (IEEE division)."""
    f32 = jnp.float32
    m = jnp.asarray(matrix, f32)
    half = jnp.asarray([0.5 * w] * 3 + [0.5 * h] * 3, f32)
    return _exact.div(m, half)


def _source_coords(coeffs: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Source pixel coordinates ``(ix, iy)``, each ``[H, W]``, for float32 ``coeffs[6]``.

    Follows torchvision's ``_affine_grid`` (theta divided by ``(W/2, H/2)``, then a float32
    GEMM with fused multiply-adds) and ATen's grid-sampler unnormalisation
    ``(g + 1) * (size / 2) - 0.5`` with align_corners=False, also fused: the CPU kernels are
    compiled with FMA contraction, and only this rounding pattern reproduces them bit for bit.
    """
    f32 = jnp.float32
    t00, t01, t02, t10, t11, t12 = (coeffs[k] for k in range(6))
    # x varies along columns, y along rows: the products that depend on one of them only are
    # computed on [1, W] / [H, 1] and broadcast inside the fused multiply-add (same values as
    # on the full grid, a fraction of the work).
    x = (jnp.arange(w, dtype=f32) - f32((w - 1) * 0.5))[None, :]
    y = (jnp.arange(h, dtype=f32) - f32((h - 1) * 0.5))[:, None]
    gx = _exact.fma(y, t01, _exact.mul(x, t00)) + t02
    gy = _exact.fma(y, t11, _exact.mul(x, t10)) + t12
    ix = _exact.fma(gx + 1.0, f32(w / 2), f32(-0.5))
    iy = _exact.fma(gy + 1.0, f32(h / 2), f32(-0.5))
    return ix, iy


def warp(
    image_u8: jax.Array,
    matrix: jax.Array,
    *,
    interpolation: str,
    fill: jax.Array | None,
) -> jax.Array:
    """Warp one uint8 image ``[H, W, C]`` with a float32 inverse matrix ``[6]``."""
    h, w = image_u8.shape[0], image_u8.shape[1]
    # A constant matrix (static parameters under jit) would let XLA constant-fold and simplify
    # the grid arithmetic, which changes its rounding; the barrier keeps the computed pattern.
    matrix = jax.lax.optimization_barrier(jnp.asarray(matrix, jnp.float32))
    return warp_coefficients(
        image_u8, grid_coefficients(matrix, h, w), interpolation=interpolation, fill=fill
    )


def warp_coefficients(
    image_u8: jax.Array,
    coeffs: jax.Array,
    *,
    interpolation: str,
    fill: jax.Array | None,
) -> jax.Array:
    """Warp one uint8 image ``[H, W, C]`` given its rescaled theta (``grid_coefficients``).

    Args:
      image_u8: uint8 ``[H, W, C]``.
      coeffs: float32 ``[6]``, torchvision's inverse affine matrix (output -> input, centred)
        divided by ``(W/2, W/2, W/2, H/2, H/2, H/2)``.
      interpolation: ``"nearest"`` (round half to even) or ``"bilinear"``.
      fill: None (zero padding, torchvision's ``fill=None``) or float32 ``[C]``: outside pixels
        take this value, via torchvision's warped ones-mask.

    Returns:
      uint8 ``[H, W, C]``, rounded half to even.
    """
    h, w, c = image_u8.shape
    ix, iy = _source_coords(coeffs, h, w)
    if interpolation == "nearest":
        # Pure uint8 gather: outside pixels index an extra row holding the rounded fill (or 0),
        # which is what rounding the float fill would give; no float image is formed.
        xn = jnp.round(ix)
        yn = jnp.round(iy)
        inside = (xn >= 0) & (xn <= w - 1) & (yn >= 0) & (yn <= h - 1)
        idx = jnp.where(inside, yn.astype(jnp.int32) * w + xn.astype(jnp.int32), jnp.int32(h * w))
        pad = jnp.zeros((1, c), jnp.uint8) if fill is None else jnp.round(fill)[None, :]
        table = jnp.concatenate([image_u8.reshape(h * w, c), pad.astype(jnp.uint8)])
        return table[idx]
    if interpolation != "bilinear":
        raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    flat = image_u8.reshape(h * w, c).astype(jnp.float32)
    x0 = jnp.floor(ix)
    y0 = jnp.floor(iy)
    wx = ix - x0
    ex = 1.0 - wx
    wy = iy - y0
    ey = 1.0 - wy
    taps = []
    for dy, ky in ((0, ey), (1, wy)):
        for dx, kx in ((0, ex), (1, wx)):
            xx = x0 + dx
            yy = y0 + dy
            inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
            idx = jnp.clip(yy, 0, h - 1).astype(jnp.int32) * w + jnp.clip(xx, 0, w - 1).astype(
                jnp.int32
            )
            weight = _exact.mul(ky, kx)
            taps.append((inside, idx, weight))
    # ATen accumulates nw*v + ne*v + sw*v + se*v with fused multiply-adds.
    acc = None
    mask = None
    for inside, idx, weight in taps:
        val = jnp.where(inside[..., None], flat[idx], 0.0)
        wb = weight[..., None]
        acc = _exact.mul(val, wb) if acc is None else _exact.fma(val, wb, acc)
        if fill is not None:
            ones = inside.astype(jnp.float32)
            mask = _exact.mul(ones, weight) if mask is None else _exact.fma(ones, weight, mask)
    if fill is not None:
        fill_b = fill[None, None, :]
        acc = _exact.mul(acc - fill_b, mask[..., None]) + fill_b
    return jnp.round(acc).astype(jnp.uint8)
