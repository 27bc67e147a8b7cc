"""Invariance-constrained augmentation: the transformation space the MCMC sampler moves over
(see :mod:`augpar.augment.invariance`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

ApplyFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TransformSpace:
    """A finite set of transformations ``(op_index, level)`` for the MH sampler.

    Attributes:
      apply_fn: ``apply_fn(image[H, W, C], op_index: int32[], level: int32[]) -> image[H, W, C]``
        on ONE image with traced indices; must keep shape and dtype.
      num_ops: ops are ``0 .. num_ops-1``.
      num_levels: levels are ``0 .. num_levels-1``.
      excluded_ops: op indices the proposal never draws (e.g. identity, as in ``daug``).
      op_names: optional names for reports and plots, ``len == num_ops``.
    """

    apply_fn: ApplyFn
    num_ops: int
    num_levels: int
    excluded_ops: tuple[int, ...] = ()
    op_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if not callable(self.apply_fn):
            raise ValueError(f"apply_fn must be callable; got {self.apply_fn!r}.")
        if not isinstance(self.num_ops, int) or self.num_ops < 1:
            raise ValueError(f"num_ops must be a positive int; got {self.num_ops!r}.")
        if not isinstance(self.num_levels, int) or self.num_levels < 1:
            raise ValueError(f"num_levels must be a positive int; got {self.num_levels!r}.")
        bad = [o for o in self.excluded_ops if not 0 <= o < self.num_ops]
        if bad:
            raise ValueError(
                f"excluded_ops must lie in 0..{self.num_ops - 1}; got {tuple(self.excluded_ops)}."
            )
        if not self.allowed_ops:
            raise ValueError(
                f"excluded_ops {tuple(self.excluded_ops)} leave no op out of {self.num_ops}."
            )
        if self.op_names is not None and len(self.op_names) != self.num_ops:
            raise ValueError(
                f"op_names must have num_ops={self.num_ops} entries; got {len(self.op_names)}."
            )

    @property
    def allowed_ops(self) -> tuple[int, ...]:
        """The op indices the proposal draws from, in increasing order."""
        return tuple(o for o in range(self.num_ops) if o not in set(self.excluded_ops))


def trivial_augment_space(
    *,
    num_magnitude_bins: int = 31,
    fill: float | tuple[float, ...] | None = 0,
    interpolation: str = "nearest",
    include_identity: bool = False,
) -> TransformSpace:
    """The default space: TrivialAugment-Wide ops from ``augpar.augment.policies``.

    A level ``l ∈ [0, 2·num_magnitude_bins)`` encodes magnitude bin ``l mod num_magnitude_bins``
    and sign ``+1`` for ``l < num_magnitude_bins``, else ``-1``. A uniform level is therefore a
    uniform bin with a fair random sign, i.e. exactly TrivialAugment-Wide's draw (unsigned ops
    ignore the sign, so both halves are the same transform and the target is unaffected).
    As in ``daug`` the identity op is excluded from the proposal unless ``include_identity``.

    Args:
      num_magnitude_bins: bins of the magnitude grid (31 as torchvision).
      fill: fill value(s) in [0, 255] of the geometric ops (None: torchvision's default).
      interpolation: ``"nearest"`` or ``"bilinear"``.
      include_identity: let the proposal draw the identity op.

    Returns:
      A :class:`TransformSpace` over uint8 images ``[H, W, C]``.
    """
    from augpar.augment import policies  # imported lazily: policies depends on ops

    if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 1:
        raise ValueError(f"num_magnitude_bins must be a positive int; got {num_magnitude_bins!r}.")
    names = tuple(policies.TRIVIAL_AUGMENT_OPS)
    bins = num_magnitude_bins

    def apply_fn(image, op_index, level):
        level = jnp.asarray(level, jnp.int32)
        magnitude_bin = level % bins
        sign = jnp.where(level < bins, 1, -1).astype(jnp.int32)
        return policies.apply_op(
            image,
            jnp.asarray(op_index, jnp.int32),
            magnitude_bin,
            num_magnitude_bins=bins,
            fill=fill,
            interpolation=interpolation,
            sign=sign,
        )

    identity = tuple(i for i, n in enumerate(names) if n.lower() == "identity")
    return TransformSpace(
        apply_fn=apply_fn,
        num_ops=len(names),
        num_levels=2 * bins,
        excluded_ops=() if include_identity else identity,
        op_names=names,
    )
