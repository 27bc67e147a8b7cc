"""Invariance-constrained augmentation: the independent Metropolis-Hastings sampler of
worst-case transformations and the op histogram (see :mod:`augpar.augment.invariance`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, Shaped

from augpar.augment.invariance.space import LossFn, TransformSpace


class MHResult(NamedTuple):
    """Output of :func:`mh_augment`.

    Attributes:
      images: ``[B, H, W, C]`` each image transformed by its chain's final state.
      op_index: ``int32[B]`` final op per image.
      level: ``int32[B]`` final level per image.
      loss: ``float32[B]`` loss of the final state (``stop_gradient``-ed).
      accept_rate: ``float32[B]`` fraction of the ``num_steps - 1`` proposals accepted (0 when
        ``num_steps == 1``).
      op_trace: ``int32[num_steps, B]`` chain state (op) after each step, initial state first.
      level_trace: ``int32[num_steps, B]`` chain state (level) after each step.
    """

    images: jax.Array
    op_index: jax.Array
    level: jax.Array
    loss: jax.Array
    accept_rate: jax.Array
    op_trace: jax.Array
    level_trace: jax.Array


def _propose(key, space: TransformSpace, batch: int):
    k_op, k_level = jax.random.split(key)
    allowed = jnp.asarray(space.allowed_ops, jnp.int32)
    pick = jax.random.randint(k_op, (batch,), 0, allowed.shape[0], dtype=jnp.int32)
    level = jax.random.randint(k_level, (batch,), 0, space.num_levels, dtype=jnp.int32)
    return allowed[pick], level


def mh_augment(
    key: jax.Array,
    images: Shaped[Array, "b h w c"],
    labels: Shaped[Array, "b ..."],
    *,
    loss_fn: LossFn,
    space: TransformSpace,
    num_steps: int = 2,
) -> MHResult:
    """Independent Metropolis–Hastings over transformations, target ``∝ loss``, one chain/image.

    The initial state and every proposal are drawn from ``space`` uniformly (op over
    ``space.allowed_ops``, level over ``0..num_levels-1``). A proposal with loss ``ℓ'`` replaces
    the current state (loss ``ℓ``) iff ``u·ℓ < ℓ'`` with ``u ~ U[0, 1)``, i.e. with probability
    ``min(1, ℓ'/ℓ)``; a NaN proposal is never accepted, a NaN or zero current state is left for
    any proposal with positive loss. Losses must be ≥ 0 (e.g. cross-entropy). The stationary
    distribution of each chain is ``π(g) ∝ ℓ(g·x, y)`` over the allowed ``(op, level)`` grid;
    ``num_steps=2`` (one proposal after the initial draw) is the reference configuration, and
    ``num_steps=1`` is plain TrivialAugment.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` in whatever dtype ``space.apply_fn`` takes.
      labels: ``[B, ...]`` passed through to ``loss_fn``.
      loss_fn: ``loss_fn(images[B, H, W, C], labels) -> float[B]`` per-example losses, usually a
        closure over the current parameters. It is called ``num_steps`` times on the batch and
        never differentiated.
      space: the transformations.
      num_steps: chain length including the initial draw (≥ 1; static).

    Returns:
      :class:`MHResult` with the final images, indices, losses, acceptance and trace.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1; got {num_steps!r}.")
    if not isinstance(space, TransformSpace):
        raise ValueError(f"space must be a TransformSpace; got {type(space).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C]; got shape {tuple(images.shape)}.")
    batch = images.shape[0]
    if jnp.shape(labels)[:1] != (batch,):
        raise ValueError(
            f"labels must have a leading batch dimension {batch}; got {jnp.shape(labels)}."
        )

    apply_batch = jax.vmap(space.apply_fn)
    out_shape = jax.eval_shape(
        apply_batch, images, jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), jnp.int32)
    )
    if out_shape.shape != images.shape or out_shape.dtype != images.dtype:
        raise ValueError(
            "space.apply_fn must keep the image shape and dtype; got "
            f"{out_shape.shape} {out_shape.dtype} from {tuple(images.shape)} {images.dtype}."
        )

    def losses_of(x):
        loss = jax.lax.stop_gradient(loss_fn(x, labels))
        if loss.shape != (batch,):
            raise ValueError(
                f"loss_fn must return per-example losses of shape ({batch},); got {loss.shape}."
            )
        return loss.astype(jnp.float32)

    def step(carry, xs):
        t, step_key = xs
        x_cur, op_cur, level_cur, loss_cur, accepted = carry
        k_prop, k_u = jax.random.split(step_key)
        op_new, level_new = _propose(k_prop, space, batch)
        x_new = apply_batch(images, op_new, level_new)
        loss_new = losses_of(x_new)
        u = jax.random.uniform(k_u, (batch,), jnp.float32)
        valid_new = ~jnp.isnan(loss_new)
        mh_accept = (u * loss_cur < loss_new) | (jnp.isnan(loss_cur) & valid_new)
        accept = mh_accept | (t == 0)  # step 0 draws the initial state from the proposal
        x_next = jnp.where(accept.reshape(batch, 1, 1, 1), x_new, x_cur)
        op_next = jnp.where(accept, op_new, op_cur)
        level_next = jnp.where(accept, level_new, level_cur)
        loss_next = jnp.where(accept, loss_new, loss_cur)
        accepted = accepted + (mh_accept & (t > 0)).astype(jnp.float32)
        return (x_next, op_next, level_next, loss_next, accepted), (op_next, level_next)

    # The initial draw is step 0 of the same scan, so apply_fn and loss_fn are traced once.
    # The placeholder carry must have the varying-axes type of the step outputs inside
    # ``jax.shard_map``: it is derived (by a no-op select) from the key, images and labels.
    never = jnp.zeros((batch,), bool)
    zeros_f = 0.0 * jax.random.uniform(key, (batch,), jnp.float32)
    for ref in (images, jnp.asarray(labels)):
        zeros_f = jnp.where(never, ref.reshape(batch, -1)[:, 0].astype(jnp.float32), zeros_f)
    zeros_i = zeros_f.astype(jnp.int32)
    x_init = jnp.where(zeros_f.reshape(batch, 1, 1, 1) != 0, images, images)
    init = (x_init, zeros_i, zeros_i, zeros_f, zeros_f)
    xs = (jnp.arange(num_steps, dtype=jnp.int32), jax.random.split(key, num_steps))
    (x, op, level, loss, accepted), (op_tr, level_tr) = jax.lax.scan(step, init, xs)
    return MHResult(
        images=x,
        op_index=op,
        level=level,
        loss=loss,
        accept_rate=accepted / max(num_steps - 1, 1),
        op_trace=op_tr,
        level_trace=level_tr,
    )


def op_histogram(op_index: Int[Array, "*shape"], *, num_ops: int) -> Int[Array, " num_ops"]:
    """Counts of each op index (e.g. of ``MHResult.op_trace``) for reports and plots."""
    if not isinstance(num_ops, int) or num_ops < 1:
        raise ValueError(f"num_ops must be a positive int; got {num_ops!r}.")
    return jnp.zeros((num_ops,), jnp.int32).at[jnp.ravel(op_index)].add(1)
