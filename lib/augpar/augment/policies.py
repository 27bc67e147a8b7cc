"""Batched, jit-able RandAugment, TrivialAugment (Wide) and AugMix on uint8 images.

Papers: Cubuk, Zoph, Shlens & Le, "RandAugment" (CVPR-W 2020); Müller & Hutter,
"TrivialAugment" (ICCV 2021); Hendrycks et al., "AugMix" (ICLR 2020).

Semantics follow torchvision v2 (``RandAugment``, ``TrivialAugmentWide``, ``AugMix``): the same
op lists in the same order, the same float32 magnitude tables and the same per-op pixel
semantics (``augpar.augment.ops``), so ``apply_op`` matches torchvision's own per-op application
bit for bit. Unlike torchvision, every image of the batch gets its own draw of op, sign and (for
TrivialAugment/AugMix) magnitude, and AugMix draws chain depths and mixing weights per image.

Cost. Under ``vmap`` a ``lax.switch`` over 14 ops would evaluate all 14. Instead each drawn op
is folded, through per-image parameter tables, into three stages that every image runs once per
layer: one affine warp (identity for colour ops, then ``where``-guarded so identity is exact),
one blend ``x * r + d * (1 - r)`` with a per-image degenerate (zero, gray, mean gray or
smoothed), and one per-channel 256-entry lookup table (posterize, solarize, autocontrast,
equalize or identity). Exactly one stage is active per image and layer.

Randomness. ``sample_ops`` draws the per-image parameters (a pure function of the key), the
apply path consumes them; tests check op frequencies, sign balance and magnitude bins there.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt8

from augpar.augment import _color, _exact, _warp, ops

__all__ = [
    "AUGMIX_OPS",
    "RAND_AUGMENT_OPS",
    "TRIVIAL_AUGMENT_OPS",
    "OpDraw",
    "apply_op",
    "apply_ops",
    "augmix",
    "augmix_js_loss",
    "augmix_weights",
    "rand_augment",
    "sample_ops",
    "trivial_augment_wide",
]

RAND_AUGMENT_OPS: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)
# TrivialAugmentWide uses the same 14 ops in the same order, with wider magnitude ranges.
TRIVIAL_AUGMENT_OPS: tuple[str, ...] = RAND_AUGMENT_OPS
# torchvision AugMix(all_ops=True); the first 9 are the all_ops=False subset.
AUGMIX_OPS: tuple[str, ...] = (
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
)
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} | {
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}
_SPACES = ("rand_augment", "trivial_augment_wide", "augmix", "big_vision")
_AUGMIX_BINS = 10  # torchvision's AugMix._PARAMETER_MAX


# --------------------------------------------------------------------------------------------
# Magnitude tables (numpy, at trace time; they depend on H, W and the number of bins only)


def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace`` in float32 on CPU: fused ``start + step * i`` for the first half,
    ``end - step * (steps - 1 - i)`` for the second (checked against torch in the fixtures)."""
    a, b = np.float32(start), np.float32(end)
    if steps == 1:
        return np.asarray([a], np.float32)
    step = np.float32((b - a) / np.float32(steps - 1))
    out = np.empty(steps, np.float32)
    for i in range(steps):
        if i < steps // 2:
            out[i] = np.float32(np.float64(step) * i + np.float64(a))
        else:
            out[i] = np.float32(-np.float64(step) * (steps - 1 - i) + np.float64(b))
    return out


def _posterize_bits(num_bins: int, top: int, span: int) -> np.ndarray:
    # (top - arange(n) / ((n - 1) / span)).round().int() in float32, half to even.
    k = np.arange(num_bins, dtype=np.float32)
    q = np.float32((num_bins - 1) / span)
    return np.round(np.float32(top) - k / q).astype(np.int64)


