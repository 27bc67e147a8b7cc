"""Applying drawn per-image parameters: one op on one image, drawn layers on a batch."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, UInt8

from augpar.augment import _color, _warp, ops
from augpar.augment.policies import gating
from augpar.augment.policies.tables import (
    _SPACES,
    AUGMIX_OPS,
    RAND_AUGMENT_OPS,
    TRIVIAL_AUGMENT_OPS,
    _gather,
    _Params,
    _tables,
)

# --------------------------------------------------------------------------------------------
# Applying drawn parameters


def _apply_params(image, p: _Params, hists=None, *, interpolation: str, fill) -> jax.Array:
    """One layer on one image ``[H, W, C]``: warp, blend, LUT (each identity unless drawn).

    ``hists`` (int32 ``[C, 256]``) may be the histograms of the layer's input image: an image
    that drew a LUT op has identity warp and blend, so its LUT sees exactly that input.
    """
    warped = _warp.warp_coefficients(image, p.coeffs, interpolation=interpolation, fill=fill)
    x = _color.materialize(jnp.where(p.warp, warped, image).astype(jnp.float32))
    blended = _color.blend(x, p.blend_kind, p.ratio, p.alpha)
    x = _color.materialize(jnp.clip(blended, 0.0, 255.0)).astype(jnp.uint8)
    table = _color.build_lut(x, p.lut_kind, p.posterize_mask, p.solarize_threshold, hists=hists)
    table = _color.materialize(table.T.astype(jnp.float32)).T.astype(jnp.uint8)  # [C, 256]
    return _color.apply_lut(x, table)


def _check_common(interpolation: str, num_magnitude_bins: int) -> None:
    if interpolation not in ops.INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {ops.INTERPOLATIONS}, got {interpolation!r}"
        )
    if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 1:
        raise ValueError(f"num_magnitude_bins must be an int >= 1, got {num_magnitude_bins!r}")


def _check_batch(images) -> None:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"images must be uint8 [B, H, W, C], got shape {shape}")
    if images.dtype != jnp.uint8:
        raise ValueError(f"images must have dtype uint8, got {images.dtype}")
    if shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(shape)}")


def apply_op(
    image: UInt8[Array, "h w c"],
    op_index: int | Int[Array, ""],
    magnitude_bin: int | Int[Array, ""],
    *,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    sign: int | Int[Array, ""] | None = None,
) -> UInt8[Array, "h w c"]:
    """Apply TrivialAugmentWide op ``TRIVIAL_AUGMENT_OPS[op_index]`` at ``magnitude_bin``.

    Equals torchvision's ``TrivialAugmentWide._apply_image_or_video_transform`` for that op and
    its magnitude ``table[magnitude_bin]`` (negated when ``sign`` is negative and the op is
    signed). jit/vmap-able: ``op_index``, ``magnitude_bin`` and ``sign`` may be traced int32.

    Args:
      image: uint8 ``[H, W, C]``, C in {1, 3}.
      op_index: index into ``TRIVIAL_AUGMENT_OPS`` (0..13).
      magnitude_bin: 0..num_magnitude_bins-1.
      num_magnitude_bins: static number of bins (torchvision: 31).
      fill: None, a number or per-channel numbers in [0, 255], for pixels warped in from outside.
      interpolation: "nearest" or "bilinear".
      sign: +1 / -1 (or None = +1); ignored by unsigned ops.

    Returns:
      uint8 ``[H, W, C]``.
    """
    ops.check_image(image, channels=(1, 3))
    _check_common(interpolation, num_magnitude_bins)
    n_ops = len(TRIVIAL_AUGMENT_OPS)
    if ops._is_static(op_index) and not 0 <= int(op_index) < n_ops:
        raise ValueError(f"op_index must lie in [0, {n_ops - 1}], got {op_index}")
    if ops._is_static(magnitude_bin) and not 0 <= int(magnitude_bin) < num_magnitude_bins:
        raise ValueError(
            f"magnitude_bin must lie in [0, {num_magnitude_bins - 1}], got {magnitude_bin}"
        )
    if sign is not None and ops._is_static(sign) and int(sign) not in (-1, 1):
        raise ValueError(f"sign must be +1, -1 or None, got {sign}")
    sign = 1 if sign is None else sign
    return _apply_one(
        image,
        jnp.asarray(op_index, jnp.int32),
        jnp.asarray(magnitude_bin, jnp.int32),
        jnp.asarray(sign, jnp.int32),
        ops.fill_array(fill, image.shape[-1]),
        num_magnitude_bins=num_magnitude_bins,
        interpolation=interpolation,
    )


@functools.partial(jax.jit, static_argnames=("num_magnitude_bins", "interpolation"))
def _apply_one(image, op_index, magnitude_bin, sign, fill, *, num_magnitude_bins, interpolation):
    h, w = image.shape[0], image.shape[1]
    tables = _tables("trivial_augment_wide", TRIVIAL_AUGMENT_OPS, num_magnitude_bins, h, w, None)
    p = _gather(tables, op_index, magnitude_bin, (sign < 0).astype(jnp.int32))
    return _apply_params(image, p, interpolation=interpolation, fill=fill)


# --------------------------------------------------------------------------------------------
# Drawing


class OpDraw(NamedTuple):
    """Per-image draws for ``num_layers`` layers: each field int32 ``[num_layers, B]``."""

    op: jax.Array  # index into the op list of the policy
    magnitude_bin: jax.Array
    sign: jax.Array  # +1 or -1 (ignored by unsigned ops)


def sample_ops(
    key: jax.Array,
    batch: int,
    *,
    num_layers: int,
    num_ops: int,
    num_magnitude_bins: int,
    magnitude: int | None = None,
    max_bin: int | None = None,
) -> OpDraw:
    """Independent per-image draws of op, magnitude bin and sign.

    Args:
      key: PRNG key (split three ways; never reused).
      batch: number of images B.
      num_layers: number of ops applied in sequence (RandAugment's N).
      num_ops: size of the op list; ops are uniform over it.
      num_magnitude_bins: number of magnitude bins.
      magnitude: fixed bin for every image (RandAugment), or None for a uniform bin
        (TrivialAugment) in ``[0, max_bin)`` (default all bins; AugMix uses its severity).
      max_bin: exclusive upper bound of the uniform bin.

    Returns:
      ``OpDraw`` with fields int32 ``[num_layers, B]``; sign is -1 with probability 1/2.
    """
    key_op, key_bin, key_sign = jax.random.split(key, 3)
    shape = (num_layers, batch)
    op = jax.random.randint(key_op, shape, 0, num_ops, dtype=jnp.int32)
    if magnitude is None:
        hi = num_magnitude_bins if max_bin is None else max_bin
        bins = jax.random.randint(key_bin, shape, 0, hi, dtype=jnp.int32)
    else:
        bins = jnp.full(shape, magnitude, jnp.int32)
    sign = jnp.where(jax.random.bernoulli(key_sign, 0.5, shape), -1, 1).astype(jnp.int32)
    return OpDraw(op, bins, sign)


def apply_ops(
    images: UInt8[Array, "b h w c"],
    draw: OpDraw,
    *,
    space: str = "rand_augment",
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    level: float | None = None,
    strategy: str = "auto",
    num_drawn_ops: int | None = None,
    gate_sigmas: float = gating.GATE_SIGMAS,
) -> UInt8[Array, "b h w c"]:
    """Apply drawn layers to a batch; per image and layer one warp, one blend and one LUT.

    Each stage runs only on the images whose op uses it (``gating``); every strategy gives
    the same result bit for bit.

    Args:
      images: uint8 ``[B, H, W, C]``.
      draw: from ``sample_ops``; ``draw.op`` indexes the op list of ``space``
        (``RAND_AUGMENT_OPS``/``TRIVIAL_AUGMENT_OPS``; ``AUGMIX_OPS`` plus index 13 = identity).
      space: "rand_augment", "trivial_augment_wide", "augmix" or "big_vision".
      level: big_vision's magnitude level (only for ``space="big_vision"``).
      strategy: "per_image" (sequential map over images, a ``lax.switch`` on each image's
        op), "gated" (batch-level buffers with an exact whole-batch fallback), "vmap" (every
        stage on every image: the reference) or "auto" (per_image on CPU, gated elsewhere).
      num_drawn_ops: "gated": ops are (mostly) drawn from the first this many of the list
        (default: all); only sizes the buffers.
      gate_sigmas: "gated": buffer size in binomial standard deviations above the expected
        count of each stage's images.

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, num_magnitude_bins)
    if space not in _SPACES:
        raise ValueError(f"space must be one of {_SPACES}, got {space!r}")
    names = _space_ops(space)
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        strategy = "per_image" if jax.default_backend() == "cpu" else "gated"
    if num_drawn_ops is not None and not 1 <= num_drawn_ops <= len(names):
        raise ValueError(f"num_drawn_ops must lie in [1, {len(names)}], got {num_drawn_ops!r}")
    if draw.op.shape[0] == 0:
        return images
    return _apply_layers(
        images,
        draw,
        ops.fill_array(fill, images.shape[-1]),
        space=space,
        num_magnitude_bins=num_magnitude_bins,
        interpolation=interpolation,
        level=level,
        strategy=strategy,
        num_drawn_ops=num_drawn_ops or len(names),
        gate_sigmas=float(gate_sigmas),
    )


