"""Classifier-head initialisation: with SmallInit (the default, the pLSTM paper's) the body gets
a gradient at step 0; with a zero head it gets exactly none (why arrow pointing stayed at ln 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from augpar.models import PLSTMVisionModel, ViT
from augpar.models.embed import head_init_fn


def _vit(head_init):
    return ViT(image_size=16, patch_size=8, num_classes=2, dim=8, depth=1, num_heads=2,
               head_init=head_init, rngs=nnx.Rngs(0))  # fmt: skip


def _plstm(head_init):
    return PLSTMVisionModel(image_size=16, patch_size=8, num_classes=2, dim=8, depth=1,
                            num_heads=2, method="masked", head_init=head_init,
                            rngs=nnx.Rngs(0))  # fmt: skip


def _body_gradient_norm(model) -> float:
    images = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
    labels = jnp.array([0, 1, 1, 0])

    def loss(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(images), labels).mean()

    grads = nnx.grad(loss)(model)
    return float(jnp.abs(grads["embed"]["proj"]["kernel"][...]).max())


@pytest.mark.parametrize("build", [_vit, _plstm], ids=["vit", "plstm"])
def test_small_head_sends_gradient_into_the_body_at_step_0(build):
    assert _body_gradient_norm(build("small")) > 1e-4
    assert _body_gradient_norm(build("zero")) == 0.0


def test_small_init_std_and_errors():
    kernel = head_init_fn("small", 500)(jax.random.key(0), (500, 40))
    np.testing.assert_allclose(float(kernel.std()), np.sqrt(2 / (5 * 500)), rtol=0.05)
    with pytest.raises(ValueError, match=r"head_init='ones'; allowed: \('small', 'zero'\)"):
        _vit("ones")