def magnitude_table(space: str, op: str, num_bins: int, height: int, width: int):
    """The float32 magnitudes of ``op`` for each bin (None for parameter-free ops)."""
    wide = space == "trivial_augment_wide"
    if op in ("Identity", "AutoContrast", "Equalize"):
        return None
    if op in ("ShearX", "ShearY"):
        return _linspace_f32(0.0, 0.99 if wide else 0.3, num_bins)
    if op in ("TranslateX", "TranslateY"):
        size = width if op == "TranslateX" else height
        if wide:
            end = 32.0
        elif space == "augmix":
            end = size / 3.0
        else:
            end = 150.0 / 331.0 * size
        return _linspace_f32(0.0, end, num_bins)
    if op == "Rotate":
        return _linspace_f32(0.0, 135.0 if wide else 30.0, num_bins)
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return _linspace_f32(0.0, 0.99 if wide else 0.9, num_bins)
    if op == "Posterize":
        if wide:
            return _posterize_bits(num_bins, 8, 6)
        if space == "augmix":
            return _posterize_bits(num_bins, 4, 4)
        return _posterize_bits(num_bins, 8, 4)
    if op == "Solarize":
        return _linspace_f32(1.0, 0.0, num_bins)
    raise ValueError(f"unknown op {op!r}")


def _big_vision_magnitude(op: str, level: float):
    """big_vision / TF autoaugment parameters at ``level`` (nominally 0..10, not clipped)."""
    if op in ("Identity", "AutoContrast", "Equalize"):
        return None
    if op == "Rotate":
        return level * 3.0
    if op in ("ShearX", "ShearY"):
        return level * 0.03
    if op in ("TranslateX", "TranslateY"):
        return level * 10.0
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        return level * 0.18 + 0.1 - 1.0  # factor = 1 + magnitude, unsigned
    if op == "Posterize":
        return int(level * 0.4)
    if op == "Solarize":
        return int(level * 25.6) / 255.0  # threshold = 255 * magnitude
    raise ValueError(f"unknown op {op!r}")


class _Params(NamedTuple):
    """Per-op stage parameters; leading dims ``[num_ops, num_bins, 2 (sign: +, -)]``."""

    coeffs: np.ndarray  # float32 [..., 6]: inverse matrix / (W/2, W/2, W/2, H/2, H/2, H/2)
    warp: np.ndarray  # bool
    blend_kind: np.ndarray  # int32
    ratio: np.ndarray  # float32
    alpha: np.ndarray  # float32
    lut_kind: np.ndarray  # int32
    posterize_mask: np.ndarray  # int32
    solarize_threshold: np.ndarray  # float32


def _op_params(op: str, magnitude: float, height: int, width: int) -> dict:
    """Stage parameters of one op at one signed magnitude (torchvision's argument handling)."""
    p = {
        "matrix": _warp.identity_matrix(),
        "warp": False,
        "blend_kind": _color.DEG_ZERO,
        "ratio": np.float32(1.0),
        "alpha": np.float32(0.0),
        "lut_kind": _color.LUT_IDENTITY,
        "posterize_mask": 255,
        "solarize_threshold": np.float32(256.0),
    }
    corner = (-width * 0.5, -height * 0.5)  # center=[0, 0] relative to the image centre
    if op in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(magnitude))
        shear = (deg, 0.0) if op == "ShearX" else (0.0, deg)
        p["matrix"] = _warp.inverse_affine_matrix(corner, 0.0, (0.0, 0.0), 1.0, shear)
        p["warp"] = True
    elif op in ("TranslateX", "TranslateY"):
        t = float(int(magnitude))
        translate = (t, 0.0) if op == "TranslateX" else (0.0, t)
        p["matrix"] = _warp.inverse_affine_matrix((0.0, 0.0), 0.0, translate, 1.0, (0.0, 0.0))
        p["warp"] = True
    elif op == "Rotate":
        angle = magnitude % 360
        if angle == 0:
            pass  # torchvision's fast path: a copy
        elif angle in (90.0, 180.0, 270.0) and (angle == 180.0 or height == width):
            # torchvision's rot90 fast paths; the exact rotation matrix reproduces them.
            c, s = {90.0: (0.0, 1.0), 180.0: (-1.0, 0.0), 270.0: (0.0, -1.0)}[angle]
            p["matrix"] = np.asarray([c, -s, 0.0, s, c, 0.0], np.float64)
            p["warp"] = True
        else:
            p["matrix"] = _warp.inverse_affine_matrix((0.0, 0.0), -angle, (0.0, 0.0), 1.0, (0, 0))
            p["warp"] = True
    elif op in ("Brightness", "Color", "Contrast", "Sharpness"):
        factor = 1.0 + magnitude
        p["blend_kind"] = {
            "Brightness": _color.DEG_ZERO,
            "Color": _color.DEG_GRAY,
            "Contrast": _color.DEG_MEAN,
            "Sharpness": _color.DEG_BLUR,
        }[op]
        p["ratio"] = np.float32(factor)
        p["alpha"] = np.float32(1.0 - factor)
    elif op == "Posterize":
        p["lut_kind"] = _color.LUT_POSTERIZE
        p["posterize_mask"] = ops.posterize_mask(int(magnitude))
    elif op == "Solarize":
        p["lut_kind"] = _color.LUT_SOLARIZE
        p["solarize_threshold"] = np.float32(255.0 * magnitude)
    elif op == "AutoContrast":
        p["lut_kind"] = _color.LUT_AUTOCONTRAST
    elif op == "Equalize":
        p["lut_kind"] = _color.LUT_EQUALIZE
    elif op != "Identity":
        raise ValueError(f"unknown op {op!r}")
    p["coeffs"] = _warp.grid_coefficients_np(p.pop("matrix"), height, width)
    return p


