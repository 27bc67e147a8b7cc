"""Colour stages shared by the ops and the policies: blends and per-channel lookup tables.

Everything here works on one image ``[H, W, C]`` with per-image parameters that may be traced,
so the policies can vmap it over a batch. The float32 rounding pattern follows torchvision's
uint8 tensor kernels (see ``_exact``): colour ops truncate (``clamp`` then cast), the blend is
``x * ratio`` (rounded) plus ``degenerate * (1 - ratio)`` as one fused multiply-add.
"""

import jax
import jax.numpy as jnp

from augpar.augment import _exact

# torchvision's grayscale weights, as the float32 scalars its kernels use.
_GRAY_R, _GRAY_G, _GRAY_B = 0.2989, 0.587, 0.114

# Degenerate images for the blend stage.
DEG_ZERO, DEG_GRAY, DEG_MEAN, DEG_BLUR = 0, 1, 2, 3
# Lookup-table kinds.
LUT_IDENTITY, LUT_POSTERIZE, LUT_SOLARIZE, LUT_AUTOCONTRAST, LUT_EQUALIZE, LUT_INVERT = range(6)


def truncate_u8(x: jax.Array) -> jax.Array:
    """``clamp(0, 255)`` then cast to uint8 (truncation toward zero), as torch's ``.to(uint8)``."""
    return jnp.clip(x, 0.0, 255.0).astype(jnp.uint8)


def grayscale_floor(image_f: jax.Array) -> jax.Array:
    """Floored luma ``[H, W]`` of a float32 RGB image holding integers, as torchvision computes it.

    torchvision: ``r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)`` then ``floor``;
    the two ``add_`` with ``alpha`` are fused multiply-adds on CPU.
    """
    r, g, b = image_f[..., 0], image_f[..., 1], image_f[..., 2]
    acc = _exact.mul(r, jnp.float32(_GRAY_R))
    acc = _exact.fma(g, jnp.float32(_GRAY_G), acc)
    acc = _exact.fma(b, jnp.float32(_GRAY_B), acc)
    return jnp.floor(acc)


