"""CIFAR-style ResNets (He, Zhang, Ren & Sun, "Deep Residual Learning", CVPR 2016) in Flax NNX.

The CIFAR family of the paper (§4.2): a 3×3 stem convolution at full resolution, then stages of
basic blocks (two 3×3 convolutions with BatchNorm and ReLU) whose first block halves the
resolution (stride 2) from the second stage on, global average pooling and a linear classifier.
ResNet-20/32/44/56 are ``stage_sizes=(n, n, n)`` with ``widths=(16, 32, 64)`` and ``n = 3, 5, 7,
9``; the common "ResNet-18 for CIFAR" is ``stage_sizes=(2, 2, 2, 2)``,
``widths=(64, 128, 256, 512)`` (same 3×3 stem, no max-pool). A shortcut that changes shape is a
1×1 convolution with BatchNorm (the paper's option B).

BatchNorm: ``model(x, train=True)`` normalises with the batch's statistics and updates the
running averages (``nnx.BatchStat`` variables, carried by the training harness in
``TrainState.rest``); ``train=False`` uses the running averages and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["BasicBlock", "CifarResNet", "resnet18_cifar", "resnet20", "resnet_param_count"]

_kernel_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # He init


def _batch_norm(features: int, *, momentum: float, zero_scale: bool, rngs: nnx.Rngs):
    return nnx.BatchNorm(
        features,
        momentum=momentum,
        epsilon=1e-5,
        scale_init=nnx.initializers.zeros if zero_scale else nnx.initializers.ones,
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with 3×3 convolutions.

    Args:
      in_features, out_features: channels in and out.
      stride: 1 or 2 (2 halves height and width in the first convolution).
      bn_momentum: running-average momentum of BatchNorm.
      zero_init_residual: initialise the last BatchNorm scale to 0, so the block starts as its
        shortcut (Goyal et al. 2017).
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        stride: int,
        bn_momentum: float,
        zero_init_residual: bool,
        rngs: nnx.Rngs,
    ):
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2; got {stride}.")
        conv = dict(use_bias=False, kernel_init=_kernel_init, rngs=rngs)
        self.conv1 = nnx.Conv(in_features, out_features, (3, 3), strides=stride, padding=1, **conv)
        self.bn1 = _batch_norm(out_features, momentum=bn_momentum, zero_scale=False, rngs=rngs)
        self.conv2 = nnx.Conv(out_features, out_features, (3, 3), padding=1, **conv)
        self.bn2 = _batch_norm(
            out_features, momentum=bn_momentum, zero_scale=zero_init_residual, rngs=rngs
        )
        if stride != 1 or in_features != out_features:
            self.proj = nnx.Conv(
                in_features, out_features, (1, 1), strides=stride, padding=0, **conv
            )
            self.proj_bn = _batch_norm(
                out_features, momentum=bn_momentum, zero_scale=False, rngs=rngs
            )
        else:
            self.proj = None
            self.proj_bn = None

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool) -> Float[Array, "b h2 w2 d"]:
        ura = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        y = self.bn2(self.conv2(y), use_running_average=ura)
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x), use_running_average=ura)
        return jax.nn.relu(y + shortcut)


class CifarResNet(nnx.Module):
    """ResNet for small images: 3×3 stem, stages of :class:`BasicBlock`, pooling, linear head.

    Args:
      num_classes: output logits K.
      stage_sizes: blocks per stage, e.g. ``(3, 3, 3)`` for ResNet-20.
      widths: channels per stage (same length as ``stage_sizes``); the stem has ``widths[0]``.
      in_channels: image channels C.
      bn_momentum: BatchNorm running-average momentum in (0, 1).
      zero_init_residual: see :class:`BasicBlock`.
      rngs: parameter initialisation.

    Call: ``model(images [B, H, W, C] float, train: bool) -> logits [B, K]`` (float32).
    Each stage after the first halves H and W (rounding up), so H, W >= 2**(len(stages) - 1)
    is sensible; any H, W >= 1 works.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        stage_sizes: Sequence[int] = (3, 3, 3),
        widths: Sequence[int] = (16, 32, 64),
        in_channels: int = 3,
        bn_momentum: float = 0.9,
        zero_init_residual: bool = True,
        rngs: nnx.Rngs,
    ):
        stage_sizes, widths = tuple(stage_sizes), tuple(widths)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
        if not stage_sizes or len(stage_sizes) != len(widths):
            raise ValueError(
                "stage_sizes and widths must be non-empty and of equal length; got "
                f"stage_sizes={stage_sizes}, widths={widths}."
            )
        if any(int(n) != n or n < 1 for n in stage_sizes) or any(
            int(w) != w or w < 1 for w in widths
        ):
            raise ValueError(
                f"stage_sizes and widths must be positive ints; got {stage_sizes}, {widths}."
            )
        if not 0.0 < bn_momentum < 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1); got {bn_momentum}.")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int; got {in_channels!r}.")
        self.in_channels = in_channels
        self.stem = nnx.Conv(
            in_channels,
            widths[0],
            (3, 3),
            padding=1,
            use_bias=False,
            kernel_init=_kernel_init,
            rngs=rngs,
        )
        self.stem_bn = _batch_norm(widths[0], momentum=bn_momentum, zero_scale=False, rngs=rngs)
        blocks = []
        features = widths[0]
        for stage, (n, width) in enumerate(zip(stage_sizes, widths, strict=True)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(
                    BasicBlock(
                        features,
                        int(width),
                        stride=stride,
                        bn_momentum=bn_momentum,
                        zero_init_residual=zero_init_residual,
                        rngs=rngs,
                    )
                )
                features = int(width)
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(features, num_classes, rngs=rngs)
        self.num_features = features

    def features(self, x: Float[Array, "b h w c"], *, train: bool) -> Float[Array, "b d"]:
        """Pooled penultimate features ``[B, D]`` (D = ``widths[-1]``)."""
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"images must be [B, H, W, C={self.in_channels}]; got shape {tuple(x.shape)}."
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"images must be floating (normalise uint8 first); got {x.dtype}.")
        y = jax.nn.relu(self.stem_bn(self.stem(x), use_running_average=not train))
        for block in self.blocks:
            y = block(y, train=train)
        return jnp.mean(y, axis=(1, 2))

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool) -> Float[Array, "b k"]:
        return self.head(self.features(x, train=train)).astype(jnp.float32)


def resnet20(*, num_classes: int, width: int = 16, rngs: nnx.Rngs, **kwargs) -> CifarResNet:
    """ResNet-20 (0.27 M parameters at ``width=16``): 3 stages of 3 blocks, widths w, 2w, 4w."""
    return CifarResNet(
        num_classes=num_classes,
        stage_sizes=(3, 3, 3),
        widths=(width, 2 * width, 4 * width),
        rngs=rngs,
        **kwargs,
    )


def resnet18_cifar(*, num_classes: int, width: int = 64, rngs: nnx.Rngs, **kwargs) -> CifarResNet:
    """ResNet-18 for 32 px images (11.2 M parameters at ``width=64``): 4 stages of 2 blocks."""
    return CifarResNet(
        num_classes=num_classes,
        stage_sizes=(2, 2, 2, 2),
        widths=(width, 2 * width, 4 * width, 8 * width),
        rngs=rngs,
        **kwargs,
    )


def resnet_param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` entries) of ``model``."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
