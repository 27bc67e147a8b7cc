"""Flax NNX models built from augpar's pure modules."""

from augpar.models.embed import PatchEmbed, patchify, resize_position_embedding
from augpar.models.resnet import CifarResNet, resnet18_cifar, resnet20
from augpar.models.vit import ViT

__all__ = ["PatchEmbed", "ViT", "patchify", "resize_position_embedding"]
__all__ += ["CifarResNet", "resnet18_cifar", "resnet20"]

from augpar.models.gnn import MessagePassingGNN  # noqa: E402
from augpar.models.plstm_graph import PLSTMGraphModel  # noqa: E402
from augpar.models.plstm_vision import PLSTM_VISION_SIZES, PLSTMVisionModel  # noqa: E402

__all__ += ["MessagePassingGNN", "PLSTMGraphModel", "PLSTM_VISION_SIZES", "PLSTMVisionModel"]
