"""Arrow-pointing generator: determinism, labels vs an independent ray-circle check, balance,
objects inside the image, pixel sizes kept in the `_ext` splits, rendering matches geometry."""

import math

import numpy as np
import pytest

from augpar.data import arrow_pointing as ap


def _ray_circle(arrow_xy, angle, circle_xy, radius):
    """Independent check: closest approach of the ray from the arrow centre to the circle centre.

    Returns (t, perp): t = signed distance along the ray to the foot point, perp = distance from the
    circle centre to the ray's line.
    """
    ex, ey = math.cos(angle), math.sin(angle)
    dx, dy = circle_xy[0] - arrow_xy[0], circle_xy[1] - arrow_xy[1]
    t = dx * ex + dy * ey
    perp = abs(dx * ey - dy * ex)
    return t, perp


def test_deterministic_per_seed_and_index():
    a = ap.generate("train", num_samples=40, resolution=64, seed=7)
    b = ap.generate("train", num_samples=40, resolution=64, seed=7)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    # Sample i does not depend on how many samples are generated or in which order.
    sub = ap.generate_indices("train", [39, 3, 17], resolution=64, seed=7)
    np.testing.assert_array_equal(sub["image"], a["image"][[39, 3, 17]])
    np.testing.assert_array_equal(sub["label"], a["label"][[39, 3, 17]])
    one = ap.render(ap.sample_params(7, 17, 64), 64)
    np.testing.assert_array_equal(one, a["image"][17])
    # Another seed gives other images.
    c = ap.generate("train", num_samples=40, resolution=64, seed=8)
    assert not np.array_equal(a["image"], c["image"])


def test_shapes_dtypes_and_split_defaults():
    for split, rendered in [("train", 64), ("val", 64), ("test", 64), ("val_ext", 128)]:
        d = ap.generate(split, num_samples=5, resolution=64)
        assert d["image"].shape == (5, rendered, rendered, 3) and d["image"].dtype == np.uint8
        assert d["label"].shape == (5,) and d["label"].dtype == np.int32
    spec = ap.split_spec("test_ext")
    assert (spec.num_samples, spec.seed, spec.resolution, spec.scale) == (10240, 200043, 384, 1.0)
    assert ap.split_spec("train").seed == 43 and ap.split_spec("val").seed == 100042
    # Default seeds differ per split, so the splits differ.
    v = ap.generate("val", num_samples=8, resolution=64)
    t = ap.generate("test", num_samples=8, resolution=64)
    assert not np.array_equal(v["image"], t["image"])


@pytest.mark.parametrize(
    "seed,resolution,base", [(43, 64, 64), (100043, 128, 64), (200042, 192, 192), (5, 384, 192)]
)
def test_labels_agree_with_independent_geometry(seed, resolution, base):
    p = ap.sample_params_batch(seed, np.arange(2000), resolution, base_resolution=base)
    for i in range(2000):
        t, perp = _ray_circle(
            p["arrow_center"][i], p["angle"][i], p["circle_center"][i], p["radius"][i]
        )
        r = p["radius"][i]
        if p["label"][i] == 1:
            assert t > 0 and perp <= r / 1.2 + 1e-9, (i, t, perp, r)
        else:
            assert t <= 0 or perp >= 1.2 * r - 1e-9, (i, t, perp, r)
        # The binary label is "the ray hits the disc".
        assert p["label"][i] == int(t > 0 and perp < r)


def test_class_balance_binomial_bound():
    n = 4000
    labels = ap.generate("train", num_samples=n, resolution=32)["label"]
    # 5 sigma of Binomial(n, 1/2): 5 * sqrt(n) / 2.
    assert abs(int(labels.sum()) - n / 2) < 5 * math.sqrt(n) / 2
    # Both classes also appear in the other splits.
    for split in ("val", "val_ext", "test", "test_ext"):
        lab = ap.generate(split, num_samples=400, resolution=32)["label"]
        assert abs(int(lab.sum()) - 200) < 5 * math.sqrt(400) / 2