_STRATEGIES = ("auto", "per_image", "gated", "vmap")


def _space_ops(space: str) -> tuple[str, ...]:
    return AUGMIX_OPS + ("Identity",) if space == "augmix" else RAND_AUGMENT_OPS


@functools.partial(
    jax.jit,
    static_argnames=(
        "space",
        "num_magnitude_bins",
        "interpolation",
        "level",
        "strategy",
        "num_drawn_ops",
        "gate_sigmas",
    ),
)
def _apply_layers(
    images,
    draw,
    fill,
    *,
    space,
    num_magnitude_bins,
    interpolation,
    level,
    strategy,
    num_drawn_ops,
    gate_sigmas,
):
    """``lax.scan`` over layers; each layer runs the drawn warp, blend or LUT per image."""
    b, h, w, _ = images.shape
    tables = _tables(space, _space_ops(space), num_magnitude_bins, h, w, level)

    if strategy == "vmap":
        apply = jax.vmap(functools.partial(_apply_params, interpolation=interpolation, fill=fill))

        def layer(x, params):
            return apply(x, params, _color.batch_histograms(x))

    elif strategy == "per_image":
        gating.check_one_stage(tables)

        def layer(x, params):
            return gating.per_image_layer(x, params, interpolation=interpolation, fill=fill)

    else:
        caps = gating.capacities(tables, b, num_drawn_ops, gate_sigmas)

        def layer(x, params):
            return gating.gated_layer(x, params, caps, interpolation=interpolation, fill=fill)

    def step(x, d):
        op, bin_, sign = d
        return layer(x, _gather(tables, op, bin_, (sign < 0).astype(jnp.int32))), None

    images, _ = jax.lax.scan(step, images, tuple(draw))
    return images
