"""The training loop: steps, periodic evaluation, logging, checkpoints, resume, NaN guard."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from augpar.parallel import shard_batch, tree_shardings, validate_global_batch
from augpar.train.checkpoint import Checkpointer
from augpar.train.metrics import MetricsWriter, plot_curves, read_metrics, write_config
from augpar.train.state import TrainState, create_train_state
from augpar.train.step import EvalFn, LossFn, make_eval_step, make_train_step

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; no checkpoint of that state was written."""

    def __init__(self, step: int, value: float, last_checkpoint: int | None):
        self.step = step
        self.value = value
        self.last_checkpoint = last_checkpoint
        super().__init__(
            f"Loss is {value} at step {step}; training stopped. The last good checkpoint is "
            f"{last_checkpoint if last_checkpoint is not None else 'none (no checkpoint yet)'}."
        )


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How long to train and how often to log, evaluate and checkpoint.

    Attributes:
      num_steps: total optimizer steps (a resumed run continues up to this number).
      log_every: steps between records in ``metrics.jsonl`` (means over the window).
      eval_every: steps between evaluations; 0 evaluates only at the end.
      checkpoint_every: steps between checkpoints (a final one is always written).
      keep_checkpoints: how many checkpoints to keep.
      progress: show a progress bar.
    """

    num_steps: int
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    progress: bool = True

    def __post_init__(self):
        for name in ("num_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoopConfig.{name} must be >= 1; got {getattr(self, name)}.")
        if self.eval_every < 0:
            raise ValueError(f"LoopConfig.eval_every must be >= 0; got {self.eval_every}.")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns."""

    graphdef: nnx.GraphDef
    state: TrainState
    eval_metrics: dict[str, dict[str, float]]
    resumed_from: int | None
    plot_path: str | None
    steps_per_second: float

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.state.params, self.state.rest)


def evaluate(
    eval_step: Callable[[TrainState, dict], dict],
    state: TrainState,
    batches: Iterable[dict],
    mesh: Mesh,
) -> dict[str, float]:
    """Sums an eval step's outputs over ``batches`` and normalises by ``count``.

    ``correct`` becomes ``accuracy``; ``<name>_sum`` becomes ``<name>``.
    """
    totals: dict[str, Any] = {}
    for batch in batches:
        sums = eval_step(state, shard_batch(batch, mesh))
        totals = sums if not totals else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = {k: float(v) for k, v in jax.device_get(totals).items()}
    count = totals.pop("count", None)
    if not count:
        raise ValueError("Evaluation saw no examples (empty split or eval_fn without 'count').")
    out = {}
    for k, v in totals.items():
        name = "accuracy" if k == "correct" else k.removesuffix("_sum")
        out[name] = v / count
    out["count"] = count
    return out