@pytest.mark.parametrize("resolution,base", [(32, 32), (64, 64), (128, 64), (192, 192), (384, 192)])
def test_objects_inside_image_and_apart(resolution, base):
    p = ap.sample_params_batch(11, np.arange(1000), resolution, base_resolution=base)
    ax, ay = p["arrow_center"].T
    cx, cy = p["circle_center"].T
    r = p["radius"]
    # Arrow: all of it lies within half_length + stroke of its centre.
    reach = p["half_length"] + np.maximum(p["width"], 1.0) / 2 + 0.5
    # Disc: the largest one touches the border exactly, as in the spec (radius <= padding).
    for lo in (ax - reach, ay - reach, cx - r + 1e-9, cy - r + 1e-9):
        assert lo.min() >= 0
    for hi in (ax + reach, ay + reach, cx + r - 1e-9, cy + r - 1e-9):
        assert hi.max() <= resolution
    # Circle is at least 2r away along each axis, so it never touches the arrow.
    assert np.all(np.abs(cx - ax) >= 2 * r - 1e-9) and np.all(np.abs(cy - ay) >= 2 * r - 1e-9)
    assert np.all(np.hypot(cx - ax, cy - ay) > r + reach)


def test_ext_split_keeps_pixel_sizes():
    base = ap.sample_params_batch(100042, np.arange(3000), 64)
    ext = ap.sample_params_batch(100043, np.arange(3000), 128, base_resolution=64)
    s = 64 / 192
    for p in (base, ext):
        assert p["radius"].min() >= 15 * s and p["radius"].max() <= 30 * s
        assert set(np.round(p["length"] / s).astype(int)) <= set(range(15, 30))
        assert set(p["width"].astype(int)) == {2, 3}  # stroke="fixed": the spec's pixels
    # Same distribution of pixel sizes (means within a few standard errors).
    se = 15 * s / math.sqrt(12) / math.sqrt(3000) * math.sqrt(2)
    assert abs(base["radius"].mean() - ext["radius"].mean()) < 5 * se
    # Rendered: the ink of an image is the same in pixels at 64 and 128 px (disc area dominates).
    d_base = ap.generate("val", num_samples=300, resolution=64)
    d_ext = ap.generate("val_ext", num_samples=300, resolution=64)
    assert d_ext["image"].shape[1] == 128
    ink_base = (255 - d_base["image"][..., 0].astype(np.float64)).sum((1, 2)).mean() / 255
    ink_ext = (255 - d_ext["image"][..., 0].astype(np.float64)).sum((1, 2)).mean() / 255
    assert abs(ink_ext / ink_base - 1) < 0.1, (ink_base, ink_ext)
    # The paper-scale splits use the spec's fixed pixel sizes.
    assert ap.split_spec("val_ext").scale == 1.0 and ap.split_spec("val_ext").resolution == 384


@pytest.mark.parametrize("resolution,base", [(64, 64), (128, 64), (192, 192)])
def test_rendering_matches_geometry(resolution, base):
    p = ap.sample_params_batch(3, np.arange(60), resolution, base_resolution=base)
    images = ap.render_batch(p, resolution)
    assert np.array_equal(images[..., 0], images[..., 1])
    assert np.array_equal(images[..., 0], images[..., 2])
    yy, xx = np.mgrid[0:resolution, 0:resolution] + 0.5
    for i in range(60):
        ink = (255.0 - images[i, ..., 0]) / 255.0
        cx, cy = p["circle_center"][i]
        ax, ay = p["arrow_center"][i]
        r = p["radius"][i]
        reach = p["half_length"][i] + max(p["width"][i], 1.0) / 2 + 0.5
        near_disc = np.hypot(xx - cx, yy - cy) <= r + 0.5
        near_arrow = np.hypot(xx - ax, yy - ay) <= reach
        assert ink[~(near_disc | near_arrow)].max() == 0.0
        # Disc: its interior is black, its ink is its area.
        assert ink[np.hypot(xx - cx, yy - cy) <= r - 0.71].min() == 1.0
        assert abs(ink[near_disc].sum() - math.pi * r * r) < 2 * math.pi * r * 0.2 + 1
        # Arrow: ink at the centre, more ink on the tip half (the head) than on the tail half.
        e = np.array([math.cos(p["angle"][i]), math.sin(p["angle"][i])])
        along = (xx - ax) * e[0] + (yy - ay) * e[1]
        arrow_ink = np.where(near_arrow, ink, 0.0)
        assert arrow_ink.sum() > 0.5 * p["length"][i] * max(p["width"][i], 1.0)
        assert arrow_ink[along > 0].sum() > arrow_ink[along < 0].sum()


