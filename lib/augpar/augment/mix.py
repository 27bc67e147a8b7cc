"""Batch mixing augmentations: mixup, CutMix and DualMix's EnMix / AdpMix, with soft labels.

References:
- mixup: Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
- CutMix: Yun, Han, Oh, Chun, Choe, Yoo, "CutMix: Regularization Strategy to Train Strong
  Classifiers with Localizable Features", ICCV 2019.
- DualMix (EnMix, AdpMix): Fan, Xu, Wang, Zhu, Wang, Guo, "DualMix: Unleashing the Potential of
  Data Augmentation for Online Class-Incremental Learning", arXiv 2303.07864 (2023).
- Remix (the default AdpMix label rule): Chou, Chang, Pan, Wei, Juan, "Remix: Rebalanced Mixup",
  ECCV 2020 workshops.

Every function works on a batch ``images[B, H, W, C]`` (uint8 or floating) with ``labels`` that
are either integer class ids ``[B]`` or soft targets ``[B, K]`` (rows summing to 1), is jit-able
and has static output shapes. All randomness comes from the explicit ``key``.

Returned dtypes:
- Blending functions (``mixup``, ``enmix``, ``adpmix``, ``mix_pairs``) return **float32** images
  with values on the input scale (0..255 for uint8 input, *not* rounded) when the input is uint8,
  and keep the input dtype when it is already floating.
- ``cutmix`` only pastes pixels, so it returns the input dtype unchanged (uint8 stays uint8).
- Soft labels are always float32 ``[B, K]``; each row is a convex combination of two rows that
  sum to 1, so it sums to 1 as well.

DualMix caveat: only the abstract of the DualMix paper could be read (see
``shared/research/augment.md`` §3.3). EnMix here is "augment every image with an independent
random draw, then mix pairs of augmented images and their labels with the same mixing ratio";
AdpMix is "pair each new-class (stream) sample with an old-class (replay) sample, mix the images
with λ and the labels with a *separately adjusted* ratio λ_y". The label-ratio rule is a
parameter of both; the defaults (identity for EnMix, Remix with κ=3, τ=0.5 for AdpMix) are the
documented guesses, to be replaced once the paper's rule is known.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Shaped

__all__ = [
    "LabelRatioFn",
    "adpmix",
    "cutmix",
    "enmix",
    "mix_pairs",
    "mixup",
    "mixup_label_ratio",
    "remix_label_ratio",
    "to_soft_labels",
]

Labels = Int[Array, " b"] | Float[Array, "b k"]

#: ``rule(lam_x[B], count_a[B], count_b[B]) -> lam_y[B]``: label weight of sample ``a`` given the
#: image weight ``lam_x`` of ``a`` and the (expected) class counts of the two samples' classes.
LabelRatioFn = Callable[
    [Float[Array, " b"], Float[Array, " b"], Float[Array, " b"]], Float[Array, " b"]
]

_PARTNERS = ("roll", "flip", "permutation")


# --------------------------------------------------------------------------------------------
# Validation and small helpers
# --------------------------------------------------------------------------------------------


def _check_images(images: jax.Array, name: str = "images") -> None:
    if images.ndim != 4:
        raise ValueError(
            f"{name} must have rank 4 [B, H, W, C]; got shape {tuple(images.shape)} "
            f"(rank {images.ndim})."
        )
    if not (images.dtype == jnp.uint8 or jnp.issubdtype(images.dtype, jnp.floating)):
        raise ValueError(f"{name} must be uint8 or floating; got dtype {images.dtype}.")
    if images.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image; got batch size {images.shape[0]}.")


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not alpha > 0:
        raise ValueError(f"alpha (Beta concentration) must be a number > 0; got {alpha!r}.")


def _check_partner(partner: str) -> None:
    if partner not in _PARTNERS:
        raise ValueError(f"partner must be one of {_PARTNERS}; got {partner!r}.")


def to_soft_labels(labels: Labels, num_classes: int) -> Float[Array, "b k"]:
    """Integer class ids ``[B]`` -> one-hot float32 ``[B, K]``; soft labels ``[B, K]`` -> float32.

    Args:
      labels: int ``[B]`` class ids in ``0..num_classes-1``, or floating ``[B, num_classes]``
        soft targets whose rows sum to 1. Values are traced and cannot be checked here: an
        out-of-range id becomes an all-zero row (``jax.nn.one_hot`` semantics).
      num_classes: K, a positive Python int.

    Returns:
      float32 ``[B, K]``.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
    labels = jnp.asarray(labels)
    if labels.ndim == 1 and jnp.issubdtype(labels.dtype, jnp.integer):
        return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if labels.ndim == 2 and jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape[1] != num_classes:
            raise ValueError(
                f"soft labels must have shape [B, num_classes={num_classes}]; "
                f"got {tuple(labels.shape)}."
            )
        return labels.astype(jnp.float32)
    raise ValueError(
        "labels must be integer class ids [B] or floating soft labels [B, num_classes]; got "
        f"shape {tuple(labels.shape)} with dtype {labels.dtype}."
    )


