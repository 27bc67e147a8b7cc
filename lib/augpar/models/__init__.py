"""Flax NNX models built from augpar's pure modules."""

from augpar.models.embed import PatchEmbed, patchify, resize_position_embedding
from augpar.models.resnet import CifarResNet, resnet18_cifar, resnet20
from augpar.models.vit import ViT

__all__ = ["PatchEmbed", "ViT", "patchify", "resize_position_embedding"]
__all__ += ["CifarResNet", "resnet18_cifar", "resnet20"]
