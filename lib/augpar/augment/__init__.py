"""Augmentations on device: torchvision-exact uint8 ops and batched RandAugment-style policies."""

from augpar.augment import ops as ops
from augpar.augment import policies as policies
