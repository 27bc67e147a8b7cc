"""Batched policies: torchvision parity per op, batched path == single-image path, draws by
distribution, jit with static shapes, AugMix weights and its Jensen-Shannon loss.

Golden fixtures: tests/augment/fixtures/torchvision_policies.npz (make_fixtures.py, torch 2.14.1
/ torchvision 0.29.1): torchvision's magnitude tables of RandAugment, TrivialAugmentWide and
AugMix for a 20x26 image, and 120 (op, bin, sign, interpolation) applications by torchvision's
own ``_apply_image_or_video_transform``; all must match bit for bit.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augpar.augment import ops, policies

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
_POL = np.load(FIXTURES / "torchvision_policies.npz")
_SAMPLES = json.loads(str(_POL["samples_json"]))
_SPACE_OPS = {
    "rand_augment": policies.RAND_AUGMENT_OPS,
    "trivial_augment_wide": policies.TRIVIAL_AUGMENT_OPS,
    "augmix": policies.AUGMIX_OPS,
}


def _images(b, h=20, w=26, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("space", list(_SPACE_OPS))
def test_op_lists_and_magnitude_tables_match_torchvision(space):
    names = _SPACE_OPS[space]
    assert tuple(json.loads(str(_POL[f"{space}_ops"]))) == names
    h, w = _POL["input"].shape[:2]
    bins = 10 if space == "augmix" else 31
    checked = 0
    for name in names:
        key = f"{space}_table_{name}"
        mine = policies.magnitude_table(space, name, bins, h, w)
        if key in _POL:
            np.testing.assert_array_equal(mine, _POL[key], err_msg=f"{space} {name}")
            checked += 1
        else:
            assert mine is None
    assert checked >= 9


@pytest.mark.parametrize("space", list(_SPACE_OPS))
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_each_drawn_op_matches_torchvision(space, interpolation):
    samples = [s for s in _SAMPLES if s["policy"] == space and s["interpolation"] == interpolation]
    names = _SPACE_OPS[space]
    x = jnp.asarray(_POL["input"])
    bins = 10 if space == "augmix" else 31
    draw = policies.OpDraw(
        op=jnp.asarray([[names.index(s["op"]) for s in samples]], jnp.int32),
        magnitude_bin=jnp.asarray([[s["bin"] for s in samples]], jnp.int32),
        sign=jnp.asarray([[s["sign"] for s in samples]], jnp.int32),
    )
    batch = jnp.broadcast_to(x, (len(samples), *x.shape))
    run = jax.jit(
        functools.partial(
            policies.apply_ops,
            space=space,
            num_magnitude_bins=bins,
            fill=None,
            interpolation=interpolation,
        )
    )
    got = np.asarray(run(batch, draw))
    expected = np.stack([_POL[s["key"]] for s in samples])
    bad = [s for s, g, e in zip(samples, got, expected, strict=True) if not np.array_equal(g, e)]
    assert not bad, f"{len(bad)} of {len(samples)} differ, first {bad[0]}"
    if space == "trivial_augment_wide":  # the contract: apply_op, one image, traced indices
        single = jax.jit(
            jax.vmap(
                lambda o, b, s: policies.apply_op(
                    x, o, b, sign=s, fill=None, interpolation=interpolation
                )
            )
        )
        np.testing.assert_array_equal(
            single(draw.op[0], draw.magnitude_bin[0], draw.sign[0]), expected
        )


def test_apply_op_contract_and_rot90_bin():
    assert len(policies.TRIVIAL_AUGMENT_OPS) == 14
    assert policies.TRIVIAL_AUGMENT_OPS[0] == "Identity"
    sq = _images(1, 16, 16, seed=3)[0]
    rotate = policies.TRIVIAL_AUGMENT_OPS.index("Rotate")
    # Wide rotate bin 20 is exactly 90 degrees: torchvision takes its rot90 fast path.
    out = jax.jit(policies.apply_op)(sq, jnp.int32(rotate), jnp.int32(20))
    np.testing.assert_array_equal(out, jnp.rot90(sq, 1, axes=(0, 1)))
    out = policies.apply_op(sq, rotate, 20, sign=-1)
    np.testing.assert_array_equal(out, jnp.rot90(sq, 3, axes=(0, 1)))
    np.testing.assert_array_equal(policies.apply_op(sq, 0, 30), sq)
    assert out.dtype == jnp.uint8 and out.shape == sq.shape
    with pytest.raises(ValueError, match=r"op_index.*\[0, 13\].*14"):
        policies.apply_op(sq, 14, 0)
    with pytest.raises(ValueError, match=r"magnitude_bin.*\[0, 30\].*31"):
        policies.apply_op(sq, 1, 31)


def test_sample_ops_distribution():
    b, layers, n_ops, bins = 14_000, 2, 14, 31
    draw = policies.sample_ops(
        jax.random.key(0), b, num_layers=layers, num_ops=n_ops, num_magnitude_bins=bins
    )
    op = np.asarray(draw.op)
    assert op.shape == (layers, b) and op.min() == 0 and op.max() == n_ops - 1
    counts = np.bincount(op.ravel(), minlength=n_ops)
    expected = layers * b / n_ops
    sd = np.sqrt(expected * (1 - 1 / n_ops))
    assert np.all(np.abs(counts - expected) < 5 * sd), counts
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 40  # 13 dof: p ~ 1e-4
    sign = np.asarray(draw.sign)
    assert set(np.unique(sign)) == {-1, 1}
    assert abs(np.mean(sign == -1) - 0.5) < 5 * np.sqrt(0.25 / sign.size)
    mb = np.asarray(draw.magnitude_bin)
    bin_counts = np.bincount(mb.ravel(), minlength=bins)
    e = mb.size / bins
    assert np.all(np.abs(bin_counts - e) < 5 * np.sqrt(e)), bin_counts
    # Independent across layers and between op and sign.
    assert abs(np.corrcoef(op[0], op[1])[0, 1]) < 0.05
    assert abs(np.corrcoef(op[0], sign[0])[0, 1]) < 0.05
    fixed = policies.sample_ops(
        jax.random.key(1), 100, num_layers=2, num_ops=14, num_magnitude_bins=31, magnitude=9
    )
    assert np.all(np.asarray(fixed.magnitude_bin) == 9)
    severity = policies.sample_ops(
        jax.random.key(2), 3000, num_layers=1, num_ops=13, num_magnitude_bins=10, max_bin=3
    )
    assert set(np.unique(np.asarray(severity.magnitude_bin))) == {0, 1, 2}


def test_rand_augment_consumes_sample_ops_and_is_jittable():
    images = _images(16)
    key = jax.random.key(4)
    run = jax.jit(functools.partial(policies.rand_augment, num_ops=2, magnitude=9))
    out = run(key, images)
    assert out.shape == images.shape and out.dtype == jnp.uint8
    draw = policies.sample_ops(
        key, 16, num_layers=2, num_ops=14, num_magnitude_bins=31, magnitude=9
    )
    np.testing.assert_array_equal(out, policies.apply_ops(images, draw))
    # Per-image draws: images whose draws are all Identity are unchanged, others mostly not.
    op = np.asarray(draw.op)
    untouched = np.all(op == 0, axis=0)
    np.testing.assert_array_equal(np.asarray(out)[untouched], np.asarray(images)[untouched])
    assert len({tuple(col) for col in op.T}) > 8
    # Layer by layer it is the single-image contract at the fixed bin (RandAugment tables).
    assert np.array_equal(run(key, images), out)  # deterministic given the key
    assert not np.array_equal(run(jax.random.key(5), images), out)
    np.testing.assert_array_equal(policies.rand_augment(key, images, num_ops=0), images)


def test_trivial_augment_batched_equals_single_image_contract():
    images = _images(12, seed=1)
    key = jax.random.key(7)
    out = jax.jit(policies.trivial_augment_wide)(key, images)
    draw = policies.sample_ops(key, 12, num_layers=1, num_ops=14, num_magnitude_bins=31)
    single = jax.jit(jax.vmap(policies.apply_op))(
        images, draw.op[0], draw.magnitude_bin[0], sign=draw.sign[0]
    )
    np.testing.assert_array_equal(out, single)


def test_big_vision_scale():
    images = _images(8, seed=2)
    run = jax.jit(
        functools.partial(policies.rand_augment, magnitude=10, magnitude_scale="big_vision")
    )
    out = run(jax.random.key(0), images)
    assert out.shape == images.shape and out.dtype == jnp.uint8
    t = policies._tables("big_vision", policies.RAND_AUGMENT_OPS, 1, 20, 26, 10.0)
    names = policies.RAND_AUGMENT_OPS
    post = names.index("Posterize")
    sol = names.index("Solarize")
    bright = names.index("Brightness")
    assert t.posterize_mask[post, 0, 0] == 0xF0  # int(0.4 * 10) = 4 bits
    assert t.solarize_threshold[sol, 0, 0] == 256.0  # int(25.6 * 10): nothing inverted
    # Enhance factor 0.18 * 10 + 0.1 = 1.9, unsigned (same for both signs).
    assert t.ratio[bright, 0, 0] == t.ratio[bright, 0, 1] == np.float32(1.9)


def test_policy_errors():
    images = _images(2)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"magnitude.*\[0, 30\].*31"):
        policies.rand_augment(key, images, magnitude=31)
    with pytest.raises(ValueError, match="magnitude_scale"):
        policies.rand_augment(key, images, magnitude_scale="timm")
    with pytest.raises(ValueError, match="uint8"):
        policies.trivial_augment_wide(key, images.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        policies.trivial_augment_wide(key, images[0])
    with pytest.raises(ValueError, match=r"severity.*\[1, 10\].*11"):
        policies.augmix(key, images, severity=11)
    with pytest.raises(ValueError, match="interpolation"):
        policies.augmix(key, images, interpolation="bicubic")


def test_augmix_weights_distribution():
    draw = jax.jit(
        functools.partial(policies.augmix_weights, mixture_width=3, alpha=1.0), static_argnums=1
    )
    m0, w = draw(jax.random.key(0), 20_000)
    m0, w = np.asarray(m0), np.asarray(w)
    np.testing.assert_allclose(m0 + w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w >= 0) and np.all(m0 >= 0)
    # Beta(1, 1) is uniform: mean 1/2, variance 1/12; each chain gets 1/6 on average.
    assert abs(m0.mean() - 0.5) < 0.01 and abs(m0.var() - 1 / 12) < 0.005
    np.testing.assert_allclose(w.mean(0), 1 / 6, atol=0.01)


def test_augmix_batch():
    images = _images(6, seed=5)
    run = jax.jit(functools.partial(policies.augmix, severity=3))
    out = run(jax.random.key(1), images)
    assert out.shape == images.shape and out.dtype == jnp.uint8
    assert not np.array_equal(out, images)
    # Per-image draws: identical inputs get different outputs.
    same = jnp.broadcast_to(images[:1], images.shape)
    outs = np.asarray(run(jax.random.key(2), same))
    assert len({o.tobytes() for o in outs}) == len(outs)
    # Constant black images stay black: every op and any convex mix keeps 0.
    np.testing.assert_array_equal(run(jax.random.key(3), jnp.zeros_like(images)), 0)


def _js_numpy(*logits):
    probs = [np.exp(x - x.max(-1, keepdims=True)) for x in logits]
    probs = [p / p.sum(-1, keepdims=True) for p in probs]
    m = np.clip(sum(probs) / 3, 1e-7, 1)
    return np.mean(sum(np.sum(p * (np.log(p) - np.log(m)), -1) for p in probs)) / 3


def test_augmix_js_loss():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((5, 7)).astype(np.float32) for _ in range(3))
    loss = policies.augmix_js_loss(a, b, c)
    np.testing.assert_allclose(loss, _js_numpy(a, b, c), rtol=1e-5)
    np.testing.assert_allclose(policies.augmix_js_loss(b, c, a), loss, rtol=1e-5)
    assert float(policies.augmix_js_loss(a, a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss) > 0
    grad = jax.grad(policies.augmix_js_loss)(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c))
    assert np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match="equal shape"):
        policies.augmix_js_loss(a, b, c[:, :3])


def test_apply_op_under_vmap_with_fill_and_ops_module_agree():
    x = _images(1, 12, 14, seed=9)[0]
    shear = policies.TRIVIAL_AUGMENT_OPS.index("ShearX")
    mag = float(policies.magnitude_table("trivial_augment_wide", "ShearX", 31, 12, 14)[10])
    got = policies.apply_op(x, shear, 10, fill=(10, 20, 30), interpolation="bilinear")
    ref = jax.jit(lambda im: ops.shear_x(im, mag, fill=(10, 20, 30), interpolation="bilinear"))
    np.testing.assert_array_equal(got, ref(x))
