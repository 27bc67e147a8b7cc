"""Multi-head attention: one pure function every augpar model calls, and the NNX layer around it.

Every attention in augpar (the ViT, text towers, language models) goes through
:func:`dot_product_attention`, so a fused kernel or a sharding rule added here reaches all of
them. Layouts follow ``jax.nn.dot_product_attention``: ``[batch, length, heads, head_dim]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

IMPLEMENTATIONS = ("xla",)
_DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


def attention_mask(
    q_len: int,
    kv_len: int,
    *,
    causal: bool = False,
    q_segment_ids: Int[Array, "b l"] | None = None,
    kv_segment_ids: Int[Array, "b s"] | None = None,
) -> jax.Array | None:
    """Boolean mask ``[b or 1, 1, l, s]`` (True = attend) from causality and segment ids.

    Causal masking lets query ``i`` see keys ``j <= i`` (top-left aligned, as
    ``jax.nn.dot_product_attention(is_causal=True)``). Tokens attend only
    within their own segment when segment ids are given (packed sequences). Returns ``None`` when
    nothing is masked.
    """
    mask = None
    if causal:
        mask = (jnp.arange(kv_len)[None, :] <= jnp.arange(q_len)[:, None])[None, None]
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("attention_mask: give both q_segment_ids and kv_segment_ids, or neither")
    if q_segment_ids is not None:
        same = q_segment_ids[:, None, :, None] == kv_segment_ids[:, None, None, :]
        mask = same if mask is None else mask & same
    return mask


def dot_product_attention(
    q: Float[Array, "b l h d"],
    k: Float[Array, "b s h d"],
    v: Float[Array, "b s h dv"],
    *,
    causal: bool = False,
    segment_ids: Int[Array, "b l"] | None = None,
    kv_segment_ids: Int[Array, "b s"] | None = None,
    implementation: str = "xla",
) -> Float[Array, "b l h dv"]:
    """Scaled dot-product attention, softmax in float32, output in ``q.dtype``.

    Args:
      q, k, v: queries ``[b, l, h, d]``, keys ``[b, s, h, d]``, values ``[b, s, h, dv]``.
      causal: mask future keys (see :func:`attention_mask` for ``l != s``).
      segment_ids: int ``[b, l]`` segment of each query (packed sequences); keys use
        ``kv_segment_ids`` (default: the same ids, which needs ``l == s``).
      implementation: ``"xla"`` (plain einsum + softmax).

    Returns:
      ``[b, l, h, dv]``. A query whose keys are all masked gets zeros.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"dot_product_attention: implementation={implementation!r}; allowed: {IMPLEMENTATIONS}"
        )
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"dot_product_attention: q, k, v must be [b, len, heads, dim]; got shapes "
            f"{q.shape}, {k.shape}, {v.shape}"
        )
    b, q_len, h, d = q.shape
    if k.shape[:1] + k.shape[2:] != (b, h, d) or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"dot_product_attention: shapes q {q.shape}, k {k.shape}, v {v.shape} do not match "
            "(need k [b, s, h, d] and v [b, s, h, dv] with q's b, h, d)"
        )
    if segment_ids is not None and kv_segment_ids is None:
        if k.shape[1] != q_len:
            raise ValueError(
                f"dot_product_attention: segment_ids alone need equal lengths; got l={q_len}, "
                f"s={k.shape[1]} (pass kv_segment_ids)"
            )
        kv_segment_ids = segment_ids
    mask = attention_mask(
        q_len, k.shape[1], causal=causal, q_segment_ids=segment_ids, kv_segment_ids=kv_segment_ids
    )
    scale = 1.0 / float(d) ** 0.5
    logits = jnp.einsum("blhd,bshd->bhls", q, k, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
        # Rows with no visible key: softmax of all -inf is NaN; give them zero weights instead.
        any_visible = jnp.any(mask, axis=-1, keepdims=True)
        logits = jnp.where(any_visible, logits, 0.0)
    weights = jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        weights = jnp.where(any_visible, weights, 0.0)
    out = jnp.einsum("bhls,bshd->blhd", weights.astype(v.dtype), v)
    return out.astype(q.dtype)


class SelfAttention(nnx.Module):
    """Multi-head self-attention: per-head q/k/v projections ``[dim, heads, head_dim]``,
    :func:`dot_product_attention`, output projection ``[heads, head_dim, dim]``.

    Parameter names (``query``, ``key``, ``value``, ``out``; ``kernel``/``bias``) and shapes are
    those of ``nnx.MultiHeadAttention``, with the heads axis explicit so that tensor parallelism
    can split it.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        head_dim: int | None = None,
        use_bias: bool = True,
        kernel_init: nnx.Initializer = _DEFAULT_KERNEL_INIT,
        implementation: str = "xla",
        rngs: nnx.Rngs,
    ):
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"SelfAttention: dim {dim} is not divisible by {num_heads} heads")
            head_dim = dim // num_heads
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"SelfAttention: implementation={implementation!r}; allowed: {IMPLEMENTATIONS}"
            )
        self.num_heads, self.head_dim, self.implementation = num_heads, head_dim, implementation

        def proj():
            return nnx.LinearGeneral(
                dim, (num_heads, head_dim), use_bias=use_bias, kernel_init=kernel_init, rngs=rngs
            )

        self.query, self.key, self.value = proj(), proj(), proj()
        self.out = nnx.LinearGeneral(
            (num_heads, head_dim), dim, axis=(-2, -1), use_bias=use_bias,
            kernel_init=kernel_init, rngs=rngs,
        )  # fmt: skip

    def __call__(
        self,
        x: Float[Array, "b l d"],
        *,
        causal: bool = False,
        segment_ids: Int[Array, "b l"] | None = None,
    ) -> Float[Array, "b l d"]:
        """``[b, l, dim] -> [b, l, dim]``."""
        q, k, v = self.query(x), self.key(x), self.value(x)
        o = dot_product_attention(
            q, k, v, causal=causal, segment_ids=segment_ids, implementation=self.implementation
        )
        return self.out(o)
