"""Long-range graph task: pLSTM-DAG against message passing of equal depth (and a deep one).

Trains every model in ``config.models`` on the same generated graphs, evaluates on held-out
graphs, and writes ``results.json``, ``summary.png`` and a printed table into the workdir.
"""

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
import optax
from flax import nnx

from augpar.data.batching import batch_at_step, iterate_eval
from augpar.models import MessagePassingGNN, PLSTMGraphModel
from augpar.parallel import make_mesh
from augpar.plstm.graph import DAG, make_dag
from augpar.train import (
    adamw_cosine,
    classification_eval,
    classification_loss,
    plot_runs,
    save_figure,
    train,
)
from experiments.configs_common import loop_config

log = logging.getLogger(__name__)


def layered_dag(num_layers: int, width: int, seed: int) -> tuple[DAG, np.ndarray, np.ndarray]:
    """A random layered DAG with a single sink.

    Node ``l * width + i`` is node i of layer l (layer 0: the sources). Every node of layer
    l >= 1 has two distinct parents in layer l - 1 (one if ``width == 1``); the sink (last
    node) is fed by every node of the last layer. Every source reaches the sink, at distance
    ``num_layers + 1``.

    Returns:
      ``(dag, sources int[width], readout float32[N])`` with readout 1 at the sink only.
    """
    if num_layers < 1 or width < 1:
        raise ValueError(f"layered_dag: num_layers={num_layers}, width={width}; allowed: both >= 1")
    rng = np.random.default_rng(seed)
    edges = []
    for layer in range(1, num_layers + 1):
        for i in range(width):
            for p in rng.choice(width, size=min(2, width), replace=False):
                edges.append(((layer - 1) * width + int(p), layer * width + i))
    # Keep every node connected downstream: a node nobody picked feeds its right neighbour.
    for layer in range(num_layers):
        used = {s for s, _ in edges}
        for i in range(width):
            n = layer * width + i
            if n not in used:
                edges.append((n, (layer + 1) * width + (i + 1) % width))
    sink = (num_layers + 1) * width
    edges += [(num_layers * width + i, sink) for i in range(width)]
    readout = np.zeros(sink + 1, np.float32)
    readout[sink] = 1.0
    return make_dag(sink + 1, edges), np.arange(width), readout


