"""Arrow-pointing extrapolation: train each configured model, evaluate in-distribution and at
double resolution, and summarise (table + plot) in the workdir."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from augpar.data import arrow_pointing
from augpar.data.batching import batch_at_step, iterate_eval
from augpar.data.tfds_source import image_classification_dataset
from augpar.models import PLSTMVisionModel, ViT
from augpar.parallel import make_mesh
from augpar.train import (
    adamw_cosine,
    classification_eval,
    classification_loss,
    train,
)
from experiments.configs_common import loop_config

log = logging.getLogger(__name__)

# Per-channel statistics are irrelevant for these black-on-white images: a fixed map of [0, 255].
SCALINGS = ("unit", "symmetric", "ink")


def normalize(images: jax.Array, scaling: str = "unit") -> jax.Array:
    """uint8 ``[b, h, w, 1 | 3]`` -> float32 ``[b, h, w, 3]`` (gray is repeated to RGB).

    ``"unit"``: ``x / 255`` in [0, 1], white background 1: what the paper's code feeds (its
    arrow-pointing loader divides by 255 and the trainer is told the data is pre-normalised).
    ``"symmetric"``: [-1, 1]; ``"ink"``: ``1 - x / 255`` (background 0, strokes and disc 1).
    """
    x = images.astype(jnp.float32) / 255.0
    if images.shape[-1] == 1:
        x = jnp.broadcast_to(x, (*x.shape[:-1], 3))
    if scaling == "unit":
        return x
    if scaling == "symmetric":
        return 2.0 * x - 1.0
    if scaling == "ink":
        return 1.0 - x
    raise ValueError(f"input scaling {scaling!r}; allowed: {SCALINGS}")


def build_vit(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    v = config.vit
    return ViT(
        image_size=config.data.resolution,
        patch_size=v.patch_size,
        num_classes=2,
        dim=v.dim,
        depth=v.depth,
        num_heads=v.num_heads,
        mlp_ratio=v.mlp_ratio,
        position_embedding=v.position_embedding,
        pool=v.pool,
        head_init=v.head_init,
        rngs=rngs,
    )


def build_plstm(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    p = config.plstm
    return PLSTMVisionModel(
        image_size=config.data.resolution,
        patch_size=p.patch_size,
        num_classes=2,
        dim=p.dim,
        depth=p.depth,
        num_heads=p.num_heads,
        mlp_ratio=p.mlp_ratio,
        mlp_multiple=p.mlp_multiple,
        pooling=p.pooling,
        method=p.method,
        chunk_size=p.chunk_size,
        head_init=p.head_init,
        rngs=rngs,
    )


# name -> (config, rngs) -> model taking float images [b, h, w, 3] and returning logits [b, 2].
MODEL_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]] = {
    "vit": build_vit,
    "plstm": build_plstm,
}

SPLIT_TITLES = {
    "val": "in-distribution",
    "val_ext": "extrapolation",
    "test": "test",
    "test_ext": "test extrapolation",
}


def make_optimizer(config: ml_collections.ConfigDict, num_steps: int):
    o = config.optim
    return adamw_cosine(
        o.lr, num_steps, warmup_fraction=o.warmup_fraction,
        final_lr_fraction=o.final_lr_fraction, weight_decay=o.weight_decay, clip=o.clip,
    )  # fmt: skip


def num_train_steps(config: ml_collections.ConfigDict, model: str) -> int:
    """Steps for ``model``: ``model_steps[model]`` if set, else ``num_steps``, else
    ``num_epochs`` passes over ``data.num_train`` images."""
    steps = config.model_steps.get(model, 0) or config.num_steps
    if steps:
        return int(steps)
    if not config.data.num_train or not config.num_epochs:
        raise ValueError(
            f"no step count for {model!r}: set model_steps.{model} or num_steps, or "
            f"num_epochs > 0 with data.num_train > 0 (got num_epochs={config.num_epochs}, "
            f"data.num_train={config.data.num_train})"
        )
    return max(1, config.num_epochs * config.data.num_train // config.batch_size)


def num_train_images(config: ml_collections.ConfigDict, models: list[str]) -> int:
    """``data.num_train``, or when it is 0 one fresh image per example of the longest run
    (``steps * batch_size``: no image is seen twice)."""
    if config.data.num_train:
        return int(config.data.num_train)
    return max(num_train_steps(config, m) for m in models) * config.batch_size


def load_data(
    config: ml_collections.ConfigDict, models: list[str]
) -> tuple[dict | None, dict[str, dict]]:
    """Generates the eval splits, and the training split unless it is read lazily.

    In-memory sets are stored gray (``[n, h, w, 1]``, a third of the memory; :func:`normalize`
    repeats the channel on device, so the models see the paper's RGB input).
    """
    d = config.data
    kw = dict(resolution=d.resolution, stroke=d.stroke, channels=1)
    train_set = None
    if not d.lazy_train:
        train_set = arrow_pointing.generate(
            "train", num_samples=num_train_images(config, models), seed=d.train_seed, **kw
        )
    evals = {
        split: arrow_pointing.generate(split, num_samples=d.num_eval, **kw)
        for split in d.eval_splits
    }
    return train_set, evals


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
    """Trains every model in ``config.models`` into ``<workdir>/<model>``; returns accuracies.

    Returns:
      ``{model: {split: accuracy}}``; also written to ``<workdir>/results.json`` with a plot
      ``<workdir>/summary.png``.
    """
    models = [m.strip() for m in config.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_BUILDERS]
    if unknown or not models:
        raise ValueError(f"Unknown models {unknown or models}; allowed: {sorted(MODEL_BUILDERS)}.")
    scaling = config.data.scaling
    if scaling not in SCALINGS:  # fail before generating data or training
        raise ValueError(f"input scaling {scaling!r}; allowed: {SCALINGS}")
    num_steps = {m: num_train_steps(config, m) for m in models}
    mesh = make_mesh(config)
    t0 = time.perf_counter()
    train_set, eval_sets = load_data(config, models)
    log.info("Generated the data in %.1f s.", time.perf_counter() - t0)
    pid, pcount = jax.process_index(), jax.process_count()

    if train_set is None:
        # Paper scale (100k x 192 px = 11 GB): render each host's examples on demand with grain.
        lazy = image_classification_dataset(
            "arrow_pointing",
            "train",
            source=arrow_pointing.ArrowPointingSource(
                "train",
                num_samples=num_train_images(config, models),
                resolution=config.data.resolution,
                seed=config.data.train_seed,
                stroke=config.data.stroke,
            ),
            global_batch_size=config.batch_size,
            seed=config.seed,
            process_index=pid,
            process_count=pcount,
        )

        def train_batch(step: int) -> dict:
            return lazy[step]
    else:

        def train_batch(step: int) -> dict:
            return batch_at_step(
                train_set,
                step,
                global_batch_size=config.batch_size,
                seed=config.seed,
                process_index=pid,
                process_count=pcount,
            )

    def eval_batches(arrays):
        return lambda: iterate_eval(
            arrays, batch_size=config.eval_batch_size, process_index=pid, process_count=pcount
        )

    results, timings = {}, {}
    for name in models:
        # Built by one jitted function: eager initialisation compiles every op separately.
        model = nnx.jit(lambda name=name: MODEL_BUILDERS[name](config, nnx.Rngs(config.seed)))()
        t_model = time.perf_counter()
        result = train(
            workdir=os.path.join(workdir, name),
            model=model,
            tx=make_optimizer(config, num_steps[name]),
            loss_fn=classification_loss(lambda m, b, rng: m(normalize(b["image"], scaling))),
            eval_fn=classification_eval(lambda m, b: m(normalize(b["image"], scaling))),
            train_batch_fn=train_batch,
            global_batch_size=config.batch_size,
            eval_sets={s: eval_batches(a) for s, a in eval_sets.items()},
            loop=loop_config(config, num_steps[name]),
            mesh=mesh,
            seed=config.seed,
            config=config,
            name=name,
        )
        results[name] = {s: r["accuracy"] for s, r in result.eval_metrics.items()}
        timings[name] = time.perf_counter() - t_model

    if jax.process_index() == 0:
        summary = {"accuracy": results, "train_seconds": timings, "num_steps": num_steps}
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(summary, f, indent=2)
        plot_path = plot_summary(workdir, results, config)
        print(format_table(results, config))
        print(f"Plot: {plot_path}")
    return results


def format_table(results: dict[str, dict[str, float]], config: ml_collections.ConfigDict) -> str:
    """A plain-text table: model x split accuracy (%)."""
    splits = list(config.data.eval_splits)
    res = config.data.resolution
    heads = [
        f"{s} ({SPLIT_TITLES.get(s, s)}, {2 * res if s.endswith('_ext') else res} px)"
        for s in splits
    ]
    width = max(len(h) for h in heads)
    lines = ["model".ljust(8) + "".join(h.rjust(width + 2) for h in heads)]
    for model, accs in results.items():
        lines.append(
            model.ljust(8) + "".join(f"{100 * accs[s]:.2f}".rjust(width + 2) for s in splits)
        )
    return "\n".join(lines)


def plot_summary(workdir: str, results: dict, config: ml_collections.ConfigDict) -> str:
    """Bar chart of accuracies per model and split, beside each model's training loss curve."""
    # A bare Figure: no pyplot state, no global backend switch (notebooks keep theirs).
    from matplotlib.figure import Figure

    from augpar.train import plot_runs, save_figure

    splits = list(config.data.eval_splits)
    fig = Figure(figsize=(10, 3.6))
    (ax_bar, ax_loss) = fig.subplots(1, 2)
    width = 0.8 / max(1, len(results))
    x = np.arange(len(splits))
    for i, (model, accs) in enumerate(results.items()):
        vals = [100 * accs[s] for s in splits]
        bars = ax_bar.bar(x + i * width, vals, width, label=model)
        ax_bar.bar_label(bars, fmt="%.1f", fontsize=8)
    ax_bar.axhline(50, color="gray", ls="--", lw=1, label="chance")
    ax_bar.set_xticks(x + width * (len(results) - 1) / 2, [SPLIT_TITLES.get(s, s) for s in splits])
    ax_bar.set_ylabel("accuracy (%)")
    ax_bar.set_ylim(0, 100)
    ax_bar.legend(fontsize=8)
    ax_bar.set_title(f"arrow pointing, train {config.data.resolution} px")
    plot_runs(ax_loss, workdir, results, "train/loss", ylabel="train loss")
    return save_figure(fig, workdir)
