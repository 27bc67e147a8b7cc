"""scikit-learn's handwritten digits (1,797 real 8×8 scans, 10 classes) as small RGB images.

The data ships inside scikit-learn (``sklearn.datasets.load_digits``), so nothing is downloaded.
Pixel values 0..16 (ink is high) are mapped to 0..255, upsampled **bilinearly** with half-pixel
centres and edge clamping (the convention of ``jax.image.resize(..., "linear")`` and of PIL for
upsampling), rounded to uint8 and repeated over 3 channels.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["NUM_CLASSES", "load_digits", "resize_matrix"]

NUM_CLASSES = 10


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Bilinear interpolation matrix ``[out_size, in_size]`` (half-pixel centres, edge clamp).

    Row ``i`` holds the weights of output pixel ``i`` whose centre maps to the input coordinate
    ``(i + 0.5) * in_size / out_size - 0.5``, clamped to ``[0, in_size - 1]``.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got in_size={in_size}, out_size={out_size}")
    pos = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    pos = np.clip(pos, 0.0, in_size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = pos - lo
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, np.float64)  # [1797, 8, 8], values 0..16
    labels = np.asarray(bunch.target, np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits(
    *, size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The digits as ``(train, test)``, split per class (stratified) and deterministically.

    Args:
      size: output height and width (``>= 8``; 8 returns the scans unresized).
      test_fraction: share of each class in the test split, in ``(0, 1)``; per class
        ``round(test_fraction * count)`` examples (at least 1, at most ``count - 1``).
      seed: non-negative seed of the per-class permutation that picks the test examples.

    Returns:
      Two dicts ``{"image": uint8 [N, size, size, 3], "label": int32 [N]}``; rows in the order of
      the original dataset. Train and test together hold all 1,797 examples once.
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    raw, labels = _raw()
    m = resize_matrix(8, size)
    up = np.einsum("ij,njk,lk->nil", m, raw * (255.0 / 16.0), m)  # [N, size, size]
    gray = np.clip(np.rint(up), 0, 255).astype(np.uint8)
    images = np.repeat(gray[..., None], 3, axis=-1)

    rng = np.random.default_rng(seed)
    is_test = np.zeros(labels.shape, bool)
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        k = int(np.clip(round(test_fraction * members.size), 1, members.size - 1))
        is_test[rng.permutation(members)[:k]] = True
    train = {"image": images[~is_test], "label": labels[~is_test].copy()}
    test = {"image": images[is_test], "label": labels[is_test].copy()}
    return train, test
