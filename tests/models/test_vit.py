"""ViT and patch/position embeddings: shapes, resizing, pooling, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from augpar.models import ViT, patchify, resize_position_embedding
from augpar.models.embed import sincos_position_embedding


def small_vit(**overrides) -> ViT:
    """A tiny ViT (16 px, 8 px patches, dim 8, 2 heads) with keyword overrides."""
    kw = dict(image_size=16, patch_size=8, num_classes=2, dim=8, depth=1, num_heads=2)
    return ViT(**(kw | overrides), rngs=nnx.Rngs(0))


def test_patchify_round_trip():
    x = jnp.arange(2 * 8 * 12 * 3, dtype=jnp.float32).reshape(2, 8, 12, 3)
    p = patchify(x, 4)
    assert p.shape == (2, 2, 3, 48)
    np.testing.assert_array_equal(p[0, 1, 2].reshape(4, 4, 3), x[0, 4:8, 8:12])
    with pytest.raises(ValueError, match="Image size 8x12 is not a multiple of the patch size 5"):
        patchify(x, 5)


def test_resize_position_embedding_identity_and_shape():
    pos = jax.random.normal(jax.random.key(0), (4, 4, 8))
    assert resize_position_embedding(pos, (4, 4)) is pos
    big = resize_position_embedding(pos, (8, 6))
    assert big.shape == (8, 6, 8)
    # A constant embedding stays constant under bicubic resizing.
    const = jnp.ones((4, 4, 2))
    np.testing.assert_allclose(resize_position_embedding(const, (7, 9)), 1.0, rtol=1e-5)


def test_sincos_is_interpolated_on_finer_grids():
    coarse = sincos_position_embedding((4, 4), 16)
    fine = sincos_position_embedding((8, 8), 16, train_grid=(4, 4))
    assert fine.shape == (8, 8, 16)
    # Fine tokens 2i, 2i+1 sit at i -/+ 0.25 in coarse units: the lowest frequency (1 rad/token)
    # of fine row 2i+1 equals sin(i + 0.25).
    np.testing.assert_allclose(fine[5, 0, 0], np.sin(2.25), rtol=1e-5)
    np.testing.assert_allclose(coarse[2, 0, 0], np.sin(2.0), rtol=1e-5)
    # On the training grid the row part depends only on the row, the column part on the column.
    np.testing.assert_allclose(coarse[:, 0, :8], coarse[:, 3, :8])
    np.testing.assert_allclose(coarse[0, :, 8:], coarse[3, :, 8:])
    # Positions are centred: the fine grid spans [-0.25, 3.25] in coarse units.
    np.testing.assert_allclose(fine[0, 0, 0], np.sin(-0.25), rtol=1e-5)
    with pytest.raises(ValueError, match="divisible by 4; got 6"):
        sincos_position_embedding((2, 2), 6)


@pytest.mark.parametrize("pos, pool", [("learned", "cls"), ("sincos2d", "gap"), ("none", "cls")])
def test_vit_shapes_on_train_and_double_resolution(pos, pool):
    model = small_vit(image_size=32, num_classes=5, dim=16, depth=2, position_embedding=pos,
                      pool=pool)  # fmt: skip
    assert model(jnp.zeros((3, 32, 32, 3))).shape == (3, 5)
    assert model(jnp.zeros((3, 64, 48, 3))).shape == (3, 5)


def test_vit_jit_does_not_retrace_across_calls():
    model = small_vit()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(state, x):
        return nnx.merge(graphdef, state)(x)

    graphdef, state = nnx.split(model)
    for seed in range(3):
        apply(state, jax.random.normal(jax.random.key(seed), (2, 16, 16, 3)))


def test_vit_errors():
    with pytest.raises(ValueError, match="dim 10 is not divisible by num_heads 4"):
        small_vit(dim=10, num_heads=4)
    with pytest.raises(ValueError, match="pool 'max'"):
        small_vit(pool="max")
    with pytest.raises(ValueError, match="position_embedding 'rope'"):
        small_vit(position_embedding="rope")