def _first_nonfinite(pending: list[tuple[int, jax.Array]]) -> tuple[int, float] | None:
    if not pending:
        return None
    values = np.asarray(jax.device_get([v for _, v in pending]), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    return None if bad.size == 0 else (pending[bad[0]][0], float(values[bad[0]]))


def train(
    *,
    workdir: str,
    model: nnx.Module,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    train_batch_fn: Callable[[int], dict],
    global_batch_size: int,
    loop: LoopConfig,
    mesh: Mesh,
    seed: int,
    eval_fn: EvalFn | None = None,
    eval_sets: Mapping[str, Callable[[], Iterable[dict]]] | None = None,
    config: Any = None,
    param_rules: Any = None,
    name: str = "train",
) -> TrainResult:
    """Trains ``model`` for ``loop.num_steps`` steps; resumes from ``workdir``'s latest checkpoint.

    Args:
      workdir: where ``config.json``, ``metrics.jsonl``, TensorBoard events, checkpoints and
        ``curves.png`` go.
      model: a freshly initialised NNX model (its values are replaced on resume).
      tx: the optax optimizer.
      loss_fn: ``(model, batch, rng) -> (loss, metrics)``; ``rng`` is ``fold_in(seed key, step)``.
      train_batch_fn: ``step -> batch``: this host's share of the global batch for ``step``, a
        pytree of numpy arrays with leading dimension ``global_batch_size // process_count``. It
        must be a pure function of the step (and the run's seed) for bit-identical resume.
      global_batch_size: examples per step over all hosts.
      loop: :class:`LoopConfig`.
      mesh: the device mesh; batches are split over its data axes.
      seed: seeds the step RNG.
      eval_fn: ``(model, batch) -> dict of sums incl. "count"`` (see ``classification_eval``).
      eval_sets: ``{split_name: () -> iterable of host batches}``.
      config: written to ``config.json`` (ConfigDict or dict).
      param_rules: ``None`` (replicate) or ``(path, leaf) -> PartitionSpec`` for the state.
      name: label of the progress bar.

    Returns:
      A :class:`TrainResult` with the final state and the last evaluation per split.

    Raises:
      NonFiniteLossError: when the loss stops being finite; names the first bad step.
    """
    validate_global_batch(global_batch_size, mesh, process_count=jax.process_count())
    eval_sets = dict(eval_sets or {})
    if eval_sets and eval_fn is None:
        raise ValueError(f"eval_sets {sorted(eval_sets)} were given without an eval_fn.")
    is_main = jax.process_index() == 0
    if config is not None and is_main:
        write_config(workdir, config)

    graphdef, state = create_train_state(
        model, tx, seed=seed, shardings_fn=lambda s: tree_shardings(s, param_rules, mesh)
    )
    state_sharding = jax.tree.map(lambda x: x.sharding, state)

    ckpt = Checkpointer(workdir, max_to_keep=loop.keep_checkpoints)
    state, resumed_from = ckpt.restore_latest(state)
    start = int(state.step)
    writer = MetricsWriter(workdir, enabled=is_main)
    if resumed_from is not None:
        writer.truncate_after(start)
        log.info("Resuming %s from step %d.", workdir, start)

    train_step = make_train_step(graphdef, tx, loss_fn, mesh=mesh, state_sharding=state_sharding)
    eval_step = (
        make_eval_step(graphdef, eval_fn, mesh=mesh, state_sharding=state_sharding)
        if eval_fn is not None
        else None
    )

    def run_evals(step: int, log: bool = True) -> dict[str, dict[str, float]]:
        results = {}
        for split, make_batches in eval_sets.items():
            results[split] = evaluate(eval_step, state, make_batches(), mesh)
            if log:
                writer.write(step, {f"eval/{split}/{k}": v for k, v in results[split].items()})
        return results

    last_ckpt = resumed_from
    pending: list[tuple[int, jax.Array]] = []  # losses not yet checked for finiteness
    window: list[dict[str, jax.Array]] = []
    eval_results: dict[str, dict[str, float]] = {}
    bar = tqdm(
        total=loop.num_steps, initial=start, desc=name, disable=not (loop.progress and is_main)
    )
    t_window, steps_in_window = time.perf_counter(), 0
    t_start, steps_run = time.perf_counter(), 0

    def check_finite():
        bad = _first_nonfinite(pending)
        pending.clear()
        if bad is not None:
            raise NonFiniteLossError(bad[0], bad[1], last_ckpt)

    step = start
    try:
        while step < loop.num_steps:
            batch = shard_batch(train_batch_fn(step), mesh)
            state, metrics = train_step(state, batch)
            step += 1
            steps_in_window += 1
            steps_run += 1
            pending.append((step, metrics["loss"]))
            window.append(metrics)
            bar.update(1)
            done = step == loop.num_steps
            if step % loop.log_every == 0 or done:
                check_finite()
                means = {
                    f"train/{k}": float(np.mean(v))
                    for k, v in jax.device_get(jax.tree.map(lambda *xs: list(xs), *window)).items()
                }
                window.clear()
                dt = time.perf_counter() - t_window
                rate = steps_in_window / dt if dt > 0 else float("nan")
                means["train/steps_per_s"] = rate
                means["train/examples_per_s"] = rate * global_batch_size
                writer.write(step, means)
                bar.set_postfix(
                    loss=f"{means['train/loss']:.4f}",
                    ex_s=f"{means['train/examples_per_s']:.0f}",
                    refresh=False,
                )
                t_window, steps_in_window = time.perf_counter(), 0
            if eval_sets and ((loop.eval_every and step % loop.eval_every == 0) or done):
                eval_results = run_evals(step)
                bar.set_postfix_str(
                    " ".join(
                        f"{s}={r.get('accuracy', float('nan')):.3f}"
                        for s, r in eval_results.items()
                    ),
                    refresh=False,
                )
            if step % loop.checkpoint_every == 0 or done:
                check_finite()
                ckpt.save(step, state)
                last_ckpt = step
        if eval_sets and steps_run == 0:
            # Restored a finished run (e.g. the same command run twice): evaluate its state so
            # the caller still gets results; log them only if that step has no eval record yet.
            logged = any(
                r.get("step") == step and any(k.startswith("eval/") for k in r)
                for r in read_metrics(workdir)
            )
            eval_results = run_evals(step, log=not logged)
    except KeyboardInterrupt:
        # Keep the work done so far, unless the state is already non-finite.
        if _first_nonfinite(pending) is None and step != last_ckpt and step > start:
            log.warning("Interrupted at step %d; saving a checkpoint before exiting.", step)
            ckpt.save(step, state)
        raise
    finally:
        bar.close()
        ckpt.close()
        writer.close()

    elapsed = time.perf_counter() - t_start
    plot_path = plot_curves(workdir, title=name) if is_main else None
    return TrainResult(
        graphdef=graphdef,
        state=state,
        eval_metrics=eval_results,
        resumed_from=resumed_from,
        plot_path=plot_path,
        steps_per_second=steps_run / elapsed if elapsed > 0 else float("nan"),
    )
