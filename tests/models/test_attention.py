"""augpar.models.attention against jax.nn.dot_product_attention and nnx.MultiHeadAttention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from augpar.models.attention import SelfAttention, attention_mask, dot_product_attention


def _qkv(b=2, q_len=7, s=7, h=3, d=4, seed=0):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(kq, (b, q_len, h, d)),
        jax.random.normal(kk, (b, s, h, d)),
        jax.random.normal(kv, (b, s, h, d)),
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", [(7, 7), (3, 7)])
def test_matches_jax_nn(causal, lengths):
    q, k, v = _qkv(q_len=lengths[0], s=lengths[1])
    ours = dot_product_attention(q, k, v, causal=causal)
    ref = jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation="xla")
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_segment_ids_equal_explicit_mask_and_gradients():
    q, k, v = _qkv(q_len=6, s=6)
    seg = jnp.array([[0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 1, 1]])
    mask = seg[:, None, :, None] == seg[:, None, None, :]

    def ours(q, k, v):
        return jnp.sum(jnp.sin(dot_product_attention(q, k, v, segment_ids=seg, causal=True)))

    def ref(q, k, v):
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True)
        return jnp.sum(jnp.sin(out))

    np.testing.assert_allclose(ours(q, k, v), ref(q, k, v), rtol=1e-5)
    for g_ours, g_ref in zip(
        jax.grad(ours, (0, 1, 2))(q, k, v), jax.grad(ref, (0, 1, 2))(q, k, v), strict=True
    ):
        np.testing.assert_allclose(g_ours, g_ref, rtol=1e-4, atol=1e-6)


def test_fully_masked_query_gives_zeros_and_finite_gradient():
    q, k, v = _qkv(q_len=2, s=3)
    q_seg, kv_seg = jnp.array([[5, 1]] * 2), jnp.array([[1, 1, 2]] * 2)
    out = dot_product_attention(q, k, v, segment_ids=q_seg, kv_segment_ids=kv_seg)
    np.testing.assert_array_equal(out[:, 0], 0.0)
    assert float(jnp.abs(out[:, 1]).sum()) > 0
    grad = jax.grad(
        lambda q: dot_product_attention(q, k, v, segment_ids=q_seg, kv_segment_ids=kv_seg).sum()
    )(q)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_attention_mask_none_when_unmasked():
    assert attention_mask(4, 4) is None


def test_self_attention_equals_nnx_multihead_attention():
    ours = SelfAttention(12, 3, rngs=nnx.Rngs(0))
    ref = nnx.MultiHeadAttention(num_heads=3, in_features=12, decode=False, rngs=nnx.Rngs(1))
    nnx.update(ref, nnx.state(ours, nnx.Param))
    x = jax.random.normal(jax.random.key(2), (2, 5, 12))
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_errors_name_the_values():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="implementation='cuda'"):
        dot_product_attention(q, k, v, implementation="cuda")
    with pytest.raises(ValueError, match="do not match"):
        dot_product_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match=r"\[b, len, heads, dim\]"):
        dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        SelfAttention(12, 5, rngs=nnx.Rngs(0))