def generate(
    num_samples: int, num_nodes: int, sources: np.ndarray, *, num_features: int, noise: float,
    seed: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Samples ``{"x": float32[n, N, F], "label": int32[n]}``.

    Feature 0 flags one source, feature 1 holds a random +-1 bit at every source, features
    2.. are Gaussian noise on every node. The label is the flagged source's bit (0/1).
    """
    if num_features < 3:
        raise ValueError(f"generate: num_features={num_features}; allowed: >= 3")
    rng = np.random.default_rng(seed)
    x = np.zeros((num_samples, num_nodes, num_features), np.float32)
    x[:, :, 2:] = noise * rng.standard_normal((num_samples, num_nodes, num_features - 2))
    bits = rng.integers(0, 2, size=(num_samples, len(sources)))
    x[:, sources, 1] = 2.0 * bits - 1.0
    flagged = rng.integers(0, len(sources), size=num_samples)
    x[np.arange(num_samples), sources[flagged], 0] = 1.0
    label = bits[np.arange(num_samples), flagged].astype(np.int32)
    return {"x": x, "label": label}


def build_plstm(config, rngs):
    m = config.model
    return PLSTMGraphModel(
        in_features=config.data.num_features,
        num_classes=2,
        dim=m.dim,
        num_heads=m.num_heads,
        depth=m.plstm_blocks,
        rngs=rngs,
    )


def build_gnn(config, rngs):
    f, m = config.data.num_features, config.model
    return MessagePassingGNN(
        in_features=f, num_classes=2, dim=m.dim, depth=m.plstm_blocks, rngs=rngs
    )


def build_gnn_deep(config, rngs):
    f, m = config.data.num_features, config.model
    depth = config.data.num_layers + 1  # exactly the source -> sink distance
    return MessagePassingGNN(in_features=f, num_classes=2, dim=m.dim, depth=depth, rngs=rngs)


# name -> (config, rngs) -> model(x [B, N, F], graph, readout) -> logits [B, 2]
MODEL_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]] = {
    "plstm": build_plstm,
    "gnn": build_gnn,
    "gnn_deep": build_gnn_deep,
}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    o = config.optim
    return adamw_cosine(
        o.lr, config.num_steps, warmup_fraction=o.warmup_fraction,
        final_lr_fraction=o.final_lr_fraction, weight_decay=o.weight_decay, clip=o.clip,
    )  # fmt: skip


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains each model of ``config.models`` into ``<workdir>/<model>``.

    Returns:
      ``{model: eval accuracy}`` (also in ``<workdir>/results.json``, plot ``summary.png``).
    """
    models = [m.strip() for m in config.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_BUILDERS]
    if unknown or not models:
        raise ValueError(f"Unknown models {unknown or models}; allowed: {sorted(MODEL_BUILDERS)}.")
    d = config.data
    dag, sources, readout_np = layered_dag(d.num_layers, d.width, d.graph_seed)
    kw = dict(num_features=d.num_features, noise=d.noise)
    train_set = generate(d.num_train, dag.num_nodes, sources, seed=d.train_seed, **kw)
    eval_set = generate(d.num_eval, dag.num_nodes, sources, seed=d.eval_seed, **kw)
    readout = jnp.asarray(readout_np)
    mesh = make_mesh(config)
    pid, pcount = jax.process_index(), jax.process_count()

    def logits(m, b):
        return m(b["x"], dag, readout)

    def train_batch(step: int) -> dict:
        return batch_at_step(
            train_set, step, global_batch_size=config.batch_size, seed=config.seed,
            process_index=pid, process_count=pcount,
        )  # fmt: skip

    def eval_batches():
        return iterate_eval(
            eval_set, batch_size=config.eval_batch_size, process_index=pid, process_count=pcount
        )

    results, timings = {}, {}
    for name in models:
        model = MODEL_BUILDERS[name](config, nnx.Rngs(config.seed))
        t0 = time.perf_counter()
        result = train(
            workdir=os.path.join(workdir, name),
            model=model,
            tx=make_optimizer(config),
            loss_fn=classification_loss(lambda m, b, rng: logits(m, b)),
            eval_fn=classification_eval(logits),
            train_batch_fn=train_batch,
            global_batch_size=config.batch_size,
            eval_sets={"eval": eval_batches},
            loop=loop_config(config, config.num_steps),
            mesh=mesh,
            seed=config.seed,
            config=config,
            name=name,
        )
        results[name] = result.eval_metrics["eval"]["accuracy"]
        timings[name] = time.perf_counter() - t0

    if pid == 0:
        hops = d.num_layers + 1
        summary = {
            "accuracy": results,
            "train_seconds": timings,
            "num_steps": config.num_steps,
            "hops": hops,
            "graph": {"nodes": dag.num_nodes, "edges": dag.num_edges, "links": dag.num_links},
        }
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(summary, f, indent=2)
        print(format_table(results, timings, config, hops))
        print(f"Plot: {plot_summary(workdir, results, hops)}")
    return results


def format_table(results, timings, config, hops) -> str:
    """Plain-text table: model, depth, eval accuracy (%), training seconds."""
    depth = {
        "plstm": f"{config.model.plstm_blocks} pLSTM",
        "gnn": f"{config.model.plstm_blocks} MP",
        "gnn_deep": f"{hops} MP",
    }
    lines = [f"{'model':<10}{'layers':>10}{f'accuracy ({hops} hops, %)':>26}{'seconds':>10}"]
    for name, acc in results.items():
        lines.append(f"{name:<10}{depth[name]:>10}{100 * acc:>26.2f}{timings[name]:>10.1f}")
    return "\n".join(lines)


def plot_summary(workdir: str, results: dict[str, float], hops: int) -> str:
    """Accuracy bars beside the training-loss curves."""
    # A bare Figure: no pyplot state, no global backend switch (notebooks keep theirs).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    (ax_bar, ax_loss) = fig.subplots(1, 2)
    names = list(results)
    bars = ax_bar.bar(names, [100 * results[n] for n in names], color="C0")
    ax_bar.bar_label(bars, fmt="%.1f", fontsize=8)
    ax_bar.axhline(50, color="gray", ls="--", lw=1, label="chance")
    ax_bar.set_ylim(0, 105)
    ax_bar.set_ylabel("eval accuracy (%)")
    ax_bar.set_title(f"label {hops} hops upstream of the readout")
    ax_bar.legend(fontsize=8)
    plot_runs(ax_loss, workdir, names, "train/loss", ylabel="train loss")
    return save_figure(fig, workdir)