@functools.lru_cache(maxsize=64)
def _tables(space: str, op_names: tuple[str, ...], num_bins: int, height: int, width: int, level):
    """Stacked ``_Params`` for ``op_names`` x bins x signs (numpy; cached per shape)."""
    rows = []
    for op in op_names:
        if space == "big_vision":
            mags = (
                None
                if _big_vision_magnitude(op, level) is None
                else [_big_vision_magnitude(op, level)] * num_bins
            )
        else:
            table = magnitude_table(space, op, num_bins, height, width)
            mags = None if table is None else [float(v) for v in table]
        signed = op in _SIGNED and not (
            space == "big_vision" and op in ("Brightness", "Color", "Contrast", "Sharpness")
        )
        row = []
        for b in range(num_bins):
            pair = []
            for sign in (1.0, -1.0):
                mag = 0.0 if mags is None else mags[b]
                if signed and sign < 0:
                    mag = -mag
                pair.append(_op_params(op, mag, height, width))
            row.append(pair)
        rows.append(row)
    fields = {}
    for name in _Params._fields:
        fields[name] = np.asarray([[[pp[name] for pp in pair] for pair in row] for row in rows])
    return _Params(
        coeffs=fields["coeffs"].astype(np.float32),
        warp=fields["warp"].astype(bool),
        blend_kind=fields["blend_kind"].astype(np.int32),
        ratio=fields["ratio"].astype(np.float32),
        alpha=fields["alpha"].astype(np.float32),
        lut_kind=fields["lut_kind"].astype(np.int32),
        posterize_mask=fields["posterize_mask"].astype(np.int32),
        solarize_threshold=fields["solarize_threshold"].astype(np.float32),
    )


def _gather(tables: _Params, op, bin_, sign_index) -> _Params:
    """Per-image parameters: each table indexed at ``[op, bin, sign]`` (any batch shape)."""
    return _Params(*(jnp.asarray(t)[op, bin_, sign_index] for t in tables))


# --------------------------------------------------------------------------------------------
# Applying drawn parameters


def _apply_params(image, p: _Params, hists=None, *, interpolation: str, fill) -> jax.Array:
    """One layer on one image ``[H, W, C]``: warp, blend, LUT (each identity unless drawn).

    ``hists`` (int32 ``[C, 256]``) may be the histograms of the layer's input image: an image
    that drew a LUT op has identity warp and blend, so its LUT sees exactly that input.
    """
    warped = _warp.warp_coefficients(image, p.coeffs, interpolation=interpolation, fill=fill)
    x = _color.materialize(jnp.where(p.warp, warped, image).astype(jnp.float32))
    blended = _color.blend(x, p.blend_kind, p.ratio, p.alpha)
    x = _color.materialize(jnp.clip(blended, 0.0, 255.0)).astype(jnp.uint8)
    table = _color.build_lut(x, p.lut_kind, p.posterize_mask, p.solarize_threshold, hists=hists)
    table = _color.materialize(table.T.astype(jnp.float32)).T.astype(jnp.uint8)  # [C, 256]
    return _color.apply_lut(x, table)


def _check_common(interpolation: str, num_magnitude_bins: int) -> None:
    if interpolation not in ops.INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {ops.INTERPOLATIONS}, got {interpolation!r}"
        )
    if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 1:
        raise ValueError(f"num_magnitude_bins must be an int >= 1, got {num_magnitude_bins!r}")


