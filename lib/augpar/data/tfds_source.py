"""Image classification from ``tfds.data_source`` (array_record, no TensorFlow) through grain.

The training pipeline is a random-access ``grain.MapDataset`` whose element ``step`` is this
host's share of the global batch of that step, so the data order is a pure function of
``(seed, step)`` and a resumed run reads exactly what an uninterrupted one would::

    source (tfds.data_source)            n examples, read lazily by index
      .shuffle(seed)                     one permutation per epoch (grain seeds epoch e with seed+e)
      [: n // G * G]                     drop the remainder of every epoch (drop_remainder=True)
      .repeat(num_epochs)                epochs one after another (None: without end)
      .map(standardize)                  {"image": uint8 [H, W, C], "label": int32 []}
      .random_map(random_transform)      optional, seeded per element index
      .map(transform)                    optional, per example
      .batch(G // P)                     blocks of the global stream
      [p::P]                             host p takes block p of every global batch
      .map(batch_transform)              optional, per host batch

``G`` is the global batch size, ``P`` the process count, ``p`` the process index. Host ``p`` at
step ``s`` holds the global stream's elements ``s·G + p·G/P ... s·G + (p+1)·G/P - 1``: the hosts'
batches are disjoint and, concatenated in host order, form the global batch. Only this host's
elements are read and decoded.

Works for any tfds image classification dataset with an image and an integer label feature, e.g.
``cifar10``, ``cifar100`` (``label_key="coarse_label"`` for the 20 super-classes),
``svhn_cropped``, ``mnist`` (one channel; ``grayscale_to_rgb=True`` gives three), ``imagenet2012``
(variable image sizes, so ``image_size`` is required: the shorter side is resized to
``image_size / crop_fraction`` and the centre ``image_size`` square is cropped, PIL bilinear with
antialiasing). Tests run under ``tfds.testing.mock_data``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np

__all__ = [
    "eval_iterator",
    "image_classification_dataset",
    "load_source",
    "resize_and_center_crop",
    "Standardize",
    "training_iterator",
]

Example = dict[str, Any]


def resize_and_center_crop(image: np.ndarray, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Resizes the shorter side to ``round(size / crop_fraction)`` and crops the centre square.

    Args:
      image: uint8 ``[H, W, C]`` with ``C`` in {1, 3}.
      size: output side.
      crop_fraction: in ``(0, 1]``; e.g. 0.875 for the usual ImageNet evaluation crop.

    Returns:
      uint8 ``[size, size, C]`` (bilinear, antialiased when shrinking; PIL).
    """
    from PIL import Image

    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must be [H, W, C] with C in (1, 3), got shape {image.shape}")
    if size < 1 or not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"need size >= 1 and crop_fraction in (0, 1], got {size}, {crop_fraction}")
    h, w, c = image.shape
    short = max(size, round(size / crop_fraction))
    scale = short / min(h, w)
    new_h, new_w = max(short, round(h * scale)), max(short, round(w * scale))
    if (new_h, new_w) != (h, w):
        pil = Image.fromarray(image[..., 0] if c == 1 else image)
        image = np.asarray(pil.resize((new_w, new_h), Image.BILINEAR)).reshape(new_h, new_w, c)
        h, w = new_h, new_w
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


class Standardize:
    """Maps a tfds example to ``{"image": uint8 [S, S, C], "label": int32 []}`` (picklable).

    Args:
      image_key, label_key: feature names.
      image_size: resize/crop to this side (None keeps the stored size).
      crop_fraction: see ``resize_and_center_crop``.
      grayscale_to_rgb: repeat a single channel three times.
    """

    def __init__(
        self,
        *,
        image_key: str = "image",
        label_key: str = "label",
        image_size: int | None = None,
        crop_fraction: float = 1.0,
        grayscale_to_rgb: bool = False,
    ):
        self.image_key = image_key
        self.label_key = label_key
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.grayscale_to_rgb = grayscale_to_rgb

    def __call__(self, example: Example) -> Example:
        image = np.asarray(example[self.image_key])
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {image.dtype} {image.shape}")
        if image.ndim == 2:
            image = image[..., None]
        if self.image_size is not None:
            image = resize_and_center_crop(image, self.image_size, self.crop_fraction)
        if self.grayscale_to_rgb and image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return {"image": image, "label": np.int32(example[self.label_key])}


