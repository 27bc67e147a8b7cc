"""The model wrapper and one jit-able loss per augmentation variant of the experiment.

Every loss has the harness's signature ``loss_fn(model, batch, rng) -> (loss, metrics)``; the
augmentation runs on the device inside it, drawn from ``rng`` (``fold_in(seed key, step)``), so
a resumed run repeats the same draws. Batches hold uint8 images ``[B, H, W, C]`` and int labels
``[B]``; the coreset variant's batches add ``sub_image [M, H, W, C]``, ``sub_label [M]`` and
``sub_weight [M]``.

Variant kinds (``VARIANT_KINDS``):

- ``none``: clean images (plus the config's base augmentation, e.g. CIFAR crop + flip).
- ``rand_augment`` / ``trivial_augment``: every image replaced by its RandAugment (N ops at bin
  ``magnitude`` of 31) / TrivialAugment-Wide draw (``augpar.augment.policies``).
- ``mixup_cutmix``: per batch, CutMix with probability ``switch_prob``, else mixup (the timm /
  DeiT recipe), soft targets into the cross-entropy.
- ``invariance``: Hounie et al.'s primal–dual step: an independent MH chain per image over the
  TrivialAugment-Wide space with target ∝ loss, loss ``mean ℓ(x) + γ·mean ℓ(x_mh)``, then
  ``γ ← max(0, γ + η(mean ℓ(x_mh) − ε))``. γ lives in the model as a non-parameter variable
  (:class:`DualVariable`), so the harness carries and checkpoints it like BatchNorm statistics.
- ``coreset``: Liu & Mirzasoleiman: the clean batch of the full data plus a batch of the weighted
  coreset, augmented with ``coreset.policy``; one forward pass over both, loss
  ``(Σ ℓ_clean + Σ w·ℓ_aug) / (B + M)`` (the reference code's concatenation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from augpar.augment import invariance, mix, ops, policies
from augpar.augment.coreset import coreset_loss, gradient_proxy
from augpar.train import classification_loss

VARIANT_KINDS = (
    "none",
    "rand_augment",
    "trivial_augment",
    "mixup_cutmix",
    "invariance",
    "coreset",
)

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]


class DualVariable(nnx.Variable):
    """A Lagrange multiplier: model state that is neither trained by the optimizer nor a
    BatchNorm statistic (it lands in ``TrainState.rest`` and in every checkpoint)."""


class Classifier(nnx.Module):
    """The network plus, for the invariance variant, the dual variable γ (scalar, starts at 0).

    Args:
      net: ``net(images float [B, H, W, C], train=bool) -> logits [B, K]``.
      with_dual: hold γ.
    """

    def __init__(self, net: nnx.Module, *, with_dual: bool = False):
        self.net = net
        self.gamma = DualVariable(jnp.zeros((), jnp.float32)) if with_dual else None

    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        return self.net(normalize(images), train=train)


def variant_kind(name: str) -> tuple[str, float | None]:
    """``"coreset_30"`` -> ``("coreset", 0.3)``; other names are their own kind.

    Raises:
      ValueError: for an unknown name or a coreset percentage outside 1..100.
    """
    if name.startswith("coreset_"):
        pct = name.removeprefix("coreset_")
        if not pct.isdigit() or not 1 <= int(pct) <= 100:
            raise ValueError(f"Coreset variant {name!r} must be coreset_<1..100>.")
        return "coreset", int(pct) / 100.0
    if name not in VARIANT_KINDS or name == "coreset":
        raise ValueError(
            f"Unknown variant {name!r}; allowed: {[k for k in VARIANT_KINDS if k != 'coreset']} "
            "and coreset_<percent>."
        )
    return name, None


def normalize(images: jax.Array) -> jax.Array:
    """uint8 (or float on the 0..255 scale, e.g. mixup output) ``[B, H, W, C]`` -> float32 in
    [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def _crop_flip(key: jax.Array, images: jax.Array, *, padding: int, flip: bool) -> jax.Array:
    """CIFAR's standard augmentation per image: pad + random crop (+ horizontal flip)."""
    b, h, w, _ = images.shape
    k_crop, k_flip = jax.random.split(key)

    def one(kc, kf, image):
        image = ops.random_crop(kc, image, (h, w), padding=padding)
        return ops.random_flip_left_right(kf, image) if flip else image

    return jax.vmap(one)(jax.random.split(k_crop, b), jax.random.split(k_flip, b), images)


def make_base_augment(config: ml_collections.ConfigDict) -> AugmentFn:
    """The augmentation every variant gets first: ``"none"`` or ``"crop_flip"`` (pad 4)."""
    base = config.augment.base
    if base == "none":
        return lambda key, images: images
    if base == "crop_flip":
        return functools.partial(_crop_flip, padding=4, flip=True)
    if base == "crop":
        return functools.partial(_crop_flip, padding=4, flip=False)
    raise ValueError(f"augment.base must be 'none', 'crop' or 'crop_flip'; got {base!r}.")


def make_policy(name: str, config: ml_collections.ConfigDict) -> AugmentFn:
    """``(key, uint8 [B, H, W, C]) -> uint8 [B, H, W, C]`` for ``rand_augment`` or
    ``trivial_augment``, with the config's magnitudes and fill."""
    a = config.augment
    if name == "rand_augment":
        return functools.partial(
            policies.rand_augment, num_ops=a.ra_num_ops, magnitude=a.ra_magnitude, fill=a.fill
        )
    if name == "trivial_augment":
        return functools.partial(policies.trivial_augment_wide, fill=a.fill)
    raise ValueError(f"policy must be 'rand_augment' or 'trivial_augment'; got {name!r}.")


def per_example_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy per example ``[B]`` for int labels ``[B]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def make_loss_fn(kind: str, config: ml_collections.ConfigDict, *, num_classes: int):
    """The harness loss ``(model: Classifier, batch, rng) -> (loss, metrics)`` of a variant."""
    base = make_base_augment(config)
    a = config.augment

    if kind in ("none", "rand_augment", "trivial_augment"):
        policy = None if kind == "none" else make_policy(kind, config)

        def logits_fn(model, batch, rng):
            k_base, k_aug = jax.random.split(rng)
            x = base(k_base, batch["image"])
            if policy is not None:
                x = policy(k_aug, x)
            return model(x, train=True)

        return classification_loss(logits_fn)

    if kind == "mixup_cutmix":
        ce = classification_loss(lambda model, batch, rng: model(batch["image"], train=True))

        def loss_fn(model, batch, rng):
            k_base, k_switch, k_mix, k_cut = jax.random.split(rng, 4)
            x, y = base(k_base, batch["image"]), batch["label"]
            xm, ym = mix.mixup(k_mix, x, y, num_classes=num_classes, alpha=a.mixup_alpha)
            xc, yc = mix.cutmix(k_cut, x, y, num_classes=num_classes, alpha=a.cutmix_alpha)
            use_cut = jax.random.bernoulli(k_switch, a.switch_prob)
            images = jnp.where(use_cut, xc.astype(jnp.float32), xm)
            soft = jnp.where(use_cut, yc, ym)
            return ce(model, {"image": images, "label": soft}, rng)

        return loss_fn

    if kind == "invariance":
        return _invariance_loss(config, base)

    if kind == "coreset":
        policy = make_policy(config.coreset.policy, config)
        reduction = config.coreset.reduction

        def loss_fn(model, batch, rng):
            k_base, k_sub, k_aug = jax.random.split(rng, 3)
            x, y = base(k_base, batch["image"]), batch["label"]
            xs = policy(k_aug, base(k_sub, batch["sub_image"]))
            logits = model(jnp.concatenate([x, xs], axis=0), train=True)
            losses = per_example_ce(logits, jnp.concatenate([y, batch["sub_label"]], axis=0))
            b = x.shape[0]
            weights = batch["sub_weight"].astype(jnp.float32)
            loss = coreset_loss(losses[:b], losses[b:], weights, reduction=reduction)
            metrics = {
                "accuracy": _accuracy(logits[:b], y),
                "clean_loss": jnp.mean(losses[:b]),
                "aug_loss": jnp.sum(weights * losses[b:]) / jnp.sum(weights),
            }
            return loss, metrics

        return loss_fn

    raise ValueError(f"Unknown variant kind {kind!r}; allowed: {VARIANT_KINDS}.")


def _invariance_loss(config: ml_collections.ConfigDict, base: AugmentFn):
    inv = config.invariance
    space = invariance.trivial_augment_space(fill=config.augment.fill)
    op_names = space.op_names
    allowed = space.allowed_ops

    def loss_fn(model, batch, rng):
        if model.gamma is None:
            raise ValueError("the invariance variant needs Classifier(with_dual=True).")
        k_base, k_mh = jax.random.split(rng)
        x, y = base(k_base, batch["image"]), batch["label"]
        graphdef, net_state = nnx.split(model.net)

        def sampler_loss(images, labels):
            # A fresh copy of the network: in train mode it normalises with the candidate
            # batch's statistics (as the reference code) but its BatchNorm updates are dropped.
            net = nnx.merge(graphdef, jax.tree.map(lambda v: v, net_state))
            return per_example_ce(net(normalize(images), train=inv.sampler_train_mode), labels)

        mh = invariance.mh_augment(
            k_mh, x, y, loss_fn=sampler_loss, space=space, num_steps=inv.mh_steps
        )
        b = x.shape[0]
        logits = model(jnp.concatenate([x, mh.images], axis=0), train=True)
        losses = per_example_ce(logits, jnp.concatenate([y, y], axis=0))
        clean, aug = losses[:b], losses[b:]
        gamma = model.gamma.get_value()
        loss = invariance.primal_dual_objective(clean, aug, gamma)
        model.gamma.set_value(
            invariance.dual_update(gamma, jnp.mean(aug), epsilon=inv.epsilon, dual_lr=inv.dual_lr)
        )
        metrics = {
            "accuracy": _accuracy(logits[:b], y),
            "clean_loss": jnp.mean(clean),
            "aug_loss": jnp.mean(aug),
            "gamma": gamma,
            "accept_rate": jnp.mean(mh.accept_rate),
        }
        counts = jnp.zeros((space.num_ops,), jnp.float32).at[mh.op_index].add(1.0) / b
        for i in allowed:
            metrics[f"mh_op_{op_names[i]}"] = counts[i]
        return loss, metrics

    return loss_fn


def make_eval_fn():
    """``(model, batch) -> sums`` with the network in eval mode (running BatchNorm averages)."""
    from augpar.train import classification_eval

    return classification_eval(lambda model, batch: model(batch["image"], train=False))


def make_proxy_fn(*, use_features: bool):
    """Eval-mode gradient proxies ``softmax − onehot`` (optionally ``⊗`` pooled features) per
    example, for the coreset selection: ``(model, batch) -> {"proxy": [B, E]}``."""

    def proxy_fn(model, batch):
        x = normalize(batch["image"])
        if use_features:
            h = model.net.features(x, train=False)
            logits = model.net.head(h).astype(jnp.float32)
            return {"proxy": gradient_proxy(logits, batch["label"], features=h)}
        return {"proxy": gradient_proxy(model.net(x, train=False), batch["label"])}

    return proxy_fn
