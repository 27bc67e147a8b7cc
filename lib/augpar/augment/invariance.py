"""Invariance-constrained augmentation: MCMC worst-case transformations and dual ascent.

Reference: Hounie, Chamon, Ribeiro, "Automatic Data Augmentation via Invariance-Constrained
Learning", ICML 2023 (PMLR 202:13410); reference code ``ihounie/daug``.

The problem ``min_θ E[ℓ(f_θ(x), y)]  s.t.  E[max_g ℓ(f_θ(g·x), y)] ≤ ε`` is relaxed so that the
worst case over transformations ``g`` becomes an expectation under ``λ(g | x, y) ∝ ℓ(f_θ(g·x), y)``.
Samples of ``λ`` come from an **independent Metropolis–Hastings** chain per image whose proposal
is the TrivialAugment distribution (op and level uniform) and whose acceptance probability is
``min(1, ℓ'/ℓ)``. Training is primal–dual:

    primal:  L(θ) = mean ℓ(f_θ(x), y) + γ · mean ℓ(f_θ(x_mh), y)
    dual:    γ ← max(0, γ + η · (mean ℓ(f_θ(x_mh), y) − ε))

The pieces:
- :class:`TransformSpace` – what the sampler moves over: ``apply_fn(image, op_index, level)``
  on one image plus the grid sizes. :func:`trivial_augment_space` builds the default one from
  ``augpar.augment.policies`` (TrivialAugment-Wide ops, 31 bins, random sign folded into the
  level).
- :func:`mh_augment` – the sampler, a ``lax.scan`` over chain steps; every image has its own
  chain (the transform is ``vmap``-ed over the batch, the loss is one batched call per step).
- :func:`primal_dual_objective`, :func:`dual_update` – the two halves of a step.
- :func:`op_histogram` – counts of the sampled ops, to see which transformations the
  constraint asks for over training.
- :func:`make_primal_dual_step` – a pure step core ``(key, params, images, labels, gamma) ->
  PrimalDualOutput(loss, grads, gamma, aux, metrics)`` that an experiment wraps with its
  optimiser.

Differences from the reference code (deliberate, documented):
- The sampler's loss evaluations run under ``stop_gradient`` and their auxiliary outputs (e.g.
  BatchNorm statistics) are discarded; ``daug`` runs them in train mode and lets BatchNorm
  update from them.
- The clean and the augmented batch go through **one** forward pass (concatenated, 2B
  examples), so a model with batch statistics sees both; ``daug`` uses two passes.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree, Shaped

__all__ = [
    "MHResult",
    "PrimalDualOutput",
    "TransformSpace",
    "dual_update",
    "make_primal_dual_step",
    "mh_augment",
    "op_histogram",
    "primal_dual_objective",
    "trivial_augment_space",
]

ApplyFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TransformSpace:
    """A finite set of transformations ``(op_index, level)`` for the MH sampler.

    Attributes:
      apply_fn: ``apply_fn(image[H, W, C], op_index: int32[], level: int32[]) -> image[H, W, C]``
        on ONE image with traced indices; must keep shape and dtype.
      num_ops: ops are ``0 .. num_ops-1``.
      num_levels: levels are ``0 .. num_levels-1``.
      excluded_ops: op indices the proposal never draws (e.g. identity, as in ``daug``).
      op_names: optional names for reports and plots, ``len == num_ops``.
    """

    apply_fn: ApplyFn
    num_ops: int
    num_levels: int
    excluded_ops: tuple[int, ...] = ()
    op_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if not callable(self.apply_fn):
            raise ValueError(f"apply_fn must be callable; got {self.apply_fn!r}.")
        if not isinstance(self.num_ops, int) or self.num_ops < 1:
            raise ValueError(f"num_ops must be a positive int; got {self.num_ops!r}.")
        if not isinstance(self.num_levels, int) or self.num_levels < 1:
            raise ValueError(f"num_levels must be a positive int; got {self.num_levels!r}.")
        bad = [o for o in self.excluded_ops if not 0 <= o < self.num_ops]
        if bad:
            raise ValueError(
                f"excluded_ops must lie in 0..{self.num_ops - 1}; got {tuple(self.excluded_ops)}."
            )
        if not self.allowed_ops:
            raise ValueError(
                f"excluded_ops {tuple(self.excluded_ops)} leave no op out of {self.num_ops}."
            )
        if self.op_names is not None and len(self.op_names) != self.num_ops:
            raise ValueError(
                f"op_names must have num_ops={self.num_ops} entries; got {len(self.op_names)}."
            )

    @property
    def allowed_ops(self) -> tuple[int, ...]:
        """The op indices the proposal draws from, in increasing order."""
        return tuple(o for o in range(self.num_ops) if o not in set(self.excluded_ops))


def trivial_augment_space(
    *,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    include_identity: bool = False,
) -> TransformSpace:
    """The default space: TrivialAugment-Wide ops from ``augpar.augment.policies``.

    A level ``l ∈ [0, 2·num_magnitude_bins)`` encodes magnitude bin ``l mod num_magnitude_bins``
    and sign ``+1`` for ``l < num_magnitude_bins``, else ``-1``. A uniform level is therefore a
    uniform bin with a fair random sign, i.e. exactly TrivialAugment-Wide's draw (unsigned ops
    ignore the sign, so both halves are the same transform and the target is unaffected).
    As in ``daug`` the identity op is excluded from the proposal unless ``include_identity``.

    Args:
      num_magnitude_bins: bins of the magnitude grid (31 as torchvision).
      fill: fill value(s) in [0, 255] of the geometric ops (None: torchvision's default).
      interpolation: ``"nearest"`` or ``"bilinear"``.
      include_identity: let the proposal draw the identity op.

    Returns:
      A :class:`TransformSpace` over uint8 images ``[H, W, C]``.
    """
    from augpar.augment import policies  # imported lazily: policies depends on ops

    if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 1:
        raise ValueError(f"num_magnitude_bins must be a positive int; got {num_magnitude_bins!r}.")
    names = tuple(policies.TRIVIAL_AUGMENT_OPS)
    bins = num_magnitude_bins

    def apply_fn(image, op_index, level):
        level = jnp.asarray(level, jnp.int32)
        magnitude_bin = level % bins
        sign = jnp.where(level < bins, 1, -1).astype(jnp.int32)
        return policies.apply_op(
            image,
            jnp.asarray(op_index, jnp.int32),
            magnitude_bin,
            num_magnitude_bins=bins,
            fill=fill,
            interpolation=interpolation,
            sign=sign,
        )

    identity = tuple(i for i, n in enumerate(names) if n.lower() == "identity")
    return TransformSpace(
        apply_fn=apply_fn,
        num_ops=len(names),
        num_levels=2 * bins,
        excluded_ops=() if include_identity else identity,
        op_names=names,
    )


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


def op_histogram(op_index: Int[Array, "*shape"], *, num_ops: int) -> Int[Array, " num_ops"]:
    """Counts of each op index (e.g. of ``MHResult.op_trace``) for reports and plots."""
    if not isinstance(num_ops, int) or num_ops < 1:
        raise ValueError(f"num_ops must be a positive int; got {num_ops!r}.")
    return jnp.zeros((num_ops,), jnp.int32).at[jnp.ravel(op_index)].add(1)