def _check_batch(images) -> None:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"images must be uint8 [B, H, W, C], got shape {shape}")
    if images.dtype != jnp.uint8:
        raise ValueError(f"images must have dtype uint8, got {images.dtype}")
    if shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(shape)}")


def apply_op(
    image: UInt8[Array, "h w c"],
    op_index: int | Int[Array, ""],
    magnitude_bin: int | Int[Array, ""],
    *,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    sign: int | Int[Array, ""] | None = None,
) -> UInt8[Array, "h w c"]:
    """Apply TrivialAugmentWide op ``TRIVIAL_AUGMENT_OPS[op_index]`` at ``magnitude_bin``.

    Equals torchvision's ``TrivialAugmentWide._apply_image_or_video_transform`` for that op and
    its magnitude ``table[magnitude_bin]`` (negated when ``sign`` is negative and the op is
    signed). jit/vmap-able: ``op_index``, ``magnitude_bin`` and ``sign`` may be traced int32.

    Args:
      image: uint8 ``[H, W, C]``, C in {1, 3}.
      op_index: index into ``TRIVIAL_AUGMENT_OPS`` (0..13).
      magnitude_bin: 0..num_magnitude_bins-1.
      num_magnitude_bins: static number of bins (torchvision: 31).
      fill: None, a number or per-channel numbers in [0, 255], for pixels warped in from outside.
      interpolation: "nearest" or "bilinear".
      sign: +1 / -1 (or None = +1); ignored by unsigned ops.

    Returns:
      uint8 ``[H, W, C]``.
    """
    ops.check_image(image, channels=(1, 3))
    _check_common(interpolation, num_magnitude_bins)
    n_ops = len(TRIVIAL_AUGMENT_OPS)
    if ops._is_static(op_index) and not 0 <= int(op_index) < n_ops:
        raise ValueError(f"op_index must lie in [0, {n_ops - 1}], got {op_index}")
    if ops._is_static(magnitude_bin) and not 0 <= int(magnitude_bin) < num_magnitude_bins:
        raise ValueError(
            f"magnitude_bin must lie in [0, {num_magnitude_bins - 1}], got {magnitude_bin}"
        )
    if sign is not None and ops._is_static(sign) and int(sign) not in (-1, 1):
        raise ValueError(f"sign must be +1, -1 or None, got {sign}")
    sign = 1 if sign is None else sign
    return _apply_one(
        image,
        jnp.asarray(op_index, jnp.int32),
        jnp.asarray(magnitude_bin, jnp.int32),
        jnp.asarray(sign, jnp.int32),
        ops.fill_array(fill, image.shape[-1]),
        num_magnitude_bins=num_magnitude_bins,
        interpolation=interpolation,
    )


@functools.partial(jax.jit, static_argnames=("num_magnitude_bins", "interpolation"))
def _apply_one(image, op_index, magnitude_bin, sign, fill, *, num_magnitude_bins, interpolation):
    h, w = image.shape[0], image.shape[1]
    tables = _tables("trivial_augment_wide", TRIVIAL_AUGMENT_OPS, num_magnitude_bins, h, w, None)
    p = _gather(tables, op_index, magnitude_bin, (sign < 0).astype(jnp.int32))
    return _apply_params(image, p, interpolation=interpolation, fill=fill)


# --------------------------------------------------------------------------------------------
# Drawing


class OpDraw(NamedTuple):
    """Per-image draws for ``num_layers`` layers: each field int32 ``[num_layers, B]``."""

    op: jax.Array  # index into the op list of the policy
    magnitude_bin: jax.Array
    sign: jax.Array  # +1 or -1 (ignored by unsigned ops)


