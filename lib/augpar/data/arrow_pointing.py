"""Arrow-pointing extrapolation (APE) images, generated deterministically per (seed, index).

The task of the pLSTM paper (Pöppel et al., "pLSTM: parallelizable Linear Source Transition
Mark networks", 2025, §3.1 of ``shared/research/plstm.md``): a white canvas holds an arrow and a
filled black disc; the label says whether the arrow's ray hits the disc. Positives point within
``r / 1.2`` of the disc's centre; negatives miss a disc of radius ``1.2 r`` (an arrow pointing away
is negative), so no example lies near the decision boundary.

Geometry (per sample, in the spec's 192-px units, then multiplied by ``scale``):

* ``u_label < 0.5`` → label 1; arrow length ``int(U[15, 30])``, stroke width ``int(U[2, 4])``;
* padding 30, free span ``s = R - 2 * padding`` (``R`` = rendered resolution);
* arrow centre ``U[0, s]`` per axis, radius ``r = 15 + 15 U``; circle centre
  ``a + 2r + (s - 4r) U`` per axis, wrapped by ``-s`` past ``s`` (so the circle is at least ``2r``
  away from the arrow along each axis);
* angle: positives ``φ0 - β + 2β U``, negatives ``φ0 + β + (2π - 2β) U`` with ``φ0`` the
  direction to the circle and ``β = asin(r_d / |d|)``, ``r_d = r / 1.2`` resp. ``1.2 r``.

**Scale rule.** Pixel sizes (padding, radius, length, head) are the spec's values times
``scale = min(1, base_resolution / 192)``. ``base_resolution`` is the resolution of the
in-distribution split; the ``_ext`` splits render at ``2 * base_resolution`` with the *same*
``scale``, so their objects keep the base split's pixel size (relatively smaller, farther apart),
as in the paper (192 → 384 px). At 192 px and above this is exactly the spec (fixed pixel sizes);
below 192 px the spec's fixed 30 px padding would leave no room, so everything shrinks
proportionally (e.g. at 64 px: radius 5–10 px, arrow 5–10 px long). Objects always fit: the
padding equals the largest radius and exceeds the arrow's half extent, and ``R - 2·padding ≥ 4
r_max`` holds for every ``R ≥ 180·scale``, which both the base and the ``_ext`` resolution meet.

**Stroke rule** (``stroke=``). ``"fixed"`` (default): the stroke keeps the spec's pixel width,
2 or 3 px, at every scale, so the arrow stays a solid 2–3 px line with a visible head when the
geometry shrinks. ``"scaled"``: the width is scaled with everything else (at least 1 px); at
64 px that leaves a 1 px anti-aliased shaft of about 12 ink pixels and a 2–3.7 px head, on which
no model of the arrow-pointing experiment left chance (measured; see that experiment's README).
At 192 px and above (scale 1) the two rules draw the same images.

Coordinates: ``x`` is the column, ``y`` the row, continuous, pixel ``(i, j)`` has its centre at
``(x, y) = (j + 0.5, i + 0.5)``; angles run from +x towards +y. The random draws follow the spec's
order but use one ``rng.random(9)`` call per sample; the geometry follows the spec's
distribution, but the images are not bit-identical to the published Hugging Face set (that one is
drawn with PIL, without anti-aliasing and with flat line ends; here lines have round ends).

Rendering is vectorised numpy with distance-field anti-aliasing (coverage
``clip(half_width + 0.5 - distance, 0, 1)``) evaluated only in a window around each object; no
font, no file, no download. Measured on this project's 2-core CPU machine (shared with other
jobs, so upper ends are under load): 10,000 images at 64 px in 0.55–0.8 s, of which 0.1–0.2 s
draw the parameters; 5,120 images at 192 px in 1–3 s; 5,120 at 384 px (``val_ext`` at paper
scale, 2.3 GB of uint8) in 5–7 s, dominated by writing the output memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArrowPointingSource",
    "BASE_PIXEL_RESOLUTION",
    "SPLITS",
    "STROKES",
    "SplitSpec",
    "generate",
    "generate_indices",
    "render",
    "render_batch",
    "sample_params",
    "sample_params_batch",
    "split_spec",
]

#: The resolution at which the spec's pixel sizes apply unscaled.
BASE_PIXEL_RESOLUTION = 192

# Spec constants, in units of 192-px pixels.
_PADDING = 30.0
_RADIUS_MIN, _RADIUS_SPAN = 15.0, 15.0
_LENGTH_MIN, _LENGTH_MAX = 15.0, 30.0
_WIDTH_MIN, _WIDTH_MAX = 2.0, 4.0
_MIN_DIST_FACTOR = 2.0
_INTERSECTION_FACTOR = 1.2
_HEAD_ANGLE = 0.5  # radians, each side of the shaft
_HEAD_DIVISOR = 2.5
_MIN_STROKE_PX = 1.0
_MIN_RESOLUTION = 16
#: Stroke-width rules: the spec's 2-3 px at every scale, or scaled with the geometry.
STROKES = ("fixed", "scaled")


@dataclass(frozen=True)
class _SplitDefault:
    num_samples: int
    seed: int
    resolution: int  # rendered resolution at the default base of 192
    extrapolation: bool


#: Defaults per split (spec table): number of samples, seed, rendered resolution, is ``_ext``.
SPLITS: dict[str, _SplitDefault] = {
    "train": _SplitDefault(100_000, 43, 192, False),
    "val": _SplitDefault(5_120, 100042, 192, False),
    "val_ext": _SplitDefault(5_120, 100043, 384, True),
    "test": _SplitDefault(10_240, 200042, 192, False),
    "test_ext": _SplitDefault(10_240, 200043, 384, True),
}


@dataclass(frozen=True)
class SplitSpec:
    """Resolved settings of one split.

    Attributes:
      split: split name.
      num_samples: number of images.
      seed: generator seed.
      base_resolution: resolution of the in-distribution split (sets ``scale``).
      resolution: rendered image size (``2 * base_resolution`` for ``_ext`` splits).
      scale: pixel-size factor ``min(1, base_resolution / 192)``.
      stroke: stroke-width rule, one of :data:`STROKES`.
    """

    split: str
    num_samples: int
    seed: int
    base_resolution: int
    resolution: int
    scale: float
    stroke: str = "fixed"


def _scale_for(base_resolution: int) -> float:
    return min(1.0, base_resolution / BASE_PIXEL_RESOLUTION)


def _check_resolution(name: str, value: int) -> None:
    if not isinstance(value, int | np.integer) or value < _MIN_RESOLUTION:
        raise ValueError(f"{name} must be an int >= {_MIN_RESOLUTION}, got {value!r}")


def _check_stroke(stroke: str) -> None:
    if stroke not in STROKES:
        raise ValueError(f"stroke must be one of {STROKES}, got {stroke!r}")


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def split_spec(
    split: str,
    *,
    num_samples: int | None = None,
    resolution: int | None = None,
    seed: int | None = None,
    stroke: str = "fixed",
) -> SplitSpec:
    """Resolves a split's defaults and the overrides.

    Args:
      split: one of ``"train", "val", "val_ext", "test", "test_ext"``.
      num_samples: number of images; default from the spec table.
      resolution: the **base** (in-distribution) resolution; ``_ext`` splits render at twice it.
        Default 192.
      seed: generator seed; default from the spec table.
      stroke: stroke-width rule, ``"fixed"`` (2-3 px at any scale) or ``"scaled"``.

    Returns:
      The resolved ``SplitSpec``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    default = SPLITS[split]
    base = BASE_PIXEL_RESOLUTION if resolution is None else resolution
    _check_resolution("resolution", base)
    seed = default.seed if seed is None else seed
    _check_seed(seed)
    _check_stroke(stroke)
    n = default.num_samples if num_samples is None else num_samples
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    rendered = 2 * base if default.extrapolation else base
    return SplitSpec(split, int(n), int(seed), int(base), int(rendered), _scale_for(base), stroke)