def _labels_for(images: jax.Array, labels: Labels, num_classes: int) -> jax.Array:
    soft = to_soft_labels(labels, num_classes)
    if soft.shape[0] != images.shape[0]:
        raise ValueError(
            f"labels must have one row per image: {images.shape[0]} images but "
            f"{soft.shape[0]} labels."
        )
    return soft


def _blend_dtype(dtype) -> jnp.dtype:
    return jnp.dtype(dtype) if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


def _partner_indices(key: jax.Array, batch: int, partner: str) -> Int[Array, " b"]:
    """Index of each example's mixing partner: ``roll`` (i-1, as ``jnp.roll(x, 1, 0)``),
    ``flip`` (B-1-i) or a uniformly random ``permutation``."""
    idx = jnp.arange(batch, dtype=jnp.int32)
    if partner == "roll":
        return (idx - 1) % batch
    if partner == "flip":
        return batch - 1 - idx
    return jax.random.permutation(key, batch).astype(jnp.int32)


def _sample_lam(key: jax.Array, alpha: float, batch: int, per_example: bool) -> Float[Array, " b"]:
    n = batch if per_example else 1
    lam = jax.random.beta(key, alpha, alpha, (n,), dtype=jnp.float32)
    return jnp.broadcast_to(lam, (batch,))


# --------------------------------------------------------------------------------------------
# Label-ratio rules
# --------------------------------------------------------------------------------------------


def mixup_label_ratio(
    lam_x: Float[Array, " b"], count_a: Float[Array, " b"], count_b: Float[Array, " b"]
) -> Float[Array, " b"]:
    """Plain mixup rule: the label weight equals the image weight (counts are ignored)."""
    del count_a, count_b
    return lam_x


def remix_label_ratio(*, kappa: float = 3.0, tau: float = 0.5) -> LabelRatioFn:
    """Remix rule (Chou et al. 2020): push the label towards the minority class.

    With image weight λ on sample ``a`` and class counts n_a, n_b:
    λ_y = 0 if n_a/n_b ≥ κ and λ < τ; λ_y = 1 if n_a/n_b ≤ 1/κ and 1-λ < τ; else λ_y = λ.

    Args:
      kappa: imbalance ratio threshold, ≥ 1.
      tau: image-weight threshold in [0, 1].
    """
    if not kappa >= 1:
        raise ValueError(f"kappa must be >= 1; got {kappa!r}.")
    if not 0 <= tau <= 1:
        raise ValueError(f"tau must be in [0, 1]; got {tau!r}.")

    def rule(lam_x, count_a, count_b):
        tiny = jnp.finfo(jnp.float32).tiny
        ratio = count_a / jnp.maximum(count_b, tiny)
        to_b = (ratio >= kappa) & (lam_x < tau)
        to_a = (ratio <= 1.0 / kappa) & ((1.0 - lam_x) < tau)
        return jnp.where(to_b, 0.0, jnp.where(to_a, 1.0, lam_x)).astype(lam_x.dtype)

    return rule


# --------------------------------------------------------------------------------------------
# Mixing functions
# --------------------------------------------------------------------------------------------


