"""Facility-location maximisation: lazy greedy on the host, dense greedy jit-able (step 2-3)."""

from __future__ import annotations

import functools
import heapq

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


def _check_similarity_and_k(similarity, k, *, allow_zero: bool):
    shape = tuple(np.shape(similarity))
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"similarity must be a square [n, n] matrix; got shape {shape}.")
    low = 0 if allow_zero else 1
    if not isinstance(k, int | np.integer) or not low <= k <= shape[0]:
        raise ValueError(f"k must be an int in [{low}, n={shape[0]}]; got {k!r}.")


def facility_location_value(
    similarity: Float[Array, "n n"], selected: Int[Array, " k"]
) -> Float[Array, ""]:
    """``F(S) = Σ_i max_{j∈S} s_ij`` (0 for an empty ``S``)."""
    s = jnp.asarray(similarity)
    sel = jnp.asarray(selected, jnp.int32)
    if sel.shape[0] == 0:
        return jnp.zeros((), s.dtype)
    return jnp.sum(jnp.max(s[:, sel], axis=1))


def facility_location_greedy(
    similarity: Float[Array, "n n"], k: int
) -> tuple[Int[Array, " k"], Float[Array, " k"]]:
    """Plain greedy facility location, dense and jit-able (``k`` static): ``O(k·n²)`` work.

    At each step it adds ``argmax_j Σ_i max(s_ij − best_i, 0)`` (lowest index on ties), where
    ``best_i = max_{j∈S} s_ij`` (0 for the empty set, so ``s`` must be ≥ 0).

    Args:
      similarity: ``[n, n]`` non-negative similarities.
      k: number of elements to select, ``1 ≤ k ≤ n``.

    Returns:
      ``(selected int32[k] in selection order, gains float[k] marginal gains)``.
    """
    _check_similarity_and_k(similarity, k, allow_zero=False)
    return _dense_greedy(jnp.asarray(similarity), int(k))


@functools.partial(jax.jit, static_argnames="k")
def _dense_greedy(s: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    n = s.shape[0]

    def body(t, carry):
        best, chosen, selected, gains = carry
        gain = jnp.sum(jnp.maximum(s - best[:, None], 0.0), axis=0)
        gain = jnp.where(chosen, -jnp.inf, gain)
        j = jnp.argmax(gain).astype(jnp.int32)
        best = jnp.maximum(best, s[:, j])
        return best, chosen.at[j].set(True), selected.at[t].set(j), gains.at[t].set(gain[j])

    init = (
        jnp.zeros((n,), s.dtype),
        jnp.zeros((n,), bool),
        jnp.zeros((k,), jnp.int32),
        jnp.zeros((k,), s.dtype),
    )
    _, _, selected, gains = jax.lax.fori_loop(0, k, body, init)
    return selected, gains


def facility_location_lazy_greedy(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Lazy greedy (Minoux) facility location on the host with a binary heap.

    Same result as :func:`facility_location_greedy` (same tie rule: largest gain, then lowest
    index): by submodularity a stale gain is an upper bound, so the popped element whose
    refreshed gain still beats the heap top is the greedy choice. Usually only a few gains
    are recomputed per step, so it costs far less than ``k·n²``.

    Args:
      similarity: ``[n, n]`` non-negative similarities (numpy or JAX; computed in float64).
      k: number of elements, ``0 ≤ k ≤ n``.

    Returns:
      ``(selected int64[k] in selection order, gains float64[k])``.
    """
    _check_similarity_and_k(similarity, k, allow_zero=True)
    s = np.asarray(similarity, np.float64)
    if s.size and s.min() < 0:
        raise ValueError(f"similarity must be >= 0 for facility location; min is {s.min()}.")
    n = s.shape[0]
    best = np.zeros(n)
    heap = [(-float(g), j) for j, g in enumerate(s.sum(axis=0))]
    heapq.heapify(heap)
    selected, gains = [], []
    while len(selected) < k:
        _, j = heapq.heappop(heap)
        gain = float(np.maximum(s[:, j] - best, 0.0).sum())
        if not heap or (-gain, j) <= heap[0]:
            selected.append(j)
            gains.append(gain)
            best = np.maximum(best, s[:, j])
        else:
            heapq.heappush(heap, (-gain, j))
    return np.asarray(selected, np.int64), np.asarray(gains, np.float64)


def cluster_sizes(similarity: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """``γ_j = |{i : j = argmax_{l∈S} s_il}|`` for each selected ``j`` (first in ``selected`` on
    ties); a selected element always counts for itself, so every ``γ_j ≥ 1`` and
    ``Σ_j γ_j = n``.

    Args:
      similarity: ``[n, n]``.
      selected: ``int[k]`` distinct indices, ``k ≥ 1``.

    Returns:
      int64 ``[k]``.
    """
    s = np.asarray(similarity)
    sel = np.asarray(selected, np.int64)
    if sel.ndim != 1 or sel.size == 0 or len(np.unique(sel)) != sel.size:
        raise ValueError(f"selected must be distinct indices [k >= 1]; got {sel.tolist()}.")
    owner = np.argmax(s[:, sel], axis=1)
    owner[sel] = np.arange(sel.size)
    return np.bincount(owner, minlength=sel.size).astype(np.int64)
