"""Per-class budgets, weighted coreset selection and the reselection schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from augpar.augment.coreset.facility import (
    cluster_sizes,
    facility_location_greedy,
    facility_location_lazy_greedy,
)
from augpar.augment.coreset.proxies import _SIMILARITIES, _similarity_np

_BUDGETS = ("proportional", "equal")


def class_budgets(class_counts: np.ndarray, size: int, *, mode: str = "proportional") -> np.ndarray:
    """Split a total budget over classes; the result sums to ``min(size, Σ counts)``.

    Args:
      class_counts: ``int[C]`` examples per class.
      size: total coreset size ≥ 0.
      mode: ``"proportional"`` – ``size·n_c/N`` rounded by largest remainder;
        ``"equal"`` – ``size/C`` each, capped at ``n_c``, leftovers redistributed to classes
        with room (the reference's ``equal_num``).

    Returns:
      int64 ``[C]`` with ``0 ≤ budget_c ≤ n_c``.
    """
    counts = np.asarray(class_counts, np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"class_counts must be non-negative [C]; got {counts.tolist()}.")
    if mode not in _BUDGETS:
        raise ValueError(f"mode must be one of {_BUDGETS}; got {mode!r}.")
    if not isinstance(size, int | np.integer) or size < 0:
        raise ValueError(f"size must be an int >= 0; got {size!r}.")
    total = int(counts.sum())
    size = min(int(size), total)
    if size == 0:
        return np.zeros_like(counts)
    if mode == "proportional":
        exact = counts * (size / total)
        budget = np.floor(exact).astype(np.int64)
        order = np.argsort(-(exact - budget), kind="stable")
        budget[order[: size - int(budget.sum())]] += 1
        return np.minimum(budget, counts)
    budget = np.zeros_like(counts)
    remaining = size
    while remaining > 0:
        room = np.flatnonzero(budget < counts)
        share = remaining // len(room)
        if share == 0:
            budget[room[:remaining]] += 1
            break
        add = np.minimum(share, counts[room] - budget[room])
        budget[room] += add
        remaining -= int(add.sum())
    return budget


class Coreset(NamedTuple):
    """A weighted subset of the training set.

    Attributes:
      indices: int64 ``[k]`` dataset indices, grouped by class, in selection order.
      weights: float32 ``[k]`` cluster sizes normalised to mean 1 over the coreset.
      cluster_sizes: int64 ``[k]`` raw cluster sizes; within each class they sum to the class
        size.
      labels: int64 ``[k]`` class of each selected example.
    """

    indices: np.ndarray
    weights: np.ndarray
    cluster_sizes: np.ndarray
    labels: np.ndarray


def select_coreset(
    proxies: Float[Array, "n e"],
    labels: Int[Array, " n"],
    *,
    num_classes: int,
    size: int | None = None,
    fraction: float | None = None,
    budget: str = "proportional",
    similarity: str = "exp",
    scale: float | None = None,
    method: str = "lazy",
) -> Coreset:
    """Per-class greedy facility location on gradient proxies; host-side (numpy).

    Args:
      proxies: ``[N, e]`` from :func:`gradient_proxy` (numpy or JAX).
      labels: ``int[N]`` classes in ``0..num_classes-1``.
      num_classes: C.
      size: total coreset size; or
      fraction: coreset size as a fraction of N in (0, 1] (``round(fraction·N)``).
      budget: per-class split, see :func:`class_budgets`.
      similarity: ``"exp"`` (reference) or ``"craig"``, see :func:`pairwise_similarity`.
      scale: distance scale for ``"exp"`` (default: proxy dimension).
      method: ``"lazy"`` (host lazy greedy) or ``"dense"`` (jit-able dense greedy).

    Returns:
      :class:`Coreset`.
    """
    g = np.asarray(proxies, np.float32)
    y = np.asarray(labels)
    if g.ndim != 2:
        raise ValueError(f"proxies must be [N, e]; got shape {g.shape}.")
    if y.shape != (g.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be int [N={g.shape[0]}]; got {y.shape} {y.dtype}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}; got {y.min()}..{y.max()}.")
    if similarity not in _SIMILARITIES:
        raise ValueError(f"similarity must be one of {_SIMILARITIES}; got {similarity!r}.")
    if method not in ("lazy", "dense"):
        raise ValueError(f"method must be 'lazy' or 'dense'; got {method!r}.")
    if (size is None) == (fraction is None):
        raise ValueError(f"give exactly one of size or fraction; got {size=}, {fraction=}.")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}.")
        size = int(round(fraction * g.shape[0]))
    counts = np.bincount(y, minlength=num_classes)
    budgets = class_budgets(counts, size, mode=budget)
    parts = []
    for c in range(num_classes):
        if budgets[c] == 0:
            continue
        members = np.flatnonzero(y == c)
        sim = _similarity_np(g[members], similarity, scale)
        if method == "lazy":
            sel, _ = facility_location_lazy_greedy(sim, int(budgets[c]))
        else:
            sel, _ = facility_location_greedy(jnp.asarray(sim, jnp.float32), int(budgets[c]))
            sel = np.asarray(sel, np.int64)
        sizes = cluster_sizes(sim, sel)
        parts.append((members[sel], sizes, np.full(sel.size, c, np.int64)))
    if not parts:
        raise ValueError(f"the coreset is empty (size={size}, N={g.shape[0]}).")
    indices = np.concatenate([p[0] for p in parts])
    sizes = np.concatenate([p[1] for p in parts])
    weights = (sizes / sizes.mean()).astype(np.float32)
    return Coreset(indices, weights, sizes, np.concatenate([p[2] for p in parts]))


def should_reselect(epoch: int, *, every: int, start_epoch: int = 0) -> bool:
    """True on epochs ``start_epoch + t·every`` for t = 0, 1, 2, ...."""
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1; got {every!r}.")
    if epoch < start_epoch:
        return False
    return (epoch - start_epoch) % every == 0


def maybe_reselect(
    epoch: int,
    current: Coreset | None,
    select_fn: Callable[[], Coreset],
    *,
    every: int,
    start_epoch: int = 0,
) -> Coreset:
    """Return ``select_fn()`` on a reselection epoch or when there is no coreset yet, else
    ``current``. ``select_fn`` typically computes proxies with the current model and calls
    :func:`select_coreset` (the reference uses every=5 on Caltech256, 15 on ImageNet)."""
    if current is None or should_reselect(epoch, every=every, start_epoch=start_epoch):
        return select_fn()
    return current