def mix_pairs(
    images_a: Shaped[Array, "b h w c"],
    labels_a: Labels,
    images_b: Shaped[Array, "b h w c"],
    labels_b: Labels,
    lam_x: Float[Array, " b"],
    lam_y: Float[Array, " b"],
    *,
    num_classes: int,
) -> tuple[Float[Array, "b h w c"], Float[Array, "b k"]]:
    """Generic pairwise mix: ``x = λ_x·a + (1-λ_x)·b``, ``y = λ_y·y_a + (1-λ_y)·y_b``.

    Args:
      images_a, images_b: ``[B, H, W, C]``, same shape and dtype (uint8 or floating).
      labels_a, labels_b: int ``[B]`` or soft ``[B, K]``.
      lam_x: ``[B]`` image weight of ``a`` in [0, 1].
      lam_y: ``[B]`` label weight of ``a`` in [0, 1].
      num_classes: K.

    Returns:
      ``(images [B, H, W, C], soft_labels [B, K])``; images are float32 for uint8 input, else
      the input dtype.
    """
    _check_images(images_a, "images_a")
    _check_images(images_b, "images_b")
    if images_a.shape != images_b.shape or images_a.dtype != images_b.dtype:
        raise ValueError(
            "images_a and images_b must have the same shape and dtype; got "
            f"{tuple(images_a.shape)} {images_a.dtype} and {tuple(images_b.shape)} "
            f"{images_b.dtype}."
        )
    batch = images_a.shape[0]
    for name, lam in (("lam_x", lam_x), ("lam_y", lam_y)):
        if jnp.shape(lam) != (batch,):
            raise ValueError(f"{name} must have shape [B]=({batch},); got {jnp.shape(lam)}.")
    ya = _labels_for(images_a, labels_a, num_classes)
    yb = _labels_for(images_b, labels_b, num_classes)
    dtype = _blend_dtype(images_a.dtype)
    wx = jnp.asarray(lam_x).astype(dtype).reshape(batch, 1, 1, 1)
    xa = images_a.astype(dtype)
    xb = images_b.astype(dtype)
    mixed = wx * xa + (jnp.ones((), dtype) - wx) * xb
    wy = jnp.asarray(lam_y).astype(jnp.float32).reshape(batch, 1)
    soft = wy * ya + (1.0 - wy) * yb
    return mixed, soft


def mixup(
    key: jax.Array,
    images: Shaped[Array, "b h w c"],
    labels: Labels,
    *,
    num_classes: int,
    alpha: float = 0.2,
    per_example: bool = False,
    partner: str = "roll",
) -> tuple[Float[Array, "b h w c"], Float[Array, "b k"]]:
    """Mixup: ``x = λ·x_i + (1-λ)·x_j``, ``y = λ·y_i + (1-λ)·y_j``, ``λ ~ Beta(α, α)``.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` uint8 or floating.
      labels: int ``[B]`` or soft ``[B, K]``.
      num_classes: K.
      alpha: Beta concentration (> 0).
      per_example: one λ per example (True) or one per batch (False, as big_vision/timm).
      partner: ``"roll"`` (j = i-1, big_vision/torchvision), ``"flip"`` (j = B-1-i, timm) or
        ``"permutation"`` (random).

    Returns:
      ``(images [B, H, W, C], soft_labels [B, K])``; float32 images for uint8 input.
    """
    _check_images(images)
    _check_alpha(alpha)
    _check_partner(partner)
    soft = _labels_for(images, labels, num_classes)
    k_lam, k_perm = jax.random.split(key)
    batch = images.shape[0]
    lam = _sample_lam(k_lam, alpha, batch, per_example)
    j = _partner_indices(k_perm, batch, partner)
    return mix_pairs(images, soft, images[j], soft[j], lam, lam, num_classes=num_classes)


