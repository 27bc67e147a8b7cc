"""RandAugment and TrivialAugment-Wide on a batch, an independent draw per image."""

import jax
from jaxtyping import Array, UInt8

from augpar.augment.policies.apply import _check_batch, _check_common, apply_ops, sample_ops
from augpar.augment.policies.tables import RAND_AUGMENT_OPS, TRIVIAL_AUGMENT_OPS


def rand_augment(
    key: jax.Array,
    images: UInt8[Array, "b h w c"],
    *,
    num_ops: int = 2,
    magnitude: float = 9,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    magnitude_scale: str = "torchvision",
) -> UInt8[Array, "b h w c"]:
    """RandAugment with an independent op and sign draw per image and layer.

    Args:
      key: PRNG key.
      images: uint8 ``[B, H, W, C]``, C in {1, 3}.
      num_ops: layers applied in sequence (N), >= 0.
      magnitude: "torchvision": bin index in ``[0, num_magnitude_bins)`` into torchvision's
        tables (default 9 of 31, i.e. 30 % of the range). "big_vision": the TF/big_vision level
        (nominally 0..10, not clipped): rotate 3L deg, shear 0.03L, translate 10L px, enhance
        factor 0.18L + 0.1 unsigned, posterize int(0.4L) bits, solarize threshold int(25.6L).
        The op list and pixel semantics stay torchvision's (no Invert/Cutout/SolarizeAdd, TF's
        contrast bug not reproduced).
      num_magnitude_bins: number of bins ("torchvision" scale).
      fill: None, a number or per-channel numbers in [0, 255] (torchvision's default None equals
        0 for nearest).
      interpolation: "nearest" or "bilinear".
      magnitude_scale: "torchvision" or "big_vision".

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, num_magnitude_bins)
    if not isinstance(num_ops, int) or num_ops < 0:
        raise ValueError(f"num_ops must be an int >= 0, got {num_ops!r}")
    if magnitude_scale == "torchvision":
        if int(magnitude) != magnitude or not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(
                f"magnitude must be an int in [0, {num_magnitude_bins - 1}] for the torchvision "
                f"scale, got {magnitude}"
            )
        space, level, bin_, bins = "rand_augment", None, int(magnitude), num_magnitude_bins
    elif magnitude_scale == "big_vision":
        if not magnitude >= 0:
            raise ValueError(f"magnitude must be >= 0 for the big_vision scale, got {magnitude}")
        space, level, bin_, bins = "big_vision", float(magnitude), 0, 1
    else:
        raise ValueError(
            f"magnitude_scale must be 'torchvision' or 'big_vision', got {magnitude_scale!r}"
        )
    draw = sample_ops(
        key,
        images.shape[0],
        num_layers=num_ops,
        num_ops=len(RAND_AUGMENT_OPS),
        num_magnitude_bins=bins,
        magnitude=bin_,
    )
    return apply_ops(
        images,
        draw,
        space=space,
        num_magnitude_bins=bins,
        fill=fill,
        interpolation=interpolation,
        level=level,
    )


def trivial_augment_wide(
    key: jax.Array,
    images: UInt8[Array, "b h w c"],
    *,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
) -> UInt8[Array, "b h w c"]:
    """TrivialAugment Wide: one op, one uniform magnitude bin and one sign per image.

    Args:
      key: PRNG key.
      images: uint8 ``[B, H, W, C]``, C in {1, 3}.
      num_magnitude_bins, fill, interpolation: as in ``rand_augment``.

    Returns:
      uint8 ``[B, H, W, C]``.
    """
    _check_batch(images)
    _check_common(interpolation, num_magnitude_bins)
    draw = sample_ops(
        key,
        images.shape[0],
        num_layers=1,
        num_ops=len(TRIVIAL_AUGMENT_OPS),
        num_magnitude_bins=num_magnitude_bins,
    )
    return apply_ops(
        images,
        draw,
        space="trivial_augment_wide",
        num_magnitude_bins=num_magnitude_bins,
        fill=fill,
        interpolation=interpolation,
    )