def _sample_seed(seed: int) -> int:
    """The spec's per-dataset offset: ``default_rng(seed).integers(2**62)``."""
    return int(np.random.default_rng(seed).integers(2**62))


def sample_params_batch(
    seed: int,
    indices: Sequence[int] | np.ndarray,
    resolution: int,
    *,
    base_resolution: int | None = None,
    stroke: str = "fixed",
) -> dict[str, np.ndarray]:
    """Draws the geometry of the samples ``indices`` (vector form of ``sample_params``).

    Args:
      seed: generator seed (non-negative).
      indices: sample indices, shape ``[n]``, each ``>= 0``.
      resolution: rendered image size ``R``.
      base_resolution: resolution that sets the pixel scale; default ``resolution`` (an
        in-distribution split). For an ``_ext`` split pass ``resolution // 2``.
      stroke: ``"fixed"``: widths are the spec's 2 or 3 px at every scale; ``"scaled"``: widths
        times ``scale`` (drawn at least 1 px wide).

    Returns:
      Arrays with leading dimension ``n``, all pixel quantities in rendered pixels:
      ``arrow_center`` float64 ``[n, 2]`` (x, y), ``angle`` float64 ``[n]`` (radians),
      ``length`` / ``width`` / ``half_length`` / ``head_length`` float64 ``[n]``,
      ``circle_center`` float64 ``[n, 2]``, ``radius`` float64 ``[n]``, ``label`` int32 ``[n]``
      (1 = the arrow points at the circle), ``scale`` float64 ``[n]``.
    """
    _check_seed(seed)
    _check_resolution("resolution", resolution)
    base = resolution if base_resolution is None else base_resolution
    _check_resolution("base_resolution", base)
    _check_stroke(stroke)
    scale = _scale_for(base)
    if resolution < math.ceil(180 * scale):
        raise ValueError(
            f"resolution {resolution} is too small for base_resolution {base} "
            f"(needs >= {math.ceil(180 * scale)} so that objects fit)"
        )
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and idx.min() < 0:
        raise ValueError(f"indices must be >= 0, got min {idx.min()}")

    offset = _sample_seed(seed)
    draws = np.empty((idx.size, 9), dtype=np.float64)
    for row, i in enumerate(idx.tolist()):
        draws[row] = np.random.default_rng(offset + i).random(9)
    u_label, u_len, u_wid, u_ax, u_ay, u_r, u_cx, u_cy, u_phi = draws.T

    label = u_label < 0.5
    length_u = np.floor(_LENGTH_MIN + (_LENGTH_MAX - _LENGTH_MIN) * u_len)
    width_u = np.floor(_WIDTH_MIN + (_WIDTH_MAX - _WIDTH_MIN) * u_wid)
    padding = _PADDING * scale
    span = resolution - 2.0 * padding
    ax, ay = span * u_ax, span * u_ay
    radius = (_RADIUS_MIN + _RADIUS_SPAN * u_r) * scale
    gap = _MIN_DIST_FACTOR * radius
    cx = ax + gap + (span - 2.0 * gap) * u_cx
    cy = ay + gap + (span - 2.0 * gap) * u_cy
    cx = np.where(cx > span, cx - span, cx)
    cy = np.where(cy > span, cy - span, cy)
    dx, dy = cx - ax, cy - ay
    r_d = np.where(label, radius / _INTERSECTION_FACTOR, radius * _INTERSECTION_FACTOR)
    beta = np.arcsin(r_d / np.hypot(dx, dy))
    phi0 = np.arctan2(dy, dx)
    angle = np.where(
        label, phi0 - beta + 2.0 * beta * u_phi, phi0 + beta + (2.0 * np.pi - 2.0 * beta) * u_phi
    )
    angle = np.mod(angle, 2.0 * np.pi)
    return {
        "arrow_center": np.stack([ax + padding, ay + padding], axis=-1),
        "angle": angle,
        "length": length_u * scale,
        "width": width_u if stroke == "fixed" else width_u * scale,
        "half_length": np.floor(length_u / 2.0) * scale,
        "head_length": np.floor(length_u / _HEAD_DIVISOR) * scale,
        "circle_center": np.stack([cx + padding, cy + padding], axis=-1),
        "radius": radius,
        "label": label.astype(np.int32),
        "scale": np.full(idx.shape, scale),
    }


