"""Op lists and per-op stage parameter tables (numpy, at trace time) of the policies.

Each op at each signed magnitude becomes the parameters of three stages (affine warp, blend,
per-channel lookup table), stacked as ``[num_ops, num_bins, 2 (sign: +, -)]`` tables; the
magnitudes are torchvision's float32 tables (``magnitude_table``) or big_vision's levels.
"""

import functools
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from augpar.augment import _color, _warp, ops

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
