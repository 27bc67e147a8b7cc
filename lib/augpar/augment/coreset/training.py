"""Training on the full data plus the weighted, augmented coreset: loss and step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PyTree, Shaped

_REDUCTIONS = ("concat", "sum")


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
