"""Tests for augpar.augment.mix: label sums, exact pixel provenance, cutmix area correction."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augpar.augment import mix

K = 5


def _jitted(fn):
    """Call ``fn`` under jit, keyword options bound statically (one compile per test)."""

    def call(*args, **kwargs):
        return jax.jit(functools.partial(fn, **kwargs))(*args)

    return call


def _index_images(batch, height, width, channels=3, dtype=jnp.float32):
    """Image i is constant 10*i + 1, so every output pixel reveals its source image."""
    vals = 10 * jnp.arange(batch, dtype=jnp.float32) + 1
    img = jnp.broadcast_to(vals.reshape(batch, 1, 1, 1), (batch, height, width, channels))
    return img.astype(dtype)


def test_mixup_matches_formula_and_roll_partner():
    key = jax.random.key(0)
    images = _index_images(4, 6, 5)
    labels = jnp.array([0, 1, 2, 3])
    out, soft = _jitted(mix.mixup)(key, images, labels, num_classes=K, alpha=0.4)
    assert out.shape == images.shape and out.dtype == jnp.float32
    # per-batch λ: recover it from example 0 (value 1) and its roll partner (example 3 = 31).
    lam = (out[0, 0, 0, 0] - 31.0) / (1.0 - 31.0)
    partner = np.array([3, 0, 1, 2])
    expected = lam * images + (1 - lam) * images[partner]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    onehot = jax.nn.one_hot(labels, K)
    np.testing.assert_allclose(soft, lam * onehot + (1 - lam) * onehot[partner], atol=1e-6)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)


def test_mixup_uint8_returns_float32_on_255_scale_and_soft_labels_in():
    key = jax.random.key(1)
    images = jnp.full((3, 4, 4, 1), 200, jnp.uint8).at[1].set(0)
    soft_in = jnp.array([[0.5, 0.5, 0, 0, 0], [0, 0, 1.0, 0, 0], [0.2, 0.2, 0.2, 0.2, 0.2]])
    out, soft = _jitted(mix.mixup)(key, images, soft_in, num_classes=K, per_example=True, alpha=1.0)
    assert out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 200.0
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("batch", "height", "width", "per_example", "partner", "seed"),
    [
        (1, 1, 1, True, "roll", 0),
        (3, 2, 7, False, "flip", 1),
        (16, 7, 9, True, "permutation", 2),
        (24, 5, 4, True, "roll", 3),
    ],
)
def test_cutmix_label_weight_equals_pasted_area(batch, height, width, seed, per_example, partner):
    images = _index_images(batch, height, width, channels=2, dtype=jnp.uint8)
    labels = jnp.arange(batch)  # distinct classes, so soft[i, i] is the own-image weight
    out, soft = _jitted(mix.cutmix)(
        jax.random.key(seed),
        images,
        labels,
        num_classes=32,
        per_example=per_example,
        partner=partner,
    )
    assert out.dtype == jnp.uint8 and out.shape == images.shape
    out = np.asarray(out)
    soft = np.asarray(soft)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)
    for i in range(batch):
        own = out[i, :, :, 0] == 10 * i + 1
        # the label weight of the own class is exactly the fraction of own pixels kept
        # (a self-pair pastes nothing visible and keeps weight 1, which also holds)
        np.testing.assert_allclose(soft[i, i], own.mean(), atol=1e-6)
        pasted = ~own
        if pasted.any():
            # pasted pixels form one axis-aligned box coming from a single partner image,
            # whose class receives the rest of the label mass
            rows, cols = np.where(pasted.any(1))[0], np.where(pasted.any(0))[0]
            assert pasted.sum() == len(rows) * len(cols)
            src = np.unique(out[i][pasted])
            assert len(src) == 1
            j = (int(src[0]) - 1) // 10
            np.testing.assert_allclose(soft[i, j], pasted.mean(), atol=1e-6)
            assert np.all(out[i][pasted] == out[i][pasted][0])


def test_cutmix_area_statistics_follow_beta():
    """The kept-area distribution matches an independent numpy simulation of the box rule."""
    n, size = 2048, 16
    images = _index_images(n, size, size, channels=1)
    labels = jnp.zeros((n,), jnp.int32)
    out, _ = _jitted(mix.cutmix)(jax.random.key(3), images, labels, num_classes=2, per_example=True)
    kept = np.asarray((out[..., 0] == images[..., 0]).mean((1, 2)))
    rng = np.random.default_rng(0)
    m = 200_000
    lam = rng.beta(1.0, 1.0, m)
    cut = np.floor(size * np.sqrt(1 - lam)).astype(int)
    c = rng.integers(0, size, (2, m))
    lo = np.clip(c - cut // 2, 0, size)
    hi = np.clip(c - cut // 2 + cut, 0, size)
    ref = 1 - (hi[0] - lo[0]) * (hi[1] - lo[1]) / size**2
    # standard error of the difference of means is about 0.25/sqrt(2048) = 0.0055: allow 4 SE
    assert abs(kept.mean() - ref.mean()) < 0.022
    for q in (0.1, 0.25, 0.5, 0.75):
        assert abs(np.quantile(kept, q) - np.quantile(ref, q)) < 0.05, q


def test_enmix_mixes_augmented_views():
    images = _index_images(6, 4, 4)
    labels = jnp.arange(6) % K

    def plus_hundred(key, x):
        del key
        return x + 100.0

    out, soft = _jitted(mix.enmix)(
        jax.random.key(4), images, labels, num_classes=K, augment_fn=plus_hundred
    )
    # every output is a convex combination of augmented images, all >= 101
    assert float(out.min()) >= 101.0 - 1e-4
    ref, ref_soft = _jitted(mix.enmix)(jax.random.key(4), images + 100.0, labels, num_classes=K)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    np.testing.assert_allclose(soft, ref_soft, atol=1e-6)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)


def test_enmix_label_ratio_fn_is_applied_separately():
    images = _index_images(5, 3, 3)
    labels = jnp.arange(5)
    out, soft = _jitted(mix.enmix)(
        jax.random.key(5),
        images,
        labels,
        num_classes=K,
        partner="roll",
        label_ratio_fn=lambda lam: jnp.ones_like(lam),
    )
    np.testing.assert_allclose(soft, jax.nn.one_hot(labels, K), atol=1e-6)
    assert not np.allclose(out, images)  # images were still mixed


def test_adpmix_remix_rule_and_pairing():
    new = _index_images(64, 2, 2, dtype=jnp.uint8)[:8]  # values 1..71
    new_labels = jnp.full((8,), 4)
    old = jnp.full((3, 2, 2, 3), 250, jnp.uint8)
    old_labels = jnp.array([0, 1, 2])
    counts = jnp.array([2.0, 2.0, 2.0, 0.0, 100.0])  # old classes rare, new class frequent
    out, soft = _jitted(mix.adpmix)(
        jax.random.key(6),
        new,
        new_labels,
        old,
        old_labels,
        num_classes=K,
        class_counts=counts,
        alpha=1.0,
    )
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)
    # recover λ (weight of old) from pixels: x = λ·250 + (1-λ)·x_new
    x_new = np.asarray(new[:, 0, 0, 0], np.float32)
    lam = (np.asarray(out[:, 0, 0, 0]) - x_new) / (250.0 - x_new)
    old_mass = np.asarray(soft[:, :3].sum(-1))
    tau = 0.5
    for lam_i, m in zip(lam, old_mass, strict=True):
        # n_old/n_new = 0.02 <= 1/κ: label becomes fully old when 1-λ < τ, else equals λ
        expected = 1.0 if (1.0 - lam_i) < tau else lam_i
        assert m == pytest.approx(expected, abs=1e-4)
    assert np.any(old_mass == 1.0) and np.any((old_mass > 0) & (old_mass < 1))


def test_adpmix_with_mixup_rule_equals_image_ratio():
    new = _index_images(4, 3, 3)
    old = _index_images(4, 3, 3) + 50.0
    counts = jnp.ones((K,))
    out, soft = _jitted(mix.adpmix)(
        jax.random.key(7),
        new,
        jnp.array([3, 3, 4, 4]),
        old,
        jnp.array([0, 1, 0, 1]),
        num_classes=K,
        class_counts=counts,
        label_ratio_fn=mix.mixup_label_ratio,
    )
    old_mass = np.asarray(soft[:, :2].sum(-1))
    x_new = np.asarray(new[:, 0, 0, 0])
    x_old_options = np.asarray(old[:, 0, 0, 0])
    for i in range(4):
        lam = old_mass[i]
        # the pixel must be λ·x_old + (1-λ)·x_new for one of the buffer images
        candidates = lam * x_old_options + (1 - lam) * x_new[i]
        assert np.min(np.abs(candidates - float(out[i, 0, 0, 0]))) < 1e-3


def test_remix_rule_values():
    rule = mix.remix_label_ratio(kappa=3.0, tau=0.5)
    lam = jnp.array([0.3, 0.3, 0.8, 0.8, 0.3])
    n_a = jnp.array([30.0, 1.0, 1.0, 30.0, 2.0])
    n_b = jnp.array([1.0, 30.0, 30.0, 1.0, 2.0])
    np.testing.assert_allclose(rule(lam, n_a, n_b), [0.0, 0.3, 1.0, 0.8, 0.3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(alpha=0.0), "alpha"),
        (dict(partner="shuffle"), "partner"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_invalid_options_raise(kwargs, match):
    images = jnp.zeros((2, 4, 4, 3), jnp.uint8)
    labels = jnp.zeros((2,), jnp.int32)
    call = dict(num_classes=3) | kwargs
    with pytest.raises(ValueError, match=match):
        mix.mixup(jax.random.key(0), images, labels, **call)


def test_invalid_inputs_raise():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="rank 4"):
        mix.cutmix(key, jnp.zeros((4, 4, 3)), jnp.zeros((4,), jnp.int32), num_classes=3)
    with pytest.raises(ValueError, match="uint8 or floating"):
        mix.mixup(
            key, jnp.zeros((2, 4, 4, 3), jnp.int32), jnp.zeros((2,), jnp.int32), num_classes=3
        )
    with pytest.raises(ValueError, match="num_classes=3"):
        mix.mixup(key, jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 4)), num_classes=3)
    with pytest.raises(ValueError, match="one row per image"):
        mix.mixup(key, jnp.zeros((2, 4, 4, 3)), jnp.zeros((3,), jnp.int32), num_classes=3)
    with pytest.raises(ValueError, match="class_counts"):
        mix.adpmix(
            key,
            jnp.zeros((2, 4, 4, 3)),
            jnp.zeros((2,), jnp.int32),
            jnp.zeros((2, 4, 4, 3)),
            jnp.zeros((2,), jnp.int32),
            num_classes=3,
            class_counts=jnp.ones(4),
        )