def sample_params(
    seed: int,
    index: int,
    resolution: int,
    *,
    base_resolution: int | None = None,
    stroke: str = "fixed",
) -> dict:
    """Draws the geometry of sample ``index`` (deterministic per (seed, index)).

    Args:
      seed: generator seed.
      index: sample index.
      resolution: rendered image size.
      base_resolution, stroke: see ``sample_params_batch``.

    Returns:
      ``arrow_center`` (x, y) floats, ``angle`` (radians, from +x towards +y), ``length``,
      ``width``, ``half_length``, ``head_length`` (pixels), ``circle_center`` (x, y), ``radius``,
      ``label`` (int, 1 = points at the circle), ``scale``.
    """
    batch = sample_params_batch(
        seed, [index], resolution, base_resolution=base_resolution, stroke=stroke
    )
    out: dict = {}
    for key, value in batch.items():
        v = value[0]
        if v.ndim:
            out[key] = tuple(float(c) for c in v)
        elif key == "label":
            out[key] = int(v)
        else:
            out[key] = float(v)
    return out


def _segment_distance(px, py, x0, y0, x1, y1):
    """Distance from points (px, py) to segments (x0, y0)-(x1, y1); all broadcastable."""
    vx, vy = x1 - x0, y1 - y0
    wx, wy = px - x0, py - y0
    denom = np.maximum(vx * vx + vy * vy, np.float32(1e-12))
    t = np.clip((wx * vx + wy * vy) / denom, 0.0, 1.0)
    ex, ey = wx - t * vx, wy - t * vy
    return np.sqrt(ex * ex + ey * ey)


