"""Builders of jitted train and eval steps with shardings taken from a mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from augpar.parallel import batch_sharding, replicated
from augpar.train.state import TrainState

# loss_fn(model, batch, rng) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
# eval_fn(model, batch) -> dict of per-batch SUMS (e.g. {"correct": ..., "count": ...})
EvalFn = Callable[[nnx.Module, dict], dict[str, jax.Array]]


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    mesh: Mesh,
    state_sharding: Any = None,
    donate: bool = True,
) -> Callable[[TrainState, dict], tuple[TrainState, dict[str, jax.Array]]]:
    """Returns ``step(state, batch) -> (state, metrics)``, jitted with shardings from ``mesh``.

    The batch is split over the data axes, the state is laid out by ``state_sharding`` (default:
    replicated), metrics come back replicated. Gradients flow to ``nnx.Param`` variables only;
    other variables (e.g. BatchNorm statistics) are carried over as the model left them.
    Metrics always include ``loss`` and ``grad_norm``.
    """

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(state.rng, state.step)

        # Variables of `rest` are rebuilt (tree.map) inside the differentiated trace, where the
        # model may update them (e.g. BatchNorm statistics); NNX forbids mutating outer ones.
        def compute(params, rest):
            model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
            loss, metrics = loss_fn(model, batch, rng)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, rest)

        (loss, (metrics, rest)), grads = jax.value_and_grad(compute, has_aux=True)(
            state.params, state.rest
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1, params=params, rest=rest, opt_state=opt_state
        )
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}
        return new_state, metrics

    state_sharding = replicated(mesh) if state_sharding is None else state_sharding
    return jax.jit(
        step,
        in_shardings=(state_sharding, batch_sharding(mesh)),
        out_shardings=(state_sharding, replicated(mesh)),
        donate_argnums=(0,) if donate else (),
    )


def make_eval_step(
    graphdef: nnx.GraphDef, eval_fn: EvalFn, *, mesh: Mesh, state_sharding: Any = None
) -> Callable[[TrainState, dict], dict[str, jax.Array]]:
    """Returns ``eval_step(state, batch) -> dict of sums``, jitted with shardings from ``mesh``."""

    def step(state: TrainState, batch: dict) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, state.params, state.rest)
        return eval_fn(model, batch)

    state_sharding = replicated(mesh) if state_sharding is None else state_sharding
    return jax.jit(
        step,
        in_shardings=(state_sharding, batch_sharding(mesh)),
        out_shardings=replicated(mesh),
    )


def classification_loss(
    logits_fn: Callable[[nnx.Module, dict, jax.Array], jax.Array], *, label_smoothing: float = 0.0
) -> LossFn:
    """Softmax cross-entropy loss over ``batch["label"]`` (int class ids or soft targets).

    Args:
      logits_fn: ``(model, batch, rng) -> logits [b, num_classes]``.
      label_smoothing: in [0, 1).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}.")

    def loss_fn(model, batch, rng):
        logits = logits_fn(model, batch, rng).astype(jnp.float32)
        labels = batch["label"]
        num_classes = logits.shape[-1]
        targets = labels if labels.ndim == 2 else jax.nn.one_hot(labels, num_classes)
        if label_smoothing:
            targets = optax.smooth_labels(targets, label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        hard = labels if labels.ndim == 1 else jnp.argmax(labels, -1)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == hard)
        return loss, {"accuracy": accuracy}

    return loss_fn


def classification_eval(logits_fn: Callable[[nnx.Module, dict], jax.Array]) -> EvalFn:
    """Sums of correct predictions, loss and count over a batch; honours ``batch["mask"]``."""

    def eval_fn(model, batch):
        logits = logits_fn(model, batch).astype(jnp.float32)
        labels = batch["label"]
        mask = batch.get("mask", jnp.ones(labels.shape[:1], bool)).astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return {
            "correct": jnp.sum(correct * mask),
            "loss_sum": jnp.sum(losses * mask),
            "count": jnp.sum(mask),
        }

    return eval_fn