def load_source(name: str, split: str, *, data_dir: str | None = None):
    """``tfds.data_source(name, split=split, data_dir=data_dir)`` (array_record; no TensorFlow)."""
    import tensorflow_datasets as tfds

    return tfds.data_source(name, split=split, data_dir=data_dir)


def _check_features(source, name: str, image_key: str, label_key: str, image_size: int | None):
    features = getattr(getattr(source, "dataset_info", None), "features", None)
    if features is None:
        return
    keys = list(features.keys())
    for key in (image_key, label_key):
        if key not in keys:
            raise ValueError(f"{name} has no feature {key!r}; its features are {keys}")
    shape = getattr(features[image_key], "shape", None)
    if image_size is None and shape is not None and None in tuple(shape[:2]):
        raise ValueError(
            f"{name} images have variable size {tuple(shape)}; pass image_size (e.g. 224)"
        )


def _check_common(global_batch_size, process_index, process_count, seed, image_size, crop):
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got process_index={process_index}, "
            f"process_count={process_count}"
        )
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be positive and divisible by "
            f"process_count {process_count}"
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be >= 1 or None, got {image_size}")
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop}")


def image_classification_dataset(
    name: str,
    split: str,
    *,
    global_batch_size: int,
    seed: int,
    image_size: int | None = None,
    transform: Callable[[Example], Example] | None = None,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    data_dir: str | None = None,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    random_transform: Callable[[Example, np.random.Generator], Example] | None = None,
    batch_transform: Callable[[Example], Example] | None = None,
    grayscale_to_rgb: bool = False,
    crop_fraction: float = 1.0,
    label_key: str = "label",
    source: Any = None,
) -> grain.MapDataset:
    """Random-access training batches: ``ds[step]`` is this host's batch of ``step``.

    Args:
      name, split, data_dir: passed to ``tfds.data_source`` (split slicing like ``"train[:90%]"``
        works).
      global_batch_size: ``G``, rows of the global batch; divisible by ``process_count`` and at
        most the split's size.
      seed: in ``[0, 2**32)``; shuffling and ``random_transform`` are functions of it.
      image_size: resize the shorter side and crop the centre square (required for datasets of
        variable image size such as imagenet2012).
      transform: per-example numpy function ``{"image", "label"} -> dict`` run on the host before
        batching (augmentations that need randomness: use ``random_transform``).
      shuffle: False reads every epoch in stored order.
      process_index, process_count: this host and the number of hosts.
      num_epochs: None repeats without end (``len(ds)`` is then huge); else ``len(ds)`` is the
        number of steps.
      drop_remainder: True drops the last ``n % G`` examples of every epoch's order, so batches
        never mix epochs; False concatenates the epochs (every example of every epoch is used,
        a batch may straddle two epochs; with ``num_epochs`` the last incomplete step is dropped).
      random_transform: ``f(example, rng: np.random.Generator) -> example``, the generator seeded
        from ``seed`` and the element's position in the stream (so deterministic per step).
      batch_transform: numpy function on the host batch (dict of ``[G // P, ...]`` arrays).
      grayscale_to_rgb: expand one-channel images (mnist) to three channels.
      crop_fraction: with ``image_size``: resize the shorter side to ``image_size / crop_fraction``.
      label_key: integer feature used as the label.
      source: an already opened random-access source (default: ``tfds.data_source(...)``).

    Returns:
      ``grain.MapDataset`` whose element ``step`` is ``{"image": uint8 [G // P, S, S, C],
      "label": int32 [G // P]}`` (plus what the transforms add).
    """
    _check_common(global_batch_size, process_index, process_count, seed, image_size, crop_fraction)
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
    src = load_source(name, split, data_dir=data_dir) if source is None else source
    n = len(src)
    if global_batch_size > n:
        raise ValueError(
            f"global_batch_size {global_batch_size} is larger than {name}/{split} ({n} examples)"
        )
    _check_features(src, name, "image", label_key, image_size)
    local = global_batch_size // process_count

    ds = grain.MapDataset.source(src)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if drop_remainder:
        ds = ds[: (n // global_batch_size) * global_batch_size]
    ds = ds.repeat(num_epochs)
    if num_epochs is not None:
        ds = ds[: (len(ds) // global_batch_size) * global_batch_size]
    ds = ds.map(
        Standardize(
            label_key=label_key,
            image_size=image_size,
            crop_fraction=crop_fraction,
            grayscale_to_rgb=grayscale_to_rgb,
        )
    )
    if random_transform is not None:
        ds = ds.random_map(random_transform, seed=seed)
    if transform is not None:
        ds = ds.map(transform)
    ds = ds.batch(local, drop_remainder=True)
    ds = ds[process_index::process_count]
    if batch_transform is not None:
        ds = ds.map(batch_transform)
    return ds


def training_iterator(
    dataset: grain.MapDataset,
    *,
    start_step: int = 0,
    num_threads: int = 16,
    prefetch_buffer_size: int = 64,
) -> Iterator[Example]:
    """Iterates ``dataset[start_step], dataset[start_step + 1], ...`` with grain's prefetching.

    Args:
      dataset: the output of ``image_classification_dataset``.
      start_step: first step (resume from a checkpoint's step).
      num_threads, prefetch_buffer_size: ``grain.ReadOptions`` (threads read elements ahead).

    Returns:
      An iterator of host batches, equal element by element to indexing ``dataset``.
    """
    if start_step < 0 or start_step > len(dataset):
        raise ValueError(f"start_step must be in [0, {len(dataset)}], got {start_step}")
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
    return iter(dataset[start_step:].to_iter_dataset(options))


def eval_iterator(
    name: str,
    split: str,
    *,
    batch_size: int,
    image_size: int | None = None,
    transform: Callable[[Example], Example] | None = None,
    process_index: int = 0,
    process_count: int = 1,
    data_dir: str | None = None,
    grayscale_to_rgb: bool = False,
    crop_fraction: float = 1.0,
    label_key: str = "label",
    source: Any = None,
) -> Iterator[Example]:
    """Every example of the split exactly once, in stored order, with a ``"mask"``.

    Same layout as ``augpar.data.batching.iterate_eval``: ``batch_size`` is global; every host
    yields ``ceil(n / batch_size)`` batches of ``batch_size // process_count`` rows; global batch
    ``b`` covers examples ``[b·B, (b+1)·B)`` and host ``p`` takes its ``p``-th block; rows past the
    end are zeros with ``mask`` False.

    Yields:
      ``{"image": uint8 [B // P, S, S, C], "label": int32 [B // P], "mask": bool [B // P]}``.
    """
    _check_common(batch_size, process_index, process_count, 0, image_size, crop_fraction)
    src = load_source(name, split, data_dir=data_dir) if source is None else source
    _check_features(src, name, "image", label_key, image_size)
    n = len(src)
    ds = grain.MapDataset.source(src).map(
        Standardize(
            label_key=label_key,
            image_size=image_size,
            crop_fraction=crop_fraction,
            grayscale_to_rgb=grayscale_to_rgb,
        )
    )
    if transform is not None:
        ds = ds.map(transform)
    local = batch_size // process_count
    template = None
    for b in range(-(-n // batch_size)):
        start = b * batch_size + process_index * local
        real = [ds[i] for i in range(start, min(start + local, n))]
        if template is None:
            template = real[0] if real else ds[0]
        rows = real + [_zeros_like(template)] * (local - len(real))
        batch = {key: np.stack([np.asarray(r[key]) for r in rows]) for key in template}
        mask = np.zeros((local,), bool)
        mask[: len(real)] = True
        batch["mask"] = mask
        yield batch


def _zeros_like(example: Example) -> Example:
    return {key: np.zeros_like(np.asarray(value)) for key, value in example.items()}