def sample_ops(
    key: jax.Array,
    batch: int,
    *,
    num_layers: int,
    num_ops: int,
    num_magnitude_bins: int,
    magnitude: int | None = None,
    max_bin: int | None = None,
) -> OpDraw:
    """Independent per-image draws of op, magnitude bin and sign.

    Args:
      key: PRNG key (split three ways; never reused).
      batch: number of images B.
      num_layers: number of ops applied in sequence (RandAugment's N).
      num_ops: size of the op list; ops are uniform over it.
      num_magnitude_bins: number of magnitude bins.
      magnitude: fixed bin for every image (RandAugment), or None for a uniform bin
        (TrivialAugment) in ``[0, max_bin)`` (default all bins; AugMix uses its severity).
      max_bin: exclusive upper bound of the uniform bin.

    Returns:
      ``OpDraw`` with fields int32 ``[num_layers, B]``; sign is -1 with probability 1/2.
    """
    key_op, key_bin, key_sign = jax.random.split(key, 3)
    shape = (num_layers, batch)
    op = jax.random.randint(key_op, shape, 0, num_ops, dtype=jnp.int32)
    if magnitude is None:
        hi = num_magnitude_bins if max_bin is None else max_bin
        bins = jax.random.randint(key_bin, shape, 0, hi, dtype=jnp.int32)
    else:
        bins = jnp.full(shape, magnitude, jnp.int32)
    sign = jnp.where(jax.random.bernoulli(key_sign, 0.5, shape), -1, 1).astype(jnp.int32)
    return OpDraw(op, bins, sign)


def apply_ops(
    images: UInt8[Array, "b h w c"],
    draw: OpDraw,
    *,
    space: str = "rand_augment",
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    level: float | None = None,
) -> UInt8[Array, "b h w c"]:
    """Apply drawn layers to a batch; one warp, one blend and one LUT per image and layer.

    Args:
      images: uint8 ``[B, H, W, C]``.
      draw: from ``sample_ops``; ``draw.op`` indexes the op list of ``space``
        (``RAND_AUGMENT_OPS``/``TRIVIAL_AUGMENT_OPS``; ``AUGMIX_OPS`` plus index 13 = identity).
      space: "rand_augment", "trivial_augment_wide", "augmix" or "big_vision".
      level: big_vision's magnitude level (only for ``space="big_vision"``).

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, num_magnitude_bins)
    if space not in _SPACES:
        raise ValueError(f"space must be one of {_SPACES}, got {space!r}")
    if draw.op.shape[0] == 0:
        return images
    return _apply_layers(
        images,
        draw,
        ops.fill_array(fill, images.shape[-1]),
        space=space,
        num_magnitude_bins=num_magnitude_bins,
        interpolation=interpolation,
        level=level,
    )


@functools.partial(
    jax.jit, static_argnames=("space", "num_magnitude_bins", "interpolation", "level")
)
def _apply_layers(images, draw, fill, *, space, num_magnitude_bins, interpolation, level):
    """``lax.scan`` over layers; each layer is one vmapped warp + blend + LUT."""
    _, h, w, _ = images.shape
    names = AUGMIX_OPS + ("Identity",) if space == "augmix" else RAND_AUGMENT_OPS
    tables = _tables(space, names, num_magnitude_bins, h, w, level)
    apply = jax.vmap(functools.partial(_apply_params, interpolation=interpolation, fill=fill))

    def layer(x, d):
        op, bin_, sign = d
        params = _gather(tables, op, bin_, (sign < 0).astype(jnp.int32))
        return apply(x, params, _color.batch_histograms(x)), None

    images, _ = jax.lax.scan(layer, images, tuple(draw))
    return images


# --------------------------------------------------------------------------------------------
# Policies


def rand_augment(
    key: jax.Array,
    images: UInt8[Array, "b h w c"],
    *,
    num_ops: int = 2,
    magnitude: float = 9,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    magnitude_scale: str = "torchvision",
) -> UInt8[Array, "b h w c"]:
    """RandAugment with an independent op and sign draw per image and layer.

    Args:
      key: PRNG key.
      images: uint8 ``[B, H, W, C]``, C in {1, 3}.
      num_ops: layers applied in sequence (N), >= 0.
      magnitude: "torchvision": bin index in ``[0, num_magnitude_bins)`` into torchvision's
        tables (default 9 of 31, i.e. 30 % of the range). "big_vision": the TF/big_vision level
        (nominally 0..10, not clipped): rotate 3L deg, shear 0.03L, translate 10L px, enhance
        factor 0.18L + 0.1 unsigned, posterize int(0.4L) bits, solarize threshold int(25.6L).
        The op list and pixel semantics stay torchvision's (no Invert/Cutout/SolarizeAdd, TF's
        contrast bug not reproduced).
      num_magnitude_bins: number of bins ("torchvision" scale).
      fill: None, a number or per-channel numbers in [0, 255] (torchvision's default None equals
        0 for nearest).
      interpolation: "nearest" or "bilinear".
      magnitude_scale: "torchvision" or "big_vision".

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, num_magnitude_bins)
    if not isinstance(num_ops, int) or num_ops < 0:
        raise ValueError(f"num_ops must be an int >= 0, got {num_ops!r}")
    if magnitude_scale == "torchvision":
        if int(magnitude) != magnitude or not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(
                f"magnitude must be an int in [0, {num_magnitude_bins - 1}] for the torchvision "
                f"scale, got {magnitude}"
            )
        space, level, bin_, bins = "rand_augment", None, int(magnitude), num_magnitude_bins
    elif magnitude_scale == "big_vision":
        if not magnitude >= 0:
            raise ValueError(f"magnitude must be >= 0 for the big_vision scale, got {magnitude}")
        space, level, bin_, bins = "big_vision", float(magnitude), 0, 1
    else:
        raise ValueError(
            f"magnitude_scale must be 'torchvision' or 'big_vision', got {magnitude_scale!r}"
        )
    draw = sample_ops(
        key,
        images.shape[0],
        num_layers=num_ops,
        num_ops=len(RAND_AUGMENT_OPS),
        num_magnitude_bins=bins,
        magnitude=bin_,
    )
    return apply_ops(
        images,
        draw,
        space=space,
        num_magnitude_bins=bins,
        fill=fill,
        interpolation=interpolation,
        level=level,
    )