def sharpness_degenerate(image_f: jax.Array) -> jax.Array:
    """Rounded 3x3 smoothing ``[[1,1,1],[1,5,1],[1,1,1]]/13`` on the interior, original border.

    The exact value ``(sum9 + 4 * centre) / 13`` is never within 1/26 of a half-integer, so the
    float order of the 9-tap sum cannot change the rounded result.
    """
    h, w = image_f.shape[0], image_f.shape[1]
    if h <= 2 or w <= 2:
        return image_f
    # Integer arithmetic: exact, then one correctly rounded division.
    x = image_f.astype(jnp.int32)
    total = (
        x[:-2, :-2]
        + x[:-2, 1:-1]
        + x[:-2, 2:]
        + x[1:-1, :-2]
        + 5 * x[1:-1, 1:-1]
        + x[1:-1, 2:]
        + x[2:, :-2]
        + x[2:, 1:-1]
        + x[2:, 2:]
    )
    # round-half-even of total / 13; ties cannot occur (13 is odd), so floor((2t + 13) / 26).
    blurred = ((2 * total + 13) // 26).astype(jnp.float32)
    return image_f.at[1:-1, 1:-1].set(blurred)


def blend(
    image_f: jax.Array,
    kind: jax.Array,
    ratio: jax.Array,
    alpha: jax.Array,
    *,
    with_gray: bool = True,
    with_blur: bool = True,
    barrier: bool = True,
) -> jax.Array:
    """One blend with a per-image degenerate; returns float32 ``[H, W, C]`` before truncation.

    Args:
      image_f: float32 ``[H, W, C]`` holding integers 0..255.
      kind: int32 scalar, one of ``DEG_ZERO`` (brightness), ``DEG_GRAY`` (saturation),
        ``DEG_MEAN`` (contrast), ``DEG_BLUR`` (sharpness).
      ratio: float32 scalar, the factor as torch sees it (``float32(f)``).
      alpha: float32 scalar, ``float32(1.0 - f)`` computed in double precision.
      with_gray: compute the gray and mean degenerates (static; False only when ``kind`` is
        neither ``DEG_GRAY`` nor ``DEG_MEAN``, whose results are then wrong).
      with_blur: compute the smoothed degenerate (static; False only when ``kind`` is never
        ``DEG_BLUR``). The policies' batch-level gating uses both to skip unused work.
      barrier: materialise the degenerate (``materialize``) so that a fused producer is not
        recomputed; values are the same either way (False is much faster where the input is
        already in memory: the dot costs more than it saves there).

    Returns:
      ``x * ratio + deg * alpha`` with torchvision's rounding; for sharpness
      ``x + (blur - x) * alpha``. Identity when ``ratio == 1`` and ``alpha == 0``.
    """
    c = image_f.shape[-1]
    # Constant factors (static parameters under jit) must not be folded into the arithmetic.
    ratio, alpha = jax.lax.optimization_barrier(
        (jnp.asarray(ratio, jnp.float32), jnp.asarray(alpha, jnp.float32))
    )
    if c != 3:
        # torchvision returns 1-channel images unchanged for saturation.
        saturation = kind == DEG_GRAY
        ratio = jnp.where(saturation, jnp.float32(1.0), ratio)
        alpha = jnp.where(saturation, jnp.float32(0.0), alpha)
    deg = jnp.zeros_like(image_f)
    if with_gray:
        gray = grayscale_floor(image_f)[..., None] if c == 3 else image_f
        # Contrast: mean of the floored gray. The integer sum is exact; the float32 mean is one
        # correctly rounded division, as torch's sum-then-divide.
        total = jnp.sum(gray.astype(jnp.int32))
        mean = _exact.div(total.astype(jnp.float32), jnp.float32(gray.shape[0] * gray.shape[1]))
        deg = jnp.where(
            kind == DEG_GRAY,
            jnp.broadcast_to(gray, image_f.shape),
            jnp.where(kind == DEG_MEAN, jnp.broadcast_to(mean, image_f.shape), deg),
        )
    if with_blur:
        # Sharpness: x + (blur - x) * alpha, i.e. fma(blur - x, alpha, x * 1).
        is_sharp = kind == DEG_BLUR
        deg = jnp.where(is_sharp, sharpness_degenerate(image_f) - image_f, deg)
        ratio = jnp.where(is_sharp, jnp.float32(1.0), ratio)
    if barrier:
        deg = materialize(deg)
    scaled = _exact.mul(image_f, ratio)
    return _exact.fma(deg, alpha, scaled)


def materialize(x: jax.Array) -> jax.Array:
    """Identity on float32 ``[..., C]`` (exact: ``x @ I``) that XLA on CPU will not fuse.

    XLA fuses cheap-looking producers into every consumer and recomputes them there; the
    float-exact arithmetic here reads each operand several times, so a fused gather or 9-tap
    smoothing would be recomputed many times. An ``optimization_barrier`` does not stop this
    on CPU; a dot does.
    """
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    return jnp.einsum("...c,cd->...d", x, eye, precision=jax.lax.Precision.HIGHEST)


def histogram(channel_u8: jax.Array) -> jax.Array:
    """256-bin int32 histogram of a uint8 array."""
    flat = channel_u8.reshape(-1).astype(jnp.int32)
    return jnp.zeros((256,), jnp.int32).at[flat].add(1)


def batch_histograms(images_u8: jax.Array) -> jax.Array:
    """int32 ``[B, C, 256]`` per-image, per-channel histograms of uint8 ``[B, H, W, C]``."""
    b, _, _, c = images_u8.shape
    offset = (
        jnp.arange(b, dtype=jnp.int32)[:, None, None, None] * c
        + jnp.arange(c, dtype=jnp.int32)[None, None, None, :]
    )
    index = (images_u8.astype(jnp.int32) + 256 * offset).reshape(-1)
    return jnp.zeros((b * c * 256,), jnp.int32).at[index].add(1).reshape(b, c, 256)


def equalize_lut(hist: jax.Array, num_pixels: int) -> jax.Array:
    """PIL/torchvision equalization table ``[256]`` (int32) for one channel's histogram."""
    cum = jnp.cumsum(hist)
    last = jnp.argmax(cum)  # first bin reaching the total = last non-zero bin
    step = (num_pixels - hist[last]) // 255
    valid = step != 0
    step = jnp.maximum(step, 1)
    lut = jnp.clip((cum[:-1] + step // 2) // step, 0, 255)
    lut = jnp.concatenate([jnp.zeros((1,), jnp.int32), lut])
    return jnp.where(valid, lut, jnp.arange(256, dtype=jnp.int32))


def autocontrast_lut(mn: jax.Array, mx: jax.Array) -> jax.Array:
    """torchvision autocontrast table ``[256]`` (uint8) for one channel's min and max."""
    v = jnp.arange(256, dtype=jnp.float32)
    mn = mn.astype(jnp.float32)
    mx = mx.astype(jnp.float32)
    same = mx == mn
    inv_scale = (mx - mn) * jnp.float32(1.0 / 255.0)
    mn = jnp.where(same, 0.0, mn)
    inv_scale = jnp.where(same, 1.0, inv_scale)
    return truncate_u8(_exact.div(v - mn, inv_scale))


def constant_lut(
    kind: jax.Array,
    posterize_mask: jax.Array,
    solarize_threshold: jax.Array,
    channels: int,
) -> jax.Array:
    """``build_lut`` for the kinds that need no image statistics, int32 ``[C, 256]``.

    Identity for ``LUT_AUTOCONTRAST`` and ``LUT_EQUALIZE`` (the caller fills those in).
    """
    v = jnp.arange(256, dtype=jnp.int32)
    table = jnp.select(
        [kind == LUT_POSTERIZE, kind == LUT_SOLARIZE, kind == LUT_INVERT],
        [
            v & posterize_mask,
            jnp.where(v.astype(jnp.float32) >= solarize_threshold, 255 - v, v),
            255 - v,
        ],
        v,
    )
    return jnp.broadcast_to(table, (channels, 256))


def autocontrast_luts(image_u8: jax.Array) -> jax.Array:
    """Autocontrast tables int32 ``[C, 256]`` of uint8 ``[H, W, C]`` (per-channel min and max)."""
    mn = jnp.min(image_u8, axis=(0, 1))
    mx = jnp.max(image_u8, axis=(0, 1))
    return jax.vmap(autocontrast_lut)(mn, mx).astype(jnp.int32)


def build_lut(
    image_u8: jax.Array,
    kind: jax.Array,
    posterize_mask: jax.Array,
    solarize_threshold: jax.Array,
    *,
    with_equalize: bool = True,
    hists: jax.Array | None = None,
) -> jax.Array:
    """Per-channel lookup table ``[C, 256]`` uint8 for one image and one LUT kind.

    Args:
      image_u8: uint8 ``[H, W, C]`` (statistics for autocontrast/equalize come from it).
      kind: int32 scalar, one of the ``LUT_*`` constants.
      posterize_mask: int32 scalar bit mask (``((1 << bits) - 1) << (8 - bits)``, 255 for 8 bits).
      solarize_threshold: float32 scalar; values ``>= threshold`` are inverted.
      with_equalize: include equalization (static; False when equalize cannot be drawn).
      hists: int32 ``[C, 256]`` histograms of ``image_u8`` if already computed (a batch-level
        scatter is several times faster on CPU than a vmapped one), else computed here.
    """
    c = image_u8.shape[-1]
    v = jnp.arange(256, dtype=jnp.int32)
    identity = jnp.broadcast_to(v, (c, 256))
    posterized = jnp.broadcast_to(v & posterize_mask, (c, 256))
    solarized = jnp.broadcast_to(
        jnp.where(v.astype(jnp.float32) >= solarize_threshold, 255 - v, v), (c, 256)
    )
    inverted = 255 - identity
    mn = jnp.min(image_u8, axis=(0, 1))
    mx = jnp.max(image_u8, axis=(0, 1))
    auto = jax.vmap(autocontrast_lut)(mn, mx).astype(jnp.int32)
    table = jnp.select(
        [kind == LUT_POSTERIZE, kind == LUT_SOLARIZE, kind == LUT_AUTOCONTRAST, kind == LUT_INVERT],
        [posterized, solarized, auto, inverted],
        identity,
    )
    if with_equalize:
        num_pixels = image_u8.shape[0] * image_u8.shape[1]
        if hists is None:
            hists = jax.vmap(histogram, in_axes=-1)(image_u8)
        eq = jax.vmap(equalize_lut, in_axes=(0, None))(hists, num_pixels)
        table = jnp.where(kind == LUT_EQUALIZE, eq, table)
    return table.astype(jnp.uint8)


def apply_lut(image_u8: jax.Array, table: jax.Array) -> jax.Array:
    """``out[h, w, c] = table[c, image[h, w, c]]`` for uint8 ``[H, W, C]`` and ``[C, 256]``."""
    c = image_u8.shape[-1]
    flat = table.reshape(-1)
    index = image_u8.astype(jnp.int32) + 256 * jnp.arange(c, dtype=jnp.int32)[None, None, :]
    return flat[index]
