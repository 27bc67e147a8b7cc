"""Gradient proxies of the examples and their pairwise similarities (coreset step 1-2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Shaped

_SIMILARITIES = ("exp", "craig")


def gradient_proxy(
    logits: Float[Array, "n k"],
    labels: Int[Array, " n"],
    *,
    features: Float[Array, "n d"] | None = None,
) -> Float[Array, "n e"]:
    """Per-example gradient proxy ``softmax(logits) − onehot(labels)``, optionally ``⊗ features``.

    Args:
      logits: ``[N, K]``.
      labels: ``int[N]`` class ids.
      features: optional ``[N, D]`` penultimate embeddings; then the proxy is the flattened
        last-layer weight gradient ``(p − y) ⊗ h``.

    Returns:
      float32 ``[N, K]`` or ``[N, K·D]``.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K]; got shape {tuple(logits.shape)}.")
    if labels.shape != logits.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be int [N={logits.shape[0]}]; got shape {tuple(labels.shape)} "
            f"dtype {labels.dtype}."
        )
    n, k = logits.shape
    g = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) - jax.nn.one_hot(labels, k)
    if features is None:
        return g
    features = jnp.asarray(features)
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"features must be [N={n}, D]; got shape {tuple(features.shape)}.")
    outer = g[:, :, None] * features.astype(jnp.float32)[:, None, :]
    return outer.reshape(n, k * features.shape[1])


def dataset_gradient_proxies(
    logits_fn: Callable[[jax.Array], Any],
    images: Shaped[Array, "n ..."],
    labels: Int[Array, " n"],
    *,
    batch_size: int,
    use_features: bool = False,
) -> np.ndarray:
    """Gradient proxies of a whole (host) dataset, in fixed-size jitted batches.

    Args:
      logits_fn: ``logits_fn(images[b, ...]) -> logits[b, K]``, or ``(logits, features[b, D])``
        when ``use_features``; a closure over the current parameters, in eval mode, applied to
        un-augmented inputs (as the reference does).
      images: ``[N, ...]`` numpy or JAX array.
      labels: ``int[N]``.
      batch_size: static batch size; the last batch is zero-padded and the padding dropped.
      use_features: use ``(p − y) ⊗ h`` (last-layer gradient) instead of ``p − y``.

    Returns:
      numpy float32 ``[N, K]`` or ``[N, K·D]``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
    n = int(np.shape(images)[0])
    if np.shape(labels) != (n,):
        raise ValueError(f"labels must have shape ({n},); got {np.shape(labels)}.")

    @jax.jit
    def proxies(x, y):
        out = logits_fn(x)
        if use_features:
            logits, features = out
            return gradient_proxy(logits, y, features=features)
        return gradient_proxy(out, y)

    chunks = []
    for start in range(0, n, batch_size):
        x = np.asarray(images[start : start + batch_size])
        y = np.asarray(labels[start : start + batch_size])
        pad = batch_size - x.shape[0]
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros((pad,), y.dtype)])
        chunks.append(np.asarray(proxies(x, y))[: batch_size - pad])
    return np.concatenate(chunks, axis=0)


def pairwise_similarity(
    proxies: Float[Array, "n e"], *, kind: str = "exp", scale: float | None = None
) -> Float[Array, "n n"]:
    """Non-negative similarities of proxies from Euclidean distances ``D_ij = ‖g_i − g_j‖``.

    Args:
      proxies: ``[n, e]`` (numpy or JAX).
      kind: ``"exp"`` – ``exp(−D/scale)`` with ``scale`` defaulting to ``e`` (submodlib's
        "euclidean" kernel, used by the reference code); ``"craig"`` – ``max(D) − D``
        (CRAIG's form).
      scale: distance scale for ``"exp"`` (> 0).

    Returns:
      ``[n, n]`` float32 (JAX) with ``s_ij ≥ 0`` and the largest value of each row on the
      diagonal.
    """
    if kind not in _SIMILARITIES:
        raise ValueError(f"kind must be one of {_SIMILARITIES}; got {kind!r}.")
    x = jnp.asarray(proxies, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"proxies must be [n, e]; got shape {tuple(x.shape)}.")
    sq = jnp.sum(x * x, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    dist = jnp.sqrt(jnp.maximum(d2, 0.0))
    dist = dist * (1.0 - jnp.eye(x.shape[0], dtype=dist.dtype))  # exact zeros on the diagonal
    if kind == "craig":
        return jnp.max(dist) - dist
    if scale is None:
        scale = float(x.shape[1])
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale!r}.")
    return jnp.exp(-dist / scale)


def _similarity_np(proxies: np.ndarray, kind: str, scale: float | None) -> np.ndarray:
    """Host (numpy, float64) twin of :func:`pairwise_similarity` used by :func:`select_coreset`."""
    x = np.asarray(proxies, np.float64)
    sq = np.sum(x * x, axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(dist, 0.0)
    if kind == "craig":
        return dist.max() - dist
    scale = float(x.shape[1]) if scale is None else scale
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale!r}.")
    return np.exp(-dist / scale)
