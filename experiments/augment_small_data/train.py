"""Train one CIFAR-style ResNet per augmentation variant on a small labelled set; summarise.

Each variant trains through the harness (``augpar.train.train``) into ``<workdir>/<variant>``, so
checkpoints, metrics and resume work per variant; a finished variant is restored, not retrained.
The coreset variants train in segments of ``coreset.reselect_every_epochs`` epochs: before each
segment the gradient proxies of the whole training set are computed with a jitted eval-mode
pass (outside the train step), the weighted coreset is selected on the host and saved to
``<workdir>/<variant>/coresets/<step>.npz``; a resumed run loads that file instead of
reselecting, so it trains on exactly the subset an uninterrupted run would (the subset batches
are then a pure function of (seed, step, coreset)).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from augpar.augment.coreset import Coreset, select_coreset
from augpar.data.batching import batch_at_step, iterate_eval
from augpar.models.resnet import CifarResNet
from augpar.parallel import make_mesh, shard_batch, shard_params
from augpar.parallel.mesh import data_parallel_size
from augpar.train import (
    Checkpointer,
    create_train_state,
    make_eval_step,
    plot_runs,
    read_metrics,
    save_figure,
    train,
    weight_decay_mask,
)
from experiments.augment_small_data import objectives
from experiments.configs_common import loop_config

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Data, model, optimizer


def load_data(config: ml_collections.ConfigDict) -> tuple[dict, dict, int]:
    """``(train, test, num_classes)``; arrays ``{"image": uint8 [N, S, S, 3], "label": int32}``.

    Digits come from scikit-learn; any other name is read once through ``tfds.data_source``
    into host memory (CIFAR-10: 150 MB), so every variant can index examples by position.
    """
    d = config.data
    if d.name == "digits":
        from augpar.data.digits import NUM_CLASSES, load_digits

        train_set, test_set = load_digits(
            size=d.image_size, test_fraction=d.test_fraction, seed=d.split_seed
        )
        num_classes = NUM_CLASSES
    else:
        train_set, num_classes = _load_tfds(config, d.train_split)
        test_set, _ = _load_tfds(config, d.eval_split)
    if d.train_per_class:
        keep = np.concatenate(
            [
                np.flatnonzero(train_set["label"] == c)[: d.train_per_class]
                for c in range(num_classes)
            ]
        )
        keep.sort()
        train_set = {k: v[keep] for k, v in train_set.items()}
    return train_set, test_set, num_classes


def _load_tfds(config: ml_collections.ConfigDict, split: str) -> tuple[dict, int]:
    from augpar.data.tfds_source import eval_iterator, load_source

    d = config.data
    data_dir = d.tfds_data_dir or None
    source = load_source(d.name, split, data_dir=data_dir)
    num_classes = int(source.dataset_info.features["label"].num_classes)
    images, labels = [], []
    for batch in eval_iterator(
        d.name, split, batch_size=1000, image_size=d.image_size, source=source
    ):
        images.append(batch["image"][batch["mask"]])
        labels.append(batch["label"][batch["mask"]])
    return {"image": np.concatenate(images), "label": np.concatenate(labels)}, num_classes


def build_model(config: ml_collections.ConfigDict, kind: str, num_classes: int):
    """A fresh :class:`objectives.Classifier` around the configured ResNet."""
    m = config.model
    w = int(m.width)
    net = CifarResNet(
        num_classes=num_classes,
        stage_sizes=tuple(m.stage_sizes),
        widths=tuple(w * 2**i for i in range(len(m.stage_sizes))),
        bn_momentum=m.bn_momentum,
        rngs=nnx.Rngs(config.seed),
    )
    return objectives.Classifier(net, with_dual=kind == "invariance")


def make_optimizer(config: ml_collections.ConfigDict, num_steps: int):
    """Clip, decoupled weight decay on kernels, SGD with (Nesterov) momentum, warm-up + cosine."""
    o = config.optim
    warmup = max(1, int(o.warmup_fraction * num_steps))
    schedule = optax.warmup_cosine_decay_schedule(0.0, o.lr, warmup, max(num_steps, warmup + 1))
    return optax.chain(
        optax.clip_by_global_norm(o.clip),
        optax.add_decayed_weights(o.weight_decay, mask=weight_decay_mask),
        optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov),
    )


def num_train_steps(config: ml_collections.ConfigDict, num_train: int) -> int:
    if config.num_steps:
        return int(config.num_steps)
    return max(1, config.num_epochs * (num_train // config.batch_size))


# --------------------------------------------------------------------------------------------
# Coreset selection


def coreset_batch_size(config: ml_collections.ConfigDict, fraction: float, dp: int) -> int:
    """Coreset rows per step: ``batch_size · fraction`` (one pass over the coreset per epoch),
    rounded up to a multiple of the data-parallel size ``dp``."""
    m = math.ceil(config.batch_size * fraction)
    return max(dp, -(-m // dp) * dp)


def compute_proxies(proxy_step, state, arrays: dict, mesh, config) -> np.ndarray:
    """Gradient proxies ``[N, E]`` of every training example, in order (jitted eval pass).

    ``iterate_eval``'s global batch ``b`` holds examples ``[b·B, (b+1)·B)`` (padded at the
    end); the step returns it replicated, so concatenating the batches and cutting at ``N``
    restores the dataset order on every host.
    """
    out = []
    for batch in iterate_eval(
        arrays,
        batch_size=config.eval_batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        out.append(np.asarray(jax.device_get(proxy_step(state, shard_batch(batch, mesh))["proxy"])))
    return np.concatenate(out)[: arrays["label"].shape[0]]


def _save_coreset(path: str, coreset: Coreset) -> None:
    if jax.process_index() != 0:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **coreset._asdict())
    os.replace(tmp, path)


def _load_coreset(path: str) -> Coreset:
    with np.load(path) as f:
        return Coreset(**{k: f[k] for k in Coreset._fields})


# --------------------------------------------------------------------------------------------
# One variant


def train_variant(
    name: str,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mesh,
    train_set: dict,
    test_set: dict,
    num_classes: int,
) -> dict:
    """Trains (or resumes / restores) one variant; returns its summary row."""
    kind, fraction = objectives.variant_kind(name)
    vdir = os.path.join(workdir, name)
    num_train = train_set["label"].shape[0]
    num_steps = num_train_steps(config, num_train)
    tx = make_optimizer(config, num_steps)
    pid, pcount = jax.process_index(), jax.process_count()
    loss_fn = objectives.make_loss_fn(kind, config, num_classes=num_classes)
    eval_fn = objectives.make_eval_fn()

    def clean_batch(step: int) -> dict:
        return batch_at_step(
            train_set,
            step,
            global_batch_size=config.batch_size,
            seed=config.seed,
            process_index=pid,
            process_count=pcount,
        )

    def run(until: int, batch_fn) -> object:
        return train(
            workdir=vdir,
            model=build_model(config, kind, num_classes),
            tx=tx,
            loss_fn=loss_fn,
            eval_fn=eval_fn,
            train_batch_fn=batch_fn,
            global_batch_size=config.batch_size,
            eval_sets={
                "test": lambda: iterate_eval(
                    test_set,
                    batch_size=config.eval_batch_size,
                    process_index=pid,
                    process_count=pcount,
                )
            },
            loop=loop_config(config, until),
            mesh=mesh,
            seed=config.seed,
            config=config,
            name=name,
        )

    t0, c0 = time.perf_counter(), time.process_time()
    select_seconds = 0.0
    latest = _latest_step(vdir, config)
    finished = latest is not None and latest >= num_steps
    if finished:
        result_metrics = _restore_and_evaluate(config, vdir, kind, num_classes, mesh, test_set, tx)
    elif kind != "coreset":
        result_metrics = run(num_steps, clean_batch).eval_metrics["test"]
    else:
        dp = data_parallel_size(mesh)
        m = coreset_batch_size(config, fraction, dp)
        seg = config.coreset.reselect_every_epochs * (num_train // config.batch_size)
        bounds = list(range(0, num_steps, max(1, seg))) + [num_steps]
        proxy_fn = objectives.make_proxy_fn(use_features=config.coreset.use_features)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            latest = _latest_step(vdir, config)
            if latest is not None and latest >= stop:
                continue
            ts = time.perf_counter()
            coreset = _coreset_for(
                start,
                latest,
                vdir,
                config,
                kind,
                num_classes,
                mesh,
                train_set,
                tx,
                proxy_fn,
                fraction,
            )
            select_seconds += time.perf_counter() - ts
            if coreset.indices.shape[0] < m:
                raise ValueError(
                    f"{name}: coreset of {coreset.indices.shape[0]} examples is smaller than its "
                    f"per-step batch {m}; raise the fraction or lower batch_size."
                )
            subset = {
                "sub_image": train_set["image"][coreset.indices],
                "sub_label": train_set["label"][coreset.indices],
                "sub_weight": coreset.weights.astype(np.float32),
            }

            def batch_fn(step, subset=subset):
                batch = clean_batch(step)
                batch.update(
                    batch_at_step(
                        subset,
                        step,
                        global_batch_size=m,
                        seed=config.seed + 1,
                        process_index=pid,
                        process_count=pcount,
                    )
                )
                return batch

            result_metrics = run(stop, batch_fn).eval_metrics["test"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rates = [r["train/steps_per_s"] for r in read_metrics(vdir) if "train/steps_per_s" in r]
    return {
        "accuracy": float(result_metrics["accuracy"]),
        "test_loss": float(result_metrics["loss"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "select_seconds": select_seconds,
        "median_step_seconds": float(1.0 / np.median(rates)) if rates else float("nan"),
        "num_steps": num_steps,
        "restored_finished_run": finished,
    }


def _latest_step(vdir: str, config) -> int | None:
    if not os.path.isdir(os.path.join(vdir, "checkpoints")):
        return None
    ckpt = Checkpointer(vdir, max_to_keep=config.keep_checkpoints)
    try:
        steps = ckpt.all_steps()
    finally:
        ckpt.close()
    return max(steps) if steps else None


def _restored_state(config, vdir, kind, num_classes, mesh, tx):
    model = build_model(config, kind, num_classes)
    graphdef, state = create_train_state(model, tx, seed=config.seed)
    state = shard_params(state, None, mesh)
    ckpt = Checkpointer(vdir, max_to_keep=config.keep_checkpoints)
    try:
        state, step = ckpt.restore_latest(state)
    finally:
        ckpt.close()
    return graphdef, state, step


def _restore_and_evaluate(config, vdir, kind, num_classes, mesh, test_set, tx) -> dict:
    from augpar.train import evaluate

    graphdef, state, _ = _restored_state(config, vdir, kind, num_classes, mesh, tx)
    step = make_eval_step(graphdef, objectives.make_eval_fn(), mesh=mesh)
    batches = iterate_eval(
        test_set,
        batch_size=config.eval_batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return evaluate(step, state, batches, mesh)


def _coreset_for(
    start, latest, vdir, config, kind, num_classes, mesh, train_set, tx, proxy_fn, fraction
) -> Coreset:
    """The coreset used from step ``start``: loaded if saved, else selected with the model at
    ``start`` (which must then be the latest checkpoint, or the initial model at step 0)."""
    path = os.path.join(vdir, "coresets", f"{start}.npz")
    if os.path.exists(path):
        return _load_coreset(path)
    if (latest or 0) != start:
        raise RuntimeError(
            f"No saved coreset for step {start} in {vdir}, and the latest checkpoint is step "
            f"{latest}, not {start}: the coreset cannot be reconstructed. Start a new workdir."
        )
    graphdef, state, step = _restored_state(config, vdir, kind, num_classes, mesh, tx)
    if (step or 0) != start:
        raise RuntimeError(f"restored step {step}, expected {start} in {vdir}.")
    proxy_step = make_eval_step(graphdef, proxy_fn, mesh=mesh)
    proxies = compute_proxies(proxy_step, state, train_set, mesh, config)
    coreset = select_coreset(
        proxies,
        train_set["label"],
        num_classes=num_classes,
        fraction=fraction,
        budget=config.coreset.budget,
        similarity=config.coreset.similarity,
    )
    _save_coreset(path, coreset)
    log.info("Selected a coreset of %d examples at step %d.", coreset.indices.shape[0], start)
    return coreset


# --------------------------------------------------------------------------------------------
# All variants


def parse_variants(config: ml_collections.ConfigDict) -> list[str]:
    names = [v.strip() for v in config.variants.split(",") if v.strip()]
    if not names:
        raise ValueError(f"config.variants names no variant: {config.variants!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"config.variants repeats a variant: {names}.")
    for n in names:
        objectives.variant_kind(n)  # raises on unknown names
    return names


def enable_compilation_cache(config: ml_collections.ConfigDict, workdir: str) -> str | None:
    """Persistent XLA compilation cache for the run (``config.compilation_cache_dir``: "" =
    ``<workdir>/jax_cache``, "none" = off).

    Each ``train(...)`` call jits its steps anew, so without it every coreset segment recompiles
    the same train step, every selection the same proxy pass, every variant the same eval step;
    with it, identical programs compile once per run (and not again on a resumed run).
    """
    where = config.get("compilation_cache_dir", "")
    if where == "none":
        return None
    path = where or os.path.join(workdir, "jax_cache")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
    """Trains every variant of ``config.variants`` into ``<workdir>/<variant>``.

    Returns:
      ``{variant: {"accuracy", "test_loss", "wall_seconds", "cpu_seconds", "select_seconds",
      "median_step_seconds", "num_steps", ...}}``; also ``<workdir>/results.json``,
      ``<workdir>/summary.png`` and a printed table.
    """
    names = parse_variants(config)
    enable_compilation_cache(config, workdir)
    mesh = make_mesh(config)
    train_set, test_set, num_classes = load_data(config)
    log.info(
        "Data %s: %d train / %d test images of %s.",
        config.data.name,
        train_set["label"].shape[0],
        test_set["label"].shape[0],
        train_set["image"].shape[1:],
    )
    results = {}
    t0 = time.perf_counter()
    for name in names:
        results[name] = train_variant(
            name,
            config,
            workdir,
            mesh=mesh,
            train_set=train_set,
            test_set=test_set,
            num_classes=num_classes,
        )
    total = time.perf_counter() - t0
    if jax.process_index() == 0:
        summary = {
            "results": results,
            "total_wall_seconds": total,
            "num_train": int(train_set["label"].shape[0]),
            "num_test": int(test_set["label"].shape[0]),
            "dataset": config.data.name,
            "backend": jax.default_backend(),
        }
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(summary, f, indent=2)
        plot_path = plot_summary(workdir, results)
        print(format_table(results))
        print(f"Total wall time {total:.1f} s. Plot: {plot_path}")
    return results


def format_table(results: dict[str, dict]) -> str:
    """Plain-text table: variant, test accuracy (%), wall / CPU seconds, median step time."""
    head = f"{'variant':<16}{'test acc %':>11}{'wall s':>9}{'cpu s':>9}{'step ms':>9}{'steps':>7}"
    lines = [head]
    for name, r in results.items():
        lines.append(
            f"{name:<16}{100 * r['accuracy']:>11.2f}{r['wall_seconds']:>9.1f}"
            f"{r['cpu_seconds']:>9.1f}{1000 * r['median_step_seconds']:>9.1f}{r['num_steps']:>7d}"
        )
    return "\n".join(lines)


def plot_summary(workdir: str, results: dict[str, dict]) -> str:
    """Bars of test accuracy and wall time per variant, beside test-accuracy curves."""
    # A bare Figure: no pyplot state, no global backend switch (notebooks keep theirs).
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(15, 4))
    (ax_acc, ax_time, ax_curve) = fig.subplots(1, 3)
    x = np.arange(len(names))
    bars = ax_acc.bar(x, [100 * results[n]["accuracy"] for n in names], color="tab:blue")
    ax_acc.bar_label(bars, fmt="%.1f", fontsize=8)
    lo = min(100 * results[n]["accuracy"] for n in names)
    ax_acc.set_ylim(max(0.0, lo - 10), 100)
    ax_acc.set_ylabel("test accuracy (%)")
    bars = ax_time.bar(x, [results[n]["wall_seconds"] for n in names], color="tab:orange")
    ax_time.bar_label(bars, fmt="%.0f", fontsize=8)
    ax_time.set_ylabel("wall time (s, incl. compile)")
    for ax in (ax_acc, ax_time):
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    plot_runs(ax_curve, workdir, names, "eval/test/accuracy", scale=100.0,
              ylabel="test accuracy (%)", marker="o", markersize=3)  # fmt: skip
    return save_figure(fig, workdir)
