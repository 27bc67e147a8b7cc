"""Data-efficient augmentation: weighted coresets whose augmentations stand in for the full set.

Reference: Liu & Mirzasoleiman, "Data-Efficient Augmentation for Training Neural Networks",
NeurIPS 2022; reference code ``tianyu139/data-efficient-augmentation`` (CRAIG-style selection).

Recipe (every ``R`` epochs):

1. :func:`gradient_proxy` – per example ``g_i = softmax(z_i) − onehot(y_i)`` (∂CE/∂logits,
   ``[N, K]``), optionally ``⊗ h_i`` with the penultimate features (the last-layer weight
   gradient, ``[N, K·D]``). Computed on un-augmented inputs with the model in eval mode.
2. Per class ``c``: similarities ``s_ij`` of the proxies (:func:`pairwise_similarity`), then
   greedy maximisation of the facility-location function ``F(S) = Σ_{i∈V_c} max_{j∈S} s_ij``
   (:func:`facility_location_lazy_greedy` on the host, :func:`facility_location_greedy` as a
   jit-able dense version for an accelerator).
3. Weights: ``γ_j`` = number of class members whose most similar selected element is ``j``
   (:func:`cluster_sizes`; per class they sum to the class size), then normalised to mean 1
   over the whole coreset (``Coreset.weights``), as the reference code does.
4. Training uses the full data plus the strongly augmented coreset with weights
   (:func:`coreset_loss`, :func:`make_coreset_step`).

Host vs device: selection (steps 2–3) runs once every ``R`` epochs on per-class matrices of size
``n_c × n_c``; :func:`select_coreset` does it with numpy on the host (float64, lazy greedy with a
binary heap), which costs ``O(n_c²)`` memory per class. Proxies and the train step are JAX.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree, Shaped

__all__ = [
    "Coreset",
    "CoresetStepOutput",
    "class_budgets",
    "cluster_sizes",
    "coreset_loss",
    "dataset_gradient_proxies",
    "facility_location_greedy",
    "facility_location_lazy_greedy",
    "facility_location_value",
    "gradient_proxy",
    "make_coreset_step",
    "maybe_reselect",
    "pairwise_similarity",
    "select_coreset",
    "should_reselect",
]

_SIMILARITIES = ("exp", "craig")
_BUDGETS = ("proportional", "equal")
_REDUCTIONS = ("concat", "sum")


# --------------------------------------------------------------------------------------------
# Gradient proxies and similarities
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Facility location
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Coreset selection
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Training: full data + weighted augmented coreset
# --------------------------------------------------------------------------------------------


def coreset_loss(
    clean_losses: Float[Array, " b"],
    aug_losses: Float[Array, " m"],
    aug_weights: Float[Array, " m"],
    *,
    aug_mask: Bool[Array, " m"] | None = None,
    reduction: str = "concat",
    axis_name: str | None = None,
) -> Float[Array, ""]:
    """Combine clean full-data losses with weighted losses of augmented coreset examples.

    ``"concat"`` (reference code: one weighted mean over the concatenated batch, clean weight 1):
    ``(Σ_b ℓ_b + Σ_m w_m·ℓ'_m) / (B + M_valid)``.
    ``"sum"``: ``mean_b ℓ_b + Σ_m w_m·ℓ'_m / M_valid``.

    Args:
      clean_losses: ``[B]`` per-example losses on the (un-augmented) full-data batch.
      aug_losses: ``[M]`` per-example losses on augmented coreset examples.
      aug_weights: ``[M]`` coreset weights (``Coreset.weights`` gathered for the batch).
      aug_mask: optional ``bool[M]``, False for padding rows (static batch shapes).
      reduction: ``"concat"`` or ``"sum"``.
      axis_name: data-parallel axis inside ``jax.shard_map``: the counts in the denominators
        are ``psum``-ed, and the result is this shard's *share* of the global loss (``psum``
        it over the axis for the value). Its gradient, summed over the axis as ``shard_map``
        does for replicated parameters, is the gradient of the global-batch loss.

    Returns:
      scalar (the loss, or with ``axis_name`` this shard's share of it).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}.")
    m = jnp.shape(aug_losses)
    if jnp.ndim(clean_losses) != 1 or len(m) != 1 or jnp.shape(aug_weights) != m:
        raise ValueError(
            "expected clean_losses [B], aug_losses [M] and aug_weights [M]; got shapes "
            f"{jnp.shape(clean_losses)}, {m}, {jnp.shape(aug_weights)}."
        )
    if aug_mask is not None and jnp.shape(aug_mask) != m:
        raise ValueError(f"aug_mask must have shape {m}; got {jnp.shape(aug_mask)}.")
    valid = jnp.ones(m, jnp.float32) if aug_mask is None else jnp.asarray(aug_mask, jnp.float32)
    weighted = jnp.sum(aug_weights * aug_losses * valid)
    n_valid = jnp.sum(valid)
    n_clean = jnp.float32(clean_losses.shape[0])
    if axis_name is not None:
        n_clean, n_valid = jax.lax.psum((n_clean, n_valid), axis_name)
    if reduction == "concat":
        return (jnp.sum(clean_losses) + weighted) / (n_clean + n_valid)
    return jnp.sum(clean_losses) / n_clean + weighted / jnp.maximum(n_valid, 1.0)


class CoresetStepOutput(NamedTuple):
    """Output of a step built by :func:`make_coreset_step`.

    Attributes:
      loss: scalar combined loss (global over the axis when built with ``axis_name``).
      grads: gradient of ``loss`` w.r.t. ``params``.
      aux: auxiliary output of ``per_example_loss`` (``None`` unless ``has_aux``).
      metrics: ``loss, clean_loss`` (mean) and ``aug_loss`` (weighted mean over valid rows).
    """

    loss: jax.Array
    grads: Any
    aux: Any
    metrics: dict[str, jax.Array]


def make_coreset_step(
    per_example_loss: Callable[..., Any],
    *,
    augment_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    reduction: str = "concat",
    has_aux: bool = False,
    axis_name: str | None = None,
) -> Callable[..., CoresetStepOutput]:
    """Build the pure core of a "full data + augmented weighted coreset" step.

    ``per_example_loss(params, images[N, ...], labels[N, ...]) -> float[N]`` (or ``(float[N],
    aux)`` with ``has_aux``). The returned function

        step(key, params, clean_images[B, ...], clean_labels[B], subset_images[M, ...],
             subset_labels[M], subset_weights[M], subset_mask=None) -> CoresetStepOutput

    augments the coreset batch with ``augment_fn(key, subset_images)`` (if given; ``key`` is
    otherwise unused and may be None), runs ONE forward pass over the concatenation of clean
    and augmented examples and differentiates :func:`coreset_loss`. Wrap it with an optimiser::

        core = make_coreset_step(loss_fn, augment_fn=partial(policies.rand_augment, ...))
        out = core(key, params, x, y, x_sub, y_sub, coreset.weights[batch_idx])
        updates, opt_state = tx.update(out.grads, opt_state, params)

    Args:
      per_example_loss: see above.
      augment_fn: ``augment_fn(key, images) -> images`` (same shape and dtype), or None when
        the subset batch is already augmented.
      reduction: see :func:`coreset_loss`.
      has_aux: ``per_example_loss`` returns ``(losses, aux)``.
      axis_name: data-parallel axis inside ``jax.shard_map`` (see :func:`coreset_loss`); the
        returned loss and metrics are then global and the gradients of replicated parameters
        are those of the global-batch loss.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}.")

    def step(
        key: jax.Array | None,
        params: PyTree,
        clean_images: Shaped[Array, "b ..."],
        clean_labels: Shaped[Array, "b ..."],
        subset_images: Shaped[Array, "m ..."],
        subset_labels: Shaped[Array, "m ..."],
        subset_weights: Float[Array, " m"],
        subset_mask: Bool[Array, " m"] | None = None,
    ) -> CoresetStepOutput:
        if augment_fn is not None:
            if key is None:
                raise ValueError("a PRNG key is needed when augment_fn is given; got None.")
            augmented = augment_fn(key, subset_images)
            if augmented.shape != subset_images.shape or augmented.dtype != subset_images.dtype:
                raise ValueError(
                    "augment_fn must keep shape and dtype; got "
                    f"{augmented.shape} {augmented.dtype} from {subset_images.shape} "
                    f"{subset_images.dtype}."
                )
        else:
            augmented = subset_images
        if augmented.shape[1:] != clean_images.shape[1:] or augmented.dtype != clean_images.dtype:
            raise ValueError(
                "clean and subset images must share per-example shape and dtype; got "
                f"{clean_images.shape} {clean_images.dtype} and {augmented.shape} "
                f"{augmented.dtype}."
            )
        b = clean_images.shape[0]
        both_x = jnp.concatenate([clean_images, jax.lax.stop_gradient(augmented)], axis=0)
        both_y = jnp.concatenate([clean_labels, subset_labels], axis=0)
        weights = jnp.asarray(subset_weights, jnp.float32)

        def objective(p):
            out = per_example_loss(p, both_x, both_y)
            losses, aux = out if has_aux else (out, None)
            if losses.shape != (both_x.shape[0],):
                raise ValueError(
                    f"per_example_loss must return shape ({both_x.shape[0]},); got {losses.shape}."
                )
            clean, aug = losses[:b], losses[b:]
            loss = coreset_loss(
                clean,
                aug,
                weights,
                aug_mask=subset_mask,
                reduction=reduction,
                axis_name=axis_name,
            )
            valid = (
                jnp.ones_like(weights) if subset_mask is None else subset_mask.astype(jnp.float32)
            )
            sums = (jnp.sum(clean), jnp.float32(b), jnp.sum(weights * aug * valid))
            sums = sums + (jnp.sum(weights * valid),)
            return loss, (sums, aux)

        (loss, (sums, aux)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        if axis_name is not None:
            loss, sums = jax.lax.psum((loss, sums), axis_name)
        clean_mean = sums[0] / sums[1]
        aug_mean = sums[2] / jnp.maximum(sums[3], 1e-12)
        metrics = {"loss": loss, "clean_loss": clean_mean, "aug_loss": aug_mean}
        return CoresetStepOutput(loss, grads, aux, metrics)

    return step