def _paint_window(image, centers, half_extent, resolution, coverage_fn):
    """Paints coverage computed in a square window around each centre into uint8 ``image``.

    ``image`` is ``[n, R, R, C]``; overlapping paint keeps the darker value (max of coverage).
    """
    n = image.shape[0]
    win = min(resolution, int(math.ceil(2.0 * half_extent)) + 3)
    origin = np.floor(centers - win / 2.0).astype(np.int64)
    origin = np.clip(origin, 0, resolution - win)  # [n, 2] (x0, y0)
    offs = np.arange(win, dtype=np.int64)
    cols = origin[:, 0:1] + offs[None, :]  # [n, win]
    rows = origin[:, 1:2] + offs[None, :]
    px = (cols + 0.5).astype(np.float32)[:, None, :]  # [n, 1, win]
    py = (rows + 0.5).astype(np.float32)[:, :, None]  # [n, win, 1]
    cov = coverage_fn(px, py)  # [n, win, win] in [0, 1]
    gray = np.rint(np.float32(255.0) * (np.float32(1.0) - cov)).astype(np.uint8)
    sel = (np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :])
    current = image[sel + (0,)]
    image[sel] = np.minimum(current, gray)[..., None]


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB, as the paper), got {channels!r}")


def render_batch(
    params: dict[str, np.ndarray],
    resolution: int,
    *,
    out: np.ndarray | None = None,
    channels: int = 3,
) -> np.ndarray:
    """Renders a batch of drawn geometries.

    Args:
      params: the output of ``sample_params_batch`` (arrays with leading dimension ``n``).
      resolution: image size ``R``; must be the one the parameters were drawn for.
      out: optional uint8 ``[n, R, R, channels]`` array to render into (overwritten).
      channels: 3 (RGB with equal channels, as the paper's images) or 1 (the same gray values,
        a third of the memory).

    Returns:
      uint8 ``[n, R, R, channels]``: black objects on white.
    """
    _check_resolution("resolution", resolution)
    _check_channels(channels)
    f32 = np.float32
    n = int(np.shape(params["angle"])[0])
    shape = (n, resolution, resolution, channels)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {shape}, got {out.dtype} {out.shape}")
    out.fill(255)
    if n == 0:
        return out

    def col(key):
        return np.asarray(params[key], dtype=f32).reshape(n, 1, 1)

    arrow = np.asarray(params["arrow_center"], dtype=np.float64)
    circle = np.asarray(params["circle_center"], dtype=np.float64)
    ax, ay = (arrow[:, k].astype(f32).reshape(n, 1, 1) for k in (0, 1))
    cx, cy = (circle[:, k].astype(f32).reshape(n, 1, 1) for k in (0, 1))
    phi = np.asarray(params["angle"], dtype=np.float64)
    half, head = col("half_length"), col("head_length")
    stroke_half = np.maximum(col("width"), f32(_MIN_STROKE_PX)) / 2
    radius = col("radius")
    ux, uy = np.cos(phi).astype(f32).reshape(n, 1, 1), np.sin(phi).astype(f32).reshape(n, 1, 1)
    hx1 = np.cos(phi + _HEAD_ANGLE).astype(f32).reshape(n, 1, 1)
    hy1 = np.sin(phi + _HEAD_ANGLE).astype(f32).reshape(n, 1, 1)
    hx2 = np.cos(phi - _HEAD_ANGLE).astype(f32).reshape(n, 1, 1)
    hy2 = np.sin(phi - _HEAD_ANGLE).astype(f32).reshape(n, 1, 1)
    tx, ty = ax + half * ux, ay + half * uy  # tip

    def arrow_coverage(px, py):
        d = _segment_distance(px, py, ax - half * ux, ay - half * uy, tx, ty)
        d = np.minimum(d, _segment_distance(px, py, tx, ty, tx - head * hx1, ty - head * hy1))
        d = np.minimum(d, _segment_distance(px, py, tx, ty, tx - head * hx2, ty - head * hy2))
        return np.clip(stroke_half + f32(0.5) - d, 0.0, 1.0)

    def disc_coverage(px, py):
        d = np.sqrt((px - cx) ** 2 + (py - cy) ** 2)
        return np.clip(radius + f32(0.5) - d, 0.0, 1.0)

    arrow_extent = float(np.max(np.asarray(params["half_length"]))) + float(
        np.max(np.maximum(np.asarray(params["width"]), _MIN_STROKE_PX))
    )
    disc_extent = float(np.max(np.asarray(params["radius"]))) + 1.0
    _paint_window(out, arrow, arrow_extent, resolution, arrow_coverage)
    _paint_window(out, circle, disc_extent, resolution, disc_coverage)
    return out


