"""Gating of the policy layers (``augpar.augment.policies.gating``).

Both gated strategies must equal the ungated layer (every stage on every image,
``strategy="vmap"``) bit for bit: the per-image ``lax.switch`` and the batch-level buffers,
whether the buffers hold every drawn image or overflow into the whole-batch fallback (forced
with small capacities), for every space, both interpolations, fills and 1-channel images.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augpar.augment import policies
from augpar.augment.policies import gating, tables


def _images(b, h=20, w=26, c=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (b, h, w, c), dtype=np.uint8))


def _run(images, draw, sigmas, strategy="gated", **kw):
    fn = jax.jit(functools.partial(policies.apply_ops, strategy=strategy, gate_sigmas=sigmas, **kw))
    return np.asarray(fn(images, draw))


CASES = [
    # space, bins, magnitude (None: uniform bin), interpolation, fill, channels
    ("rand_augment", 31, 9, "nearest", 0, 3),
    ("trivial_augment_wide", 31, None, "bilinear", None, 3),
    ("augmix", 10, None, "bilinear", (10, 20, 30), 3),
    ("trivial_augment_wide", 31, None, "nearest", 128, 1),
]


@pytest.mark.parametrize("space,bins,magnitude,interpolation,fill,channels", CASES)
def test_gated_equals_ungated_with_and_without_overflow(
    space, bins, magnitude, interpolation, fill, channels
):
    b, layers = 48, 3
    images = _images(b, c=channels, seed=len(space) + channels)
    num_ops = 13 if space == "augmix" else 14
    draw = policies.sample_ops(
        jax.random.key(3),
        b,
        num_layers=layers,
        num_ops=num_ops,
        num_magnitude_bins=bins,
        magnitude=magnitude,
    )
    kw = dict(space=space, num_magnitude_bins=bins, interpolation=interpolation, fill=fill)
    ref = _run(images, draw, 0.0, strategy="vmap", **kw)
    assert not np.array_equal(ref, np.asarray(images))
    np.testing.assert_array_equal(_run(images, draw, 0.0, strategy="per_image", **kw), ref)
    # The default (8 sigma) never overflows here; 0 sigma overflows about half the time;
    # -1e9 gives capacity 1, so nearly every stage falls back to the whole batch.
    for sigmas in (policies.GATE_SIGMAS, 0.0, -1e9):
        got = _run(images, draw, sigmas, **kw)
        np.testing.assert_array_equal(got, ref, err_msg=f"sigmas={sigmas}")


def test_forced_overflow_really_takes_both_branches():
    b = 48
    t = tables._tables("rand_augment", tables.RAND_AUGMENT_OPS, 31, 20, 26, None)
    caps = gating.capacities(t, b, 14, 0.0)
    draw = policies.sample_ops(
        jax.random.key(3), b, num_layers=3, num_ops=14, num_magnitude_bins=31, magnitude=9
    )
    p = tables._gather(t, draw.op, draw.magnitude_bin, (draw.sign < 0).astype(jnp.int32))
    over = under = 0
    for name, mask in gating.family_masks(p).items():
        counts = np.asarray(mask).sum(axis=1)
        over += int(np.sum(counts > caps[name]))
        under += int(np.sum(counts <= caps[name]))
    assert over > 0 and under > 0, (over, under)


def test_capacities_and_a_batch_that_drew_one_family_only():
    t = tables._tables("rand_augment", tables.RAND_AUGMENT_OPS, 31, 32, 32, None)
    caps = gating.capacities(t, 256, 14, 8.0)
    # Binomial(256, p) mean + 8 sd, rounded up: p = 5/14 (warp), 3/14, 1/14, 1/14, 1/14, 6/14.
    assert caps == {
        "warp": 153,
        "blend": 108,
        "sharpness": 52,
        "autocontrast": 52,
        "equalize": 52,
        "lut": 131,
    }
    # Every image draws Equalize, then Rotate: both stages overflow and fall back, exactly.
    b = 64
    images = _images(b, 16, 16, seed=5)
    names = policies.RAND_AUGMENT_OPS
    op = jnp.asarray([[names.index("Equalize")] * b, [names.index("Rotate")] * b], jnp.int32)
    sign = jnp.broadcast_to(jnp.where(jnp.arange(b) % 2 == 1, 1, -1), op.shape).astype(jnp.int32)
    draw = policies.OpDraw(op, jnp.full_like(op, 9), sign)
    ref = _run(images, draw, 8.0, strategy="vmap")
    np.testing.assert_array_equal(_run(images, draw, 8.0), ref)
    np.testing.assert_array_equal(_run(images, draw, 8.0, strategy="per_image"), ref)


def test_strategy_and_num_drawn_ops_are_validated():
    images = _images(2)
    draw = policies.sample_ops(
        jax.random.key(0), 2, num_layers=1, num_ops=14, num_magnitude_bins=31, magnitude=9
    )
    with pytest.raises(ValueError, match="num_drawn_ops"):
        policies.apply_ops(images, draw, num_drawn_ops=15)
    with pytest.raises(ValueError, match="strategy"):
        policies.apply_ops(images, draw, strategy="switch")


def test_integer_translations_take_the_shift_branch_exactly():
    # TrivialAugment-Wide translations reach 32 px, past the 17 x 23 image: every offset from
    # fully inside to fully outside, both signs, per-channel fill; nearest uses a shifted copy.
    b = 62
    images = _images(b, 17, 23, seed=11)
    names = policies.TRIVIAL_AUGMENT_OPS
    op = jnp.where(jnp.arange(b) % 2 == 0, names.index("TranslateX"), names.index("TranslateY"))
    draw = policies.OpDraw(
        op[None].astype(jnp.int32),
        (jnp.arange(b, dtype=jnp.int32) // 2)[None],
        jnp.where(jnp.arange(b) % 4 < 2, 1, -1)[None].astype(jnp.int32),
    )
    kw = dict(space="trivial_augment_wide", interpolation="nearest", fill=(10, 20, 30))
    t = tables._tables("trivial_augment_wide", names, 31, 17, 23, None)
    p = tables._gather(t, draw.op[0], draw.magnitude_bin[0], (draw.sign[0] < 0).astype(jnp.int32))
    is_shift, _, _ = jax.vmap(lambda c: gating._integer_shift(c, 17, 23))(p.coeffs)
    assert bool(jnp.all(is_shift))
    ref = _run(images, draw, 0.0, strategy="vmap", **kw)
    np.testing.assert_array_equal(_run(images, draw, 0.0, strategy="per_image", **kw), ref)
    assert np.any(ref == 30) and not np.array_equal(ref, np.asarray(images))
