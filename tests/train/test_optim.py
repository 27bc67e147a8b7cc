"""adamw_cosine: warm-up then cosine rates, decay on kernels only, bad arguments."""

import jax.numpy as jnp
import numpy as np
import pytest

from augpar.train import adamw_cosine


def _lr_after(tx, params, steps):
    """Effective rate at each step from a unit gradient with Adam's first update (|u| = 1)."""
    rates, state = [], tx.init(params)
    for _ in range(steps):
        grads = {"bias": jnp.ones(1)}  # no decay on biases: the update is -lr * sign(g)
        updates, state = tx.update(grads, state, params)
        rates.append(-float(updates["bias"][0]))
    return np.array(rates)


def test_schedule_warms_up_then_decays_to_the_final_fraction():
    params = {"bias": jnp.zeros(1)}
    tx = adamw_cosine(1.0, 20, warmup_fraction=0.2, final_lr_fraction=0.1, weight_decay=0.5,
                      clip=1e9)  # fmt: skip
    rates = _lr_after(tx, params, 21)
    np.testing.assert_allclose(rates[:5], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-5)
    assert np.all(np.diff(rates[4:]) <= 1e-6)
    np.testing.assert_allclose(rates[20], 0.1, atol=1e-5)


def test_weight_decay_only_on_kernels():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    tx = adamw_cosine(0.1, 10, warmup_fraction=0.0, final_lr_fraction=1.0, weight_decay=0.5,
                      clip=1.0)  # fmt: skip
    zeros = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}  # g = 0: only decay moves
    _, state = tx.update(zeros, tx.init(params), params)  # step 0 has rate 0 (warm-up)
    updates, _ = tx.update(zeros, state, params)
    assert float(jnp.abs(updates["bias"]).max()) == 0.0
    assert float(jnp.abs(updates["kernel"]).min()) > 0.0


@pytest.mark.parametrize("kw", [dict(lr=0.0), dict(num_steps=0), dict(warmup_fraction=1.0),
                                dict(clip=0.0)])  # fmt: skip
def test_bad_arguments_name_the_allowed_values(kw):
    args = dict(lr=1e-3, num_steps=10, warmup_fraction=0.1, final_lr_fraction=0.1,
                weight_decay=0.0, clip=1.0) | kw  # fmt: skip
    lr, n = args.pop("lr"), args.pop("num_steps")
    with pytest.raises(ValueError, match="allowed"):
        adamw_cosine(lr, n, **args)


def test_weight_decay_mask_follows_parameter_names_on_a_vit():
    """Decay on ``kernel`` parameters only, as the pLSTM paper's code: not the position
    embedding, class token, per-head attention biases (rank 2) or norm scales."""
    from flax import nnx

    from augpar.models import ViT
    from augpar.train import weight_decay_mask

    model = ViT(image_size=16, patch_size=8, num_classes=2, dim=8, depth=1, num_heads=2,
                rngs=nnx.Rngs(0))  # fmt: skip
    mask = nnx.to_pure_dict(weight_decay_mask(nnx.state(model, nnx.Param)))
    assert mask["embed"]["proj"]["kernel"] and mask["head"]["kernel"]
    assert mask["blocks"][0]["attn"]["query"]["kernel"]
    assert not mask["embed"]["pos"] and not mask["cls"]
    assert not mask["blocks"][0]["attn"]["query"]["bias"]  # shape (heads, head_dim)
    assert not mask["blocks"][0]["norm1"]["scale"] and not mask["head"]["bias"]