def render(params: dict, resolution: int) -> np.ndarray:
    """Renders one drawn geometry (the output of ``sample_params``) as uint8 ``[R, R, 3]``."""
    batch = {k: np.asarray(v)[None] for k, v in params.items()}
    return render_batch(batch, resolution)[0]


def _spec_params(spec: SplitSpec, indices) -> dict[str, np.ndarray]:
    return sample_params_batch(
        spec.seed, indices, spec.resolution, base_resolution=spec.base_resolution,
        stroke=spec.stroke,
    )  # fmt: skip


def generate_indices(
    split: str,
    indices: Sequence[int] | np.ndarray,
    *,
    resolution: int | None = None,
    seed: int | None = None,
    stroke: str = "fixed",
) -> dict[str, np.ndarray]:
    """Generates the samples ``indices`` of a split (for lazy or chunked use).

    Same arguments as ``generate`` (``resolution`` is the base resolution). Returns
    ``{"image": uint8 [n, R, R, 3], "label": int32 [n]}``; row ``k`` equals row ``indices[k]`` of
    ``generate`` with the same split, resolution and seed.
    """
    spec = split_spec(split, resolution=resolution, seed=seed, stroke=stroke)
    params = _spec_params(spec, indices)
    return {"image": render_batch(params, spec.resolution), "label": params["label"]}


def generate(
    split: str,
    *,
    num_samples: int | None = None,
    resolution: int | None = None,
    seed: int | None = None,
    stroke: str = "fixed",
    channels: int = 3,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Generates a whole split: samples ``0 .. num_samples - 1``.

    Args:
      split: ``"train", "val", "val_ext", "test", "test_ext"``.
      num_samples: default from the spec table (100k / 5,120 / 5,120 / 10,240 / 10,240).
      resolution: the base resolution (default 192); ``_ext`` splits render at twice it and keep
        the base's pixel sizes, e.g. ``generate("val_ext", resolution=64)`` gives 128 px images
        with the objects of the 64 px splits.
      seed: default from the spec table (43, 100042, 100043, 200042, 200043).
      stroke: stroke-width rule (module docstring): ``"fixed"`` or ``"scaled"``.
      channels: 3 (RGB, equal channels) or 1 (gray; a third of the memory).
      progress: print one line per generated chunk to stdout.

    Returns:
      ``{"image": uint8 [N, R, R, channels], "label": int32 [N]}``, ``R`` the rendered resolution.
    """
    spec = split_spec(
        split, num_samples=num_samples, resolution=resolution, seed=seed, stroke=stroke
    )
    chunk = max(1, min(spec.num_samples, (1 << 23) // spec.resolution**2))
    _check_channels(channels)
    images = np.empty((spec.num_samples, spec.resolution, spec.resolution, channels), np.uint8)
    labels = np.empty((spec.num_samples,), np.int32)
    for start in range(0, spec.num_samples, chunk):
        stop = min(start + chunk, spec.num_samples)
        params = _spec_params(spec, np.arange(start, stop))
        render_batch(params, spec.resolution, out=images[start:stop], channels=channels)
        labels[start:stop] = params["label"]
        if progress:
            print(f"arrow_pointing/{split}: {stop}/{spec.num_samples}", flush=True)
    return {"image": images, "label": labels}


class ArrowPointingSource:
    """A lazy random-access source: ``source[i]`` renders sample ``i`` on demand.

    For splits too large to hold in memory (100k × 192 px is 11 GB of uint8); plugs into grain,
    e.g. ``tfds_source.image_classification_dataset("arrow_pointing", "train",
    source=ArrowPointingSource("train"), ...)``. Arguments as ``generate``.

    ``source[i]`` is ``{"image": uint8 [R, R, 3], "label": int32 []}``, equal to row ``i`` of
    ``generate`` with the same arguments.
    """

    def __init__(
        self,
        split: str,
        *,
        num_samples: int | None = None,
        resolution: int | None = None,
        seed: int | None = None,
        stroke: str = "fixed",
    ):
        self.spec = split_spec(
            split, num_samples=num_samples, resolution=resolution, seed=seed, stroke=stroke
        )

    def __len__(self) -> int:
        return self.spec.num_samples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.spec.num_samples:
            raise IndexError(f"index {index} out of range [0, {self.spec.num_samples})")
        params = _spec_params(self.spec, [index])
        image = render_batch(params, self.spec.resolution)[0]
        return {"image": image, "label": params["label"][0]}
