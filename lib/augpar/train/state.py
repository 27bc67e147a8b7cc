"""Train state for Flax NNX models: parameters, other model state, optimizer state, step, RNG."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (a pytree; checkpointed whole).

    Attributes:
      step: int32 scalar, the number of optimizer steps taken.
      params: ``nnx.State`` of the model's ``nnx.Param`` variables (what the optimizer updates).
      rest: ``nnx.State`` of every other model variable (batch statistics, counters).
      opt_state: the optax state for ``params``.
      rng: raw uint32[2] PRNG key; the key of step ``s`` is ``fold_in(rng, s)``, so randomness is
        a function of (seed, step) and a resumed run repeats it exactly.
    """

    step: jax.Array
    params: Any
    rest: Any
    opt_state: Any
    rng: jax.Array


def create_train_state(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    *,
    seed: int,
    shardings_fn: Any = None,
) -> tuple[nnx.GraphDef, TrainState]:
    """Splits an NNX model into its static graph and a fresh :class:`TrainState`.

    The state is built by one jitted function (optimizer slots are created on device, already
    laid out), not op by op.

    Args:
      model: the initialised model.
      tx: the optimizer.
      seed: seeds ``state.rng``.
      shardings_fn: optional ``abstract_state -> pytree of shardings`` for the output layout.

    Returns:
      ``(graphdef, state)``; ``nnx.merge(graphdef, state.params, state.rest)`` rebuilds the model.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def init(params, rest):
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            rest=rest,
            opt_state=tx.init(params),
            rng=jax.random.PRNGKey(seed),
        )

    out_shardings = None
    if shardings_fn is not None:
        out_shardings = shardings_fn(jax.eval_shape(init, params, rest))
    return graphdef, jax.jit(init, out_shardings=out_shardings)(params, rest)


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """Rebuilds the NNX model held by ``state``."""
    return nnx.merge(graphdef, state.params, state.rest)


#: Parameter names that weight decay applies to (the pLSTM paper's code: ``.*(weight|kernel)$``).
DECAYED_NAMES = ("kernel", "weight")


def _leaf_name(path: tuple) -> str:
    """The parameter's own name: the last dict key / attribute of a pytree path, skipping the
    ``.value`` attribute that NNX variables add."""
    for entry in reversed(path):
        name = getattr(entry, "key", getattr(entry, "name", None))
        if name is not None and name != "value":
            return str(name)
    return ""


def weight_decay_mask(params: Any) -> Any:
    """True for parameters named ``kernel`` or ``weight`` (dense and conv kernels), False for
    everything else: biases, norm scales, position embeddings, class tokens, gate biases.

    This is the rule of the pLSTM paper's code (regex ``.*(weight|kernel)$``). Earlier versions
    decayed every tensor of rank >= 2, which also pulled the learned position embedding, the
    class token and the per-head attention biases towards zero.
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _leaf_name(path) in DECAYED_NAMES, params
    )
