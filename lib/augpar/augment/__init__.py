"""Augmentations on device: torchvision-exact uint8 ops and batched RandAugment-style policies."""

from augpar.augment import coreset as coreset
from augpar.augment import invariance as invariance
from augpar.augment import mix as mix
from augpar.augment import ops as ops
from augpar.augment import policies as policies