def trivial_augment_wide(
    key: jax.Array,
    images: UInt8[Array, "b h w c"],
    *,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
) -> UInt8[Array, "b h w c"]:
    """TrivialAugment Wide: one op, one uniform magnitude bin and one sign per image.

    Args:
      key: PRNG key.
      images: uint8 ``[B, H, W, C]``, C in {1, 3}.
      num_magnitude_bins, fill, interpolation: as in ``rand_augment``.

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, num_magnitude_bins)
    draw = sample_ops(
        key,
        images.shape[0],
        num_layers=1,
        num_ops=len(TRIVIAL_AUGMENT_OPS),
        num_magnitude_bins=num_magnitude_bins,
    )
    return apply_ops(
        images,
        draw,
        space="trivial_augment_wide",
        num_magnitude_bins=num_magnitude_bins,
        fill=fill,
        interpolation=interpolation,
    )


def augmix(
    key: jax.Array,
    images: UInt8[Array, "b h w c"],
    *,
    severity: int = 3,
    mixture_width: int = 3,
    chain_depth: int = -1,
    alpha: float = 1.0,
    all_ops: bool = True,
    interpolation: str = "bilinear",
    fill: float | tuple[float, ...] | None = None,
) -> UInt8[Array, "b h w c"]:
    """AugMix: ``trunc(m0 * x + sum_i w_i * chain_i(x))`` with per-image random chains.

    Per image: ``(m0, m1) ~ Dirichlet(alpha, alpha)``, ``w = m1 * Dirichlet(alpha * 1_width)``;
    each chain has depth ``chain_depth`` or, if <= 0, uniform in {1, 2, 3}; each chain op is
    uniform over ``AUGMIX_OPS`` (the first 9 if not ``all_ops``) at a uniform bin in
    ``[0, severity)`` of torchvision's 10-bin tables, with a random sign. The float32 mix
    follows torchvision (each ``w_i * chain_i`` rounded, then added; truncated to uint8).

    Args:
      key: PRNG key.
      images: uint8 ``[B, H, W, C]``, C in {1, 3}.
      severity: 1..10.
      mixture_width: number of chains, >= 1.
      chain_depth: ops per chain (> 0), or <= 0 for a uniform depth in {1, 2, 3} per chain.
      alpha: Dirichlet/Beta concentration, > 0.
      all_ops: include Brightness/Color/Contrast/Sharpness.
      interpolation: "bilinear" (torchvision's default for AugMix) or "nearest".
      fill: None (zero padding), a number or per-channel numbers.

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, _AUGMIX_BINS)
    if not isinstance(severity, int) or not 1 <= severity <= _AUGMIX_BINS:
        raise ValueError(f"severity must be an int in [1, {_AUGMIX_BINS}], got {severity!r}")
    if not isinstance(mixture_width, int) or mixture_width < 1:
        raise ValueError(f"mixture_width must be an int >= 1, got {mixture_width!r}")
    if not isinstance(chain_depth, int):
        raise ValueError(f"chain_depth must be an int, got {chain_depth!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    b = images.shape[0]
    n_ops = len(AUGMIX_OPS) if all_ops else 9
    identity = len(AUGMIX_OPS)
    max_depth = chain_depth if chain_depth > 0 else 3
    key_weights, key_depth, key_ops = jax.random.split(key, 3)
    m0, weights = augmix_weights(key_weights, b, mixture_width=mixture_width, alpha=alpha)
    if chain_depth > 0:
        depth = jnp.full((mixture_width, b), chain_depth, jnp.int32)
    else:
        depth = jax.random.randint(key_depth, (mixture_width, b), 1, 4, dtype=jnp.int32)
    mix = _exact_mul_batch(images, m0)
    chain_keys = jax.random.split(key_ops, mixture_width)

    def chain(mix, xs):
        chain_key, chain_depth_b, weight = xs
        draw = sample_ops(
            chain_key,
            b,
            num_layers=max_depth,
            num_ops=n_ops,
            num_magnitude_bins=_AUGMIX_BINS,
            max_bin=severity,
        )
        active = jnp.arange(max_depth, dtype=jnp.int32)[:, None] < chain_depth_b[None, :]
        draw = draw._replace(op=jnp.where(active, draw.op, identity))
        aug = apply_ops(
            images,
            draw,
            space="augmix",
            num_magnitude_bins=_AUGMIX_BINS,
            fill=fill,
            interpolation=interpolation,
        )
        return mix + _exact_mul_batch(aug, weight), None

    mix, _ = jax.lax.scan(chain, mix, (chain_keys, depth, weights.T))
    return _color.truncate_u8(mix)


def augmix_weights(
    key: jax.Array, batch: int, *, mixture_width: int = 3, alpha: float = 1.0
) -> tuple[Float[Array, " b"], Float[Array, "b width"]]:
    """AugMix mixing weights per image, as torchvision draws them.

    ``(m0, m1) ~ Dirichlet(alpha, alpha)`` (i.e. ``m1 ~ Beta(alpha, alpha)``) and
    ``w = m1 * Dirichlet(alpha * 1_width)``, so ``m0 + sum(w) == 1``.

    Returns:
      ``m0`` float32 ``[B]`` (weight of the original image) and ``w`` float32 ``[B, width]``.
    """
    key_m, key_w = jax.random.split(key)
    m = jax.random.dirichlet(key_m, jnp.full((2,), alpha, jnp.float32), (batch,))
    w = jax.random.dirichlet(key_w, jnp.full((mixture_width,), alpha, jnp.float32), (batch,))
    return m[:, 0], w * m[:, 1:2]


def _exact_mul_batch(images, weight):
    """float32 ``weight[b] * images[b]`` rounded once (not fused with the following add)."""
    w = weight[:, None, None, None]
    return _exact.mul(images.astype(jnp.float32), jnp.broadcast_to(w, images.shape))


def augmix_js_loss(
    logits_clean: Float[Array, "b k"],
    logits_aug1: Float[Array, "b k"],
    logits_aug2: Float[Array, "b k"],
) -> Float[Array, ""]:
    """AugMix's Jensen-Shannon consistency term (multiply by lambda = 12 in the paper).

    ``JS = mean_b [KL(p_c || M) + KL(p_1 || M) + KL(p_2 || M)] / 3`` with
    ``M = clip((p_c + p_1 + p_2) / 3, 1e-7, 1)``, as in the reference training code.

    Args:
      logits_clean, logits_aug1, logits_aug2: float ``[B, K]`` logits of the clean image and two
        AugMix views.

    Returns:
      float32 scalar >= 0; 0 iff the three predictive distributions agree.
    """
    shapes = {tuple(x.shape) for x in (logits_clean, logits_aug1, logits_aug2)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"logits must be three arrays of equal shape [B, K], got {shapes}")
    logp = [
        jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)
        for x in (logits_clean, logits_aug1, logits_aug2)
    ]
    probs = [jnp.exp(lp) for lp in logp]
    log_m = jnp.log(jnp.clip((probs[0] + probs[1] + probs[2]) / 3.0, 1e-7, 1.0))
    kl = [jnp.sum(p * (lp - log_m), axis=-1) for p, lp in zip(probs, logp, strict=True)]
    return jnp.mean(kl[0] + kl[1] + kl[2]) / 3.0