def cutmix(
    key: jax.Array,
    images: Shaped[Array, "b h w c"],
    labels: Labels,
    *,
    num_classes: int,
    alpha: float = 1.0,
    per_example: bool = False,
    partner: str = "roll",
) -> tuple[Shaped[Array, "b h w c"], Float[Array, "b k"]]:
    """CutMix: paste a box of the partner image; label weight = the real (clipped) kept area.

    ``λ ~ Beta(α, α)``; box side ``floor(H·√(1-λ)) × floor(W·√(1-λ))`` around a uniform centre
    ``(cy, cx) ∈ [0, H) × [0, W)``, clipped to the image. The label weight of the original is
    then ``λ' = 1 - box_area / (H·W)`` of the box actually pasted.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` uint8 or floating.
      labels: int ``[B]`` or soft ``[B, K]``.
      num_classes: K.
      alpha: Beta concentration (> 0).
      per_example: independent λ and box per example (True) or one for the batch (False).
      partner: ``"roll"``, ``"flip"`` or ``"permutation"`` (see :func:`mixup`).

    Returns:
      ``(images [B, H, W, C] in the input dtype, soft_labels [B, K])``.
    """
    _check_images(images)
    _check_alpha(alpha)
    _check_partner(partner)
    soft = _labels_for(images, labels, num_classes)
    batch, height, width, _ = images.shape
    k_lam, k_y, k_x, k_perm = jax.random.split(key, 4)
    n = batch if per_example else 1
    lam = jax.random.beta(k_lam, alpha, alpha, (n,), dtype=jnp.float32)
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    cy = jax.random.randint(k_y, (n,), 0, height, dtype=jnp.int32)
    cx = jax.random.randint(k_x, (n,), 0, width, dtype=jnp.int32)
    y1 = jnp.clip(cy - cut_h // 2, 0, height)
    y2 = jnp.clip(cy - cut_h // 2 + cut_h, 0, height)
    x1 = jnp.clip(cx - cut_w // 2, 0, width)
    x2 = jnp.clip(cx - cut_w // 2 + cut_w, 0, width)
    yy = jnp.arange(height, dtype=jnp.int32).reshape(1, height, 1)
    xx = jnp.arange(width, dtype=jnp.int32).reshape(1, 1, width)
    box = (
        (yy >= y1.reshape(n, 1, 1))
        & (yy < y2.reshape(n, 1, 1))
        & (xx >= x1.reshape(n, 1, 1))
        & (xx < x2.reshape(n, 1, 1))
    )
    area = ((y2 - y1) * (x2 - x1)).astype(jnp.float32)
    lam_kept = 1.0 - area / float(height * width)
    box = jnp.broadcast_to(box, (batch, height, width))
    lam_kept = jnp.broadcast_to(lam_kept, (batch,))
    j = _partner_indices(k_perm, batch, partner)
    mixed = jnp.where(box[..., None], images[j], images)
    w = lam_kept.reshape(batch, 1)
    return mixed, w * soft + (1.0 - w) * soft[j]


def enmix(
    key: jax.Array,
    images: Shaped[Array, "b h w c"],
    labels: Labels,
    *,
    num_classes: int,
    augment_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    alpha: float = 1.0,
    per_example: bool = True,
    partner: str = "permutation",
    label_ratio_fn: Callable[[Float[Array, " b"]], Float[Array, " b"]] | None = None,
) -> tuple[Float[Array, "b h w c"], Float[Array, "b k"]]:
    """DualMix EnMix: mix *augmented* samples and their labels together.

    ``x̂ = A(x)`` with an independent random draw per image, then
    ``x = λ·x̂_i + (1-λ)·x̂_j`` and ``y = λ_y·y_i + (1-λ_y)·y_j`` with ``λ ~ Beta(α, α)`` and
    ``λ_y = label_ratio_fn(λ)`` (default: ``λ_y = λ``, the reading of the abstract; see the
    module docstring). In online class-incremental learning pass the concatenation of the
    stream batch and the replay batch.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` uint8 or floating.
      labels: int ``[B]`` or soft ``[B, K]``.
      num_classes: K.
      augment_fn: ``augment_fn(key, images[B,H,W,C]) -> images[B,H,W,C]`` drawing independently
        per image, e.g. ``functools.partial(policies.rand_augment, num_ops=2, magnitude=9)``.
        ``None`` means ``images`` are already augmented views.
      alpha: Beta concentration (> 0).
      per_example: one λ per example (default) or per batch.
      partner: ``"permutation"`` (default), ``"roll"`` or ``"flip"``.
      label_ratio_fn: ``lam[B] -> lam_y[B]`` in [0, 1]; ``None`` = identity.

    Returns:
      ``(images [B, H, W, C], soft_labels [B, K])``; float32 images for uint8 input.
    """
    _check_images(images)
    _check_alpha(alpha)
    _check_partner(partner)
    soft = _labels_for(images, labels, num_classes)
    k_aug, k_lam, k_perm = jax.random.split(key, 3)
    augmented = images if augment_fn is None else augment_fn(k_aug, images)
    if augmented.shape != images.shape:
        raise ValueError(
            f"augment_fn must keep the shape {tuple(images.shape)}; it returned "
            f"{tuple(augmented.shape)}."
        )
    batch = images.shape[0]
    lam = _sample_lam(k_lam, alpha, batch, per_example)
    lam_y = lam if label_ratio_fn is None else label_ratio_fn(lam)
    j = _partner_indices(k_perm, batch, partner)
    return mix_pairs(augmented, soft, augmented[j], soft[j], lam, lam_y, num_classes=num_classes)


def adpmix(
    key: jax.Array,
    images: Shaped[Array, "b h w c"],
    labels: Labels,
    buffer_images: Shaped[Array, "m h w c"],
    buffer_labels: Int[Array, " m"] | Float[Array, "m k"],
    *,
    num_classes: int,
    class_counts: Float[Array, " k"],
    alpha: float = 1.0,
    per_example: bool = True,
    label_ratio_fn: LabelRatioFn | None = None,
) -> tuple[Float[Array, "b h w c"], Float[Array, "b k"]]:
    """DualMix AdpMix: mix new-class samples with old-class (replay) samples, adjusted labels.

    Each stream sample ``i`` is paired with a buffer sample ``m_i`` drawn uniformly (with
    replacement) from the replay batch. With ``λ ~ Beta(α, α)`` the weight of the *old* sample:
    ``x = λ·x_old + (1-λ)·x_new`` and ``y = λ_y·y_old + (1-λ_y)·y_new`` where
    ``λ_y = label_ratio_fn(λ, n_old, n_new)`` and ``n_old, n_new`` are the class counts of the
    two samples' classes (for soft labels, the label-weighted expected count).

    The default rule is Remix with κ=3, τ=0.5 (:func:`remix_label_ratio`): when the old class
    is rare relative to the new one (the usual case, few buffer slots per old class) and the
    image is mostly old, the label becomes fully old, recalibrating the boundary towards the
    minority classes. DualMix's own rule is unknown (abstract only); pass another
    ``label_ratio_fn`` to change it.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` stream (new-class) images, uint8 or floating.
      labels: int ``[B]`` or soft ``[B, K]``.
      buffer_images: ``[M, H, W, C]`` replay (old-class) images, same dtype and H, W, C.
      buffer_labels: int ``[M]`` or soft ``[M, K]``.
      num_classes: K.
      class_counts: ``[K]`` float, how many examples of each class the learner has access to
        (e.g. buffer counts for old classes, stream counts for the current task's classes).
      alpha: Beta concentration (> 0).
      per_example: one λ per pair (default) or per batch.
      label_ratio_fn: ``rule(lam, n_old, n_new) -> lam_y``; ``None`` = Remix(κ=3, τ=0.5).

    Returns:
      ``(images [B, H, W, C], soft_labels [B, K])``; float32 images for uint8 input.
    """
    _check_images(images)
    _check_images(buffer_images, "buffer_images")
    _check_alpha(alpha)
    if buffer_images.shape[1:] != images.shape[1:] or buffer_images.dtype != images.dtype:
        raise ValueError(
            "buffer_images must match images in [H, W, C] and dtype; got "
            f"{tuple(buffer_images.shape)} {buffer_images.dtype} vs {tuple(images.shape)} "
            f"{images.dtype}."
        )
    class_counts = jnp.asarray(class_counts)
    if class_counts.shape != (num_classes,):
        raise ValueError(
            f"class_counts must have shape [num_classes]=({num_classes},); got "
            f"{tuple(class_counts.shape)}."
        )
    rule = remix_label_ratio() if label_ratio_fn is None else label_ratio_fn
    new_soft = _labels_for(images, labels, num_classes)
    buf_soft = _labels_for(buffer_images, buffer_labels, num_classes)
    batch = images.shape[0]
    k_idx, k_lam = jax.random.split(key)
    idx = jax.random.randint(k_idx, (batch,), 0, buffer_images.shape[0], dtype=jnp.int32)
    old_x, old_y = buffer_images[idx], buf_soft[idx]
    lam = _sample_lam(k_lam, alpha, batch, per_example)
    counts = class_counts.astype(jnp.float32)
    lam_y = rule(lam, old_y @ counts, new_soft @ counts)
    return mix_pairs(old_x, old_y, images, new_soft, lam, lam_y, num_classes=num_classes)
