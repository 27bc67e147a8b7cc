"""Writes notebooks/01_augmentations.ipynb with outputs stripped.

Run ``python notebooks/build_01_augmentations.py``.

Edit the cells here, rebuild, then ``ruff format notebooks && ruff check notebooks``.
"""

from __future__ import annotations

from _builder import write

CELLS = [
    (
        "markdown",
        """# Augmentations on device

What `augpar.augment` does to real images, all as jit-compiled JAX on uint8 batches:

1. every TrivialAugment-Wide op across its magnitude range (torchvision semantics);
2. RandAugment and TrivialAugment draws (an independent op, sign and magnitude per image);
3. mixup and CutMix with their soft labels;
4. the invariance-constrained sampler (Hounie et al. 2023): which transformations its
   Metropolis–Hastings chains pick while a small ResNet trains on digits.

Runs on CPU in about a minute; the photos are scikit-learn's two sample images.""",
    ),
    (
        "code",
        """import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_sample_images

from augpar.augment import invariance, mix, ops, policies
from augpar.data.batching import batch_at_step
from augpar.data.digits import load_digits
from augpar.models import CifarResNet
from augpar.parallel import make_mesh
from augpar.train import LoopConfig, read_metrics, train

print(jax.devices())""",
    ),
    (
        "markdown",
        """## The photos

Two 427×640 JPEGs shipped with scikit-learn, resized to 96×144 and centre-cropped to 96×96
with `augpar.augment.ops`.""",
    ),
    (
        "code",
        """photos = np.stack(load_sample_images().images)  # uint8 [2, 427, 640, 3]
names = ["china", "flower"]
small = jax.jit(
    jax.vmap(lambda im: ops.center_crop(ops.resize(im, (96, 144), interpolation="bilinear"), 96))
)(jnp.asarray(photos))
print(small.shape, small.dtype)
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
for ax, im, name in zip(axes, small, names, strict=True):
    ax.imshow(im)
    ax.set_title(name)
    ax.axis("off")""",
    ),
    (
        "markdown",
        """## Every op across magnitudes

`policies.apply_op(image, op_index, magnitude_bin)` applies op `TRIVIAL_AUGMENT_OPS[op]` at bin
`b` of torchvision's 31-bin TrivialAugment-Wide table (positive sign). Op and bin may be traced,
so one `vmap` renders the whole grid in one compiled call.""",
    ),
    (
        "code",
        """op_names = policies.TRIVIAL_AUGMENT_OPS
bins = np.array([0, 6, 12, 18, 24, 30])
op_idx, bin_idx = np.meshgrid(np.arange(len(op_names)), bins, indexing="ij")
grid = jax.jit(
    jax.vmap(lambda o, b: policies.apply_op(small[0], o, b, num_magnitude_bins=31))
)(jnp.asarray(op_idx.ravel()), jnp.asarray(bin_idx.ravel()))
grid = np.asarray(grid).reshape(len(op_names), len(bins), 96, 96, 3)

fig, axes = plt.subplots(len(op_names), len(bins), figsize=(1.5 * len(bins), 1.5 * len(op_names)))
for i, name in enumerate(op_names):
    table = policies.magnitude_table("trivial_augment_wide", name, 31, 96, 96)
    for j, b in enumerate(bins):
        ax = axes[i, j]
        ax.imshow(grid[i, j])
        ax.set_xticks([])
        ax.set_yticks([])
        if table is not None:
            ax.set_title(f"{table[b]:.3g}", fontsize=7)
        if j == 0:
            ax.set_ylabel(name, fontsize=8)
fig.suptitle("TrivialAugment-Wide ops; columns: bins 0, 6, ..., 30 (title: magnitude)", y=1.0)
fig.tight_layout()""",
    ),
    (
        "markdown",
        """## RandAugment and TrivialAugment draws

Eight draws per photo in one batch of 16: RandAugment (2 ops at bin 9 of 31, the torchvision
default) and TrivialAugment-Wide (1 op, uniform bin). Each image gets its own op, sign and (TA)
magnitude.""",
    ),
    (
        "code",
        """batch = jnp.repeat(small, 8, axis=0)  # [16, 96, 96, 3]: 8 copies of each photo
ra = jax.jit(lambda k, x: policies.rand_augment(k, x, num_ops=2, magnitude=9))(
    jax.random.key(0), batch
)
ta = jax.jit(policies.trivial_augment_wide)(jax.random.key(1), batch)
fig, axes = plt.subplots(4, 8, figsize=(12, 6.4))
rows = [(ra[:8], "RA"), (ra[8:], "RA"), (ta[:8], "TA"), (ta[8:], "TA")]
for row, (imgs, label) in enumerate(rows):
    for col in range(8):
        axes[row, col].imshow(imgs[col])
        axes[row, col].axis("off")
    axes[row, 0].set_title(label, loc="left", fontsize=9)
fig.tight_layout()""",
    ),
    (
        "markdown",
        """## mixup and CutMix

Label 0 = china, 1 = flower; partners are the next image in the batch (`partner="roll"`).
mixup blends the pixels with λ ~ Beta(α, α); CutMix pastes a box and sets the label weight to
the area actually kept. Titles give the soft labels.""",
    ),
    (
        "code",
        """labels = jnp.array([0, 1])  # china, flower: each one's partner is the other
keys = jax.random.split(jax.random.key(3), 4)
fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
for col, key in enumerate(keys):
    xm, ym = mix.mixup(key, small, labels, num_classes=2, alpha=1.0)
    xc, yc = mix.cutmix(key, small, labels, num_classes=2, alpha=1.0)
    for row, (x, y, name) in enumerate([(xm, ym, "mixup"), (xc, yc, "cutmix")]):
        ax = axes[row, col]
        ax.imshow(np.asarray(x[0]).astype(np.uint8))
        ax.set_title(f"{name}: china {float(y[0, 0]):.2f}, flower {float(y[0, 1]):.2f}", fontsize=8)
        ax.axis("off")
fig.tight_layout()""",
    ),
    (
        "markdown",
        """## The invariance sampler during training

A small ResNet trains on 16 px digits with the primal–dual objective
`mean ℓ(x) + γ·mean ℓ(x_mh)`, where `x_mh` is the final state of an independent
Metropolis–Hastings chain per image over the TrivialAugment-Wide space (target ∝ loss, two
steps as in the reference), and `γ ← max(0, γ + η(mean ℓ(x_mh) − ε))`. γ lives in the model
as a non-parameter variable, so the `augpar.train` harness carries and checkpoints it.
Logged every 5 steps (means over the window): how often each op is the chain's final state,
the acceptance rate and γ.""",
    ),
    (
        "code",
        """train_set, test_set = load_digits(size=16)  # 16 px: a small net learns them in a minute
space = invariance.trivial_augment_space()
EPSILON, DUAL_LR, STEPS, BATCH = 0.5, 0.02, 60, 32


class Dual(nnx.Variable):
    pass


class Net(nnx.Module):
    def __init__(self):
        self.net = CifarResNet(
            num_classes=10, stage_sizes=(1, 1, 1), widths=(8, 16, 32), rngs=nnx.Rngs(0)
        )
        self.gamma = Dual(jnp.zeros((), jnp.float32))

    def __call__(self, images, *, train):
        return self.net(images.astype(jnp.float32) / 127.5 - 1.0, train=train)


def ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def loss_fn(model, batch, rng):
    x, y = batch["image"], batch["label"]
    graphdef, state = nnx.split(model)

    def sampler_loss(images, labels):  # a copy: its BatchNorm updates are dropped
        return ce(nnx.merge(graphdef, jax.tree.map(lambda v: v, state))(images, train=True), labels)

    mh = invariance.mh_augment(rng, x, y, loss_fn=sampler_loss, space=space, num_steps=2)
    losses = ce(model(jnp.concatenate([x, mh.images]), train=True), jnp.concatenate([y, y]))
    clean, aug = losses[: x.shape[0]], losses[x.shape[0] :]
    gamma = model.gamma.get_value()
    model.gamma.set_value(
        invariance.dual_update(gamma, aug.mean(), epsilon=EPSILON, dual_lr=DUAL_LR)
    )
    counts = jnp.zeros(space.num_ops).at[mh.op_index].add(1.0) / x.shape[0]
    metrics = {"gamma": gamma, "aug_loss": aug.mean(), "accept": mh.accept_rate.mean()}
    metrics.update({f"op_{n}": counts[i] for i, n in enumerate(space.op_names)})
    return invariance.primal_dual_objective(clean, aug, gamma), metrics


workdir = tempfile.mkdtemp()
result = train(
    workdir=workdir,
    model=Net(),
    tx=optax.adam(3e-3),
    loss_fn=loss_fn,
    train_batch_fn=lambda step: batch_at_step(train_set, step, global_batch_size=BATCH, seed=0),
    global_batch_size=BATCH,
    loop=LoopConfig(num_steps=STEPS, log_every=5, checkpoint_every=STEPS, progress=False),
    mesh=make_mesh({"data": -1}),
    seed=0,
)
recs = [r for r in read_metrics(workdir) if "train/loss" in r]
print(f"final γ {float(result.state.rest['gamma'][...]):.3f}")""",
    ),
    (
        "code",
        """%matplotlib inline
# (the harness saved its curves with matplotlib's Agg backend; switch back to inline plots)
steps = [r["step"] for r in recs]
freq = np.array([[r[f"train/op_{n}"] for n in space.op_names] for r in recs])
fig, (ax_ops, ax_dual) = plt.subplots(1, 2, figsize=(13, 4))
shown = [i for i in range(space.num_ops) if i not in space.excluded_ops]
ax_ops.stackplot(steps, freq[:, shown].T, labels=[space.op_names[i] for i in shown])
ax_ops.axhline(0.5, color="k", lw=0.5)
ax_ops.set_xlabel("step")
ax_ops.set_ylabel("share of final MH states")
ax_ops.set_ylim(0, 1)
ax_ops.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
ax_dual.plot(steps, [r["train/gamma"] for r in recs], label="γ")
ax_dual.plot(steps, [r["train/aug_loss"] for r in recs], label="augmented loss")
ax_dual.plot(steps, [r["train/accept"] for r in recs], label="acceptance rate")
ax_dual.axhline(EPSILON, color="gray", ls="--", lw=1, label="ε")
ax_dual.set_xlabel("step")
ax_dual.legend(fontsize=8)
fig.tight_layout()""",
    ),
    (
        "markdown",
        """A uniform proposal would give each of the 13 ops a share of 1/13 ≈ 0.077 of the final
states; a share above that marks an op whose outputs the current model finds harder (higher
loss). In this one-minute run the model is still far from fitting the digits, so the candidate
losses are similar, the acceptance rate stays near 1 and the shares stay close to uniform; the
experiment `experiments/augment_small_data` (variant `invariance`) logs the same `mh_op_*`
shares over a longer run. Below, eight training digits and the transformation each chain ends
on, scored by the trained model.""",
    ),
    (
        "code",
        """model = result.model()
x = jnp.asarray(train_set["image"][:8])
y = jnp.asarray(train_set["label"][:8])
mh = invariance.mh_augment(
    jax.random.key(7),
    x,
    y,
    loss_fn=lambda images, labels: ce(model(images, train=False), labels),
    space=space,
    num_steps=2,
)
fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for i in range(8):
    axes[0, i].imshow(x[i])
    axes[0, i].set_title(f"label {int(y[i])}", fontsize=8)
    axes[1, i].imshow(mh.images[i])
    level = int(mh.level[i])
    sign = "+" if level < 31 else "-"
    axes[1, i].set_title(
        f"{space.op_names[int(mh.op_index[i])]} {sign}{level % 31}\\nloss {float(mh.loss[i]):.2f}",
        fontsize=7,
    )
    axes[0, i].axis("off")
    axes[1, i].axis("off")
fig.tight_layout()""",
    ),
]


if __name__ == "__main__":
    write(CELLS, "01_augmentations.ipynb", "augment")
