"""Invariance-constrained augmentation: the primal-dual objective, dual ascent and the step core
(see :mod:`augpar.augment.invariance`)."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Shaped

from augpar.augment.invariance.mcmc import mh_augment
from augpar.augment.invariance.space import TransformSpace


def primal_dual_objective(
    clean_losses: Float[Array, " b"],
    aug_losses: Float[Array, " m"],
    gamma: Float[Array, ""],
) -> Float[Array, ""]:
    """Primal Lagrangian ``mean(clean) + γ·mean(aug)``; γ is a constant (``stop_gradient``).

    The ``-γ·ε`` term of the Lagrangian does not depend on θ and is left out.

    Args:
      clean_losses: ``[B]`` per-example losses on clean inputs.
      aug_losses: ``[M]`` per-example losses on MH-augmented inputs.
      gamma: scalar dual variable ≥ 0.

    Returns:
      scalar loss to differentiate with respect to the parameters.
    """
    if jnp.ndim(clean_losses) != 1 or jnp.ndim(aug_losses) != 1 or jnp.ndim(gamma) != 0:
        raise ValueError(
            "expected clean_losses [B], aug_losses [M] and a scalar gamma; got shapes "
            f"{jnp.shape(clean_losses)}, {jnp.shape(aug_losses)}, {jnp.shape(gamma)}."
        )
    gamma = jax.lax.stop_gradient(jnp.asarray(gamma, jnp.float32))
    return jnp.mean(clean_losses) + gamma * jnp.mean(aug_losses)


def dual_update(
    gamma: Float[Array, ""],
    aug_loss: Float[Array, ""],
    *,
    epsilon: float,
    dual_lr: float,
) -> Float[Array, ""]:
    """Projected dual ascent ``γ ← max(0, γ + η·(ℓ_aug − ε))``.

    Args:
      gamma: scalar dual variable ≥ 0.
      aug_loss: scalar mean augmented loss of the batch.
      epsilon: constraint level ε ≥ 0 (the reference uses 0.2–1.3 for CE on CIFAR/SVHN).
      dual_lr: dual step size η > 0 (the reference uses 1e-4 per batch).

    Returns:
      the new scalar γ (float32, no gradient).
    """
    _check_dual_hparams(epsilon, dual_lr)
    if jnp.ndim(gamma) != 0 or jnp.ndim(aug_loss) != 0:
        raise ValueError(
            f"gamma and aug_loss must be scalars; got shapes {jnp.shape(gamma)}, "
            f"{jnp.shape(aug_loss)}."
        )
    gamma = jnp.asarray(gamma, jnp.float32)
    slack = jax.lax.stop_gradient(jnp.asarray(aug_loss, jnp.float32)) - epsilon
    return jnp.maximum(0.0, gamma + dual_lr * slack)


def _check_dual_hparams(epsilon, dual_lr):
    if not isinstance(epsilon, numbers.Real) or isinstance(epsilon, bool) or not epsilon >= 0:
        raise ValueError(f"epsilon must be a number >= 0; got {epsilon!r}.")
    if not isinstance(dual_lr, numbers.Real) or isinstance(dual_lr, bool) or not dual_lr > 0:
        raise ValueError(f"dual_lr must be a number > 0; got {dual_lr!r}.")


class PrimalDualOutput(NamedTuple):
    """Output of a step built by :func:`make_primal_dual_step`.

    Attributes:
      loss: scalar primal objective ``mean(clean) + γ·mean(aug)`` (with the old γ).
      grads: gradient of ``loss`` with respect to ``params`` (same pytree).
      gamma: the updated dual variable (scalar float32).
      aux: the auxiliary output of ``per_example_loss`` on the joint forward pass (``None``
        unless ``has_aux``), e.g. new BatchNorm statistics.
      metrics: dict of scalars ``loss, clean_loss, aug_loss, gamma, constraint_slack,
        accept_rate`` and ``op_counts`` (``int32[num_ops]``, final MH ops in this batch).
      augmented: ``[B, H, W, C]`` the MH images used for the augmented term.
    """

    loss: jax.Array
    grads: Any
    gamma: jax.Array
    aux: Any
    metrics: dict[str, jax.Array]
    augmented: jax.Array


def make_primal_dual_step(
    per_example_loss: Callable[..., Any],
    *,
    space: TransformSpace,
    epsilon: float,
    dual_lr: float,
    num_steps: int = 2,
    has_aux: bool = False,
    axis_name: str | None = None,
) -> Callable[..., PrimalDualOutput]:
    """Build the pure core of one primal–dual training step.

    ``per_example_loss(params, images[N, H, W, C], labels[N, ...]) -> float[N]`` (or
    ``(float[N], aux)`` when ``has_aux``) is the model's per-example loss, e.g. softmax
    cross-entropy of ``model_apply(params, images)``. The returned function

        step(key, params, images[B, H, W, C], labels[B, ...], gamma[]) -> PrimalDualOutput

    (1) samples ``x_mh`` with :func:`mh_augment` using ``per_example_loss`` at the current
    (stop-gradient) parameters, (2) runs ONE forward pass on ``concat([images, x_mh])`` and
    differentiates ``mean(clean) + γ·mean(aug)``, (3) updates γ with :func:`dual_update` from
    the mean augmented loss. It is pure and jit-able; wrap it with an optimiser::

        core = make_primal_dual_step(loss_fn, space=trivial_augment_space(), epsilon=0.6,
                                     dual_lr=1e-4)

        @jax.jit
        def train_step(params, opt_state, gamma, key, images, labels):
            out = core(key, params, images, labels, gamma)
            updates, opt_state = tx.update(out.grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, out.gamma, out.metrics

    Args:
      per_example_loss: see above; must accept the 2B-example concatenation.
      space: the transformation space (:func:`trivial_augment_space` for uint8 images).
      epsilon: constraint level ε ≥ 0.
      dual_lr: dual step size η > 0.
      num_steps: MH chain length (2 = reference).
      has_aux: ``per_example_loss`` returns ``(losses, aux)``.
      axis_name: data-parallel axis when the step runs inside ``jax.shard_map`` on a shard of
        the batch (``None`` under plain ``jit``, where means are global anyway, or on one
        device). The mean losses that drive the dual update and the metrics are
        ``lax.pmean``-ed, so γ is identical on every device, and the local objective is
        divided by the axis size so that the gradient of replicated parameters, which
        ``shard_map`` (``check_vma=True``) sums over the axis, equals the gradient of the
        global-batch objective. Give each device its own key (``random.fold_in`` with
        ``lax.axis_index``).

    Returns:
      ``step(key, params, images, labels, gamma) -> PrimalDualOutput``.
    """
    _check_dual_hparams(epsilon, dual_lr)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1; got {num_steps!r}.")

    def call(params, images, labels):
        out = per_example_loss(params, images, labels)
        return out if has_aux else (out, None)

    def step(
        key: jax.Array,
        params: PyTree,
        images: Shaped[Array, "b h w c"],
        labels: Shaped[Array, "b ..."],
        gamma: Float[Array, ""],
    ) -> PrimalDualOutput:
        frozen = jax.lax.stop_gradient(params)
        mh = mh_augment(
            key,
            images,
            labels,
            loss_fn=lambda x, y: call(frozen, x, y)[0],
            space=space,
            num_steps=num_steps,
        )
        batch = images.shape[0]
        both_x = jnp.concatenate([images, jax.lax.stop_gradient(mh.images)], axis=0)
        both_y = jnp.concatenate([labels, labels], axis=0)

        def objective(p):
            losses, aux = call(p, both_x, both_y)
            if losses.shape != (2 * batch,):
                raise ValueError(
                    f"per_example_loss must return shape ({2 * batch},) for the joint batch; "
                    f"got {losses.shape}."
                )
            clean, aug = losses[:batch], losses[batch:]
            loss = primal_dual_objective(clean, aug, gamma)
            # Inside shard_map the gradient of replicated parameters is summed over the axis
            # (transpose of the implicit pvary); scaling by 1/size makes it the global mean.
            scale = 1.0 if axis_name is None else 1.0 / jax.lax.axis_size(axis_name)
            return loss * scale, (loss, jnp.mean(clean), jnp.mean(aug), aux)

        (_, (loss, clean_loss, aug_loss, aux)), grads = jax.value_and_grad(objective, has_aux=True)(
            params
        )
        if axis_name is not None:
            loss, clean_loss, aug_loss = jax.lax.pmean((loss, clean_loss, aug_loss), axis_name)
        new_gamma = dual_update(gamma, aug_loss, epsilon=epsilon, dual_lr=dual_lr)
        op_counts = jnp.zeros((space.num_ops,), jnp.int32).at[mh.op_index].add(1)
        accept_rate = jnp.mean(mh.accept_rate)
        if axis_name is not None:
            op_counts = jax.lax.psum(op_counts, axis_name)
            accept_rate = jax.lax.pmean(accept_rate, axis_name)
        metrics = {
            "loss": loss,
            "clean_loss": clean_loss,
            "aug_loss": aug_loss,
            "gamma": jnp.asarray(gamma, jnp.float32),
            "constraint_slack": aug_loss - epsilon,
            "accept_rate": accept_rate,
            "op_counts": op_counts,
        }
        return PrimalDualOutput(loss, grads, new_gamma, aux, metrics, mh.images)

    return step