def _horizontal_arrow_cross_section(resolution, base, stroke):
    """Stroke width in dark pixels, per sample: each arrow turned horizontal and centred so the
    stroke covers whole pixels (pixel boundary for even widths, pixel centre for odd ones), the
    disc moved out of the way; a column through the shaft's tail half is counted."""
    p = ap.sample_params_batch(11, np.arange(40), resolution, base_resolution=base, stroke=stroke)
    drawn = np.maximum(p["width"], 1.0)
    centre = resolution / 2 + np.where(np.round(drawn) % 2 == 1, 0.5, 0.0)
    p["angle"] = np.zeros_like(p["angle"])
    p["arrow_center"] = np.stack([np.full_like(centre, resolution / 2), centre], -1)
    p["circle_center"] = np.full_like(p["circle_center"], 2.0)
    p["radius"] = np.full_like(p["radius"], 0.4)  # too small to reach a pixel centre's ink
    images = ap.render_batch(p, resolution)
    # The column halfway along the tail half: through the shaft, clear of the head's barbs.
    cols = np.floor(resolution / 2 - p["half_length"] / 2).astype(int)
    column = images[np.arange(len(cols)), :, cols, 0]
    return p, (column < 128).sum(axis=1)


@pytest.mark.parametrize("resolution,base", [(64, 64), (128, 64), (96, 96), (192, 192), (384, 192)])
def test_stroke_fixed_keeps_two_to_three_pixels_at_every_resolution(resolution, base):
    p, dark = _horizontal_arrow_cross_section(resolution, base, "fixed")
    assert set(p["width"].astype(int)) == {2, 3}
    np.testing.assert_array_equal(dark, p["width"].astype(int))


def test_stroke_scaled_shrinks_with_the_geometry():
    """The earlier rule: at 64 px the 2-3 px strokes become 0.67-1 px, drawn 1 px wide."""
    p, dark = _horizontal_arrow_cross_section(64, 64, "scaled")
    np.testing.assert_allclose(sorted(set(np.round(p["width"] * 3, 6))), [2.0, 3.0])
    np.testing.assert_array_equal(dark, 1)
    # At 192 px (scale 1) both rules draw the same image.
    a = ap.generate("val", num_samples=6, resolution=192, stroke="fixed")
    b = ap.generate("val", num_samples=6, resolution=192, stroke="scaled")
    np.testing.assert_array_equal(a["image"], b["image"])


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="split must be one of"):
        ap.generate("training", num_samples=2)
    with pytest.raises(ValueError, match="resolution must be an int >= 16, got 8"):
        ap.generate("train", num_samples=2, resolution=8)
    with pytest.raises(ValueError, match="num_samples must be a positive int, got 0"):
        ap.generate("train", num_samples=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        ap.generate("train", num_samples=2, seed=-1)
    with pytest.raises(ValueError, match="too small for base_resolution 192"):
        ap.sample_params_batch(0, [0], 100, base_resolution=192)
    with pytest.raises(ValueError, match="stroke must be one of .*got 'thin'"):
        ap.generate("train", num_samples=2, stroke="thin")


def test_lazy_source_matches_generate():
    source = ap.ArrowPointingSource("val_ext", num_samples=30, resolution=32)
    full = ap.generate("val_ext", num_samples=30, resolution=32)
    assert len(source) == 30
    for i in (0, 7, 29):
        np.testing.assert_array_equal(source[i]["image"], full["image"][i])
        assert source[i]["label"] == full["label"][i] and source[i]["image"].shape == (64, 64, 3)
    with pytest.raises(IndexError, match=r"index 30 out of range \[0, 30\)"):
        source[30]


def test_gray_channel_equals_rgb():
    rgb = ap.generate("val", num_samples=12, resolution=64)
    gray = ap.generate("val", num_samples=12, resolution=64, channels=1)
    assert gray["image"].shape == (12, 64, 64, 1)
    np.testing.assert_array_equal(gray["image"][..., 0], rgb["image"][..., 0])
    with pytest.raises(ValueError, match="channels must be 1 .* or 3 .*got 2"):
        ap.generate("val", num_samples=2, channels=2)
