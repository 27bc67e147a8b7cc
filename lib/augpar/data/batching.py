"""Step-indexed batching of in-memory arrays: the batch is a pure function of (seed, step).

Training order: epoch ``e = step // steps_per_epoch`` visits the examples in the permutation
drawn from ``numpy.random.default_rng([seed, e])``; step ``k`` of the epoch takes the ``k``-th
block of ``global_batch_size`` indices of that permutation (drop remainder: the last
``n % global_batch_size`` indices of each epoch's permutation are not visited in that epoch, and
``steps_per_epoch = n // global_batch_size``). Host ``p`` of ``P`` takes the ``p``-th contiguous
block of ``global_batch_size // P`` rows of the global batch, so the hosts' shards are disjoint,
their concatenation in host order is the global batch, and a resumed run sees exactly the batches
an uninterrupted run would (nothing depends on iteration history).

Evaluation (``iterate_eval``): every example exactly once, in order, in fixed-size batches; the
last batch is zero-padded and a boolean ``"mask"`` marks the real rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

import numpy as np

__all__ = ["ArrayDataset", "batch_at_step", "epoch_permutation", "iterate_eval", "num_examples"]


def num_examples(arrays: Mapping[str, np.ndarray]) -> int:
    """The common leading dimension of ``arrays``; ValueError when empty or inconsistent."""
    if not arrays:
        raise ValueError("arrays must hold at least one array, got an empty mapping")
    sizes = {
        key: int(np.shape(value)[0]) if np.ndim(value) else -1 for key, value in arrays.items()
    }
    if len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise ValueError(f"all arrays need the same leading dimension, got {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError("arrays hold 0 examples")
    return n


def _check_hosts(process_index: int, process_count: int) -> None:
    if process_count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index must be in [0, {process_count}), got {process_index} "
            f"(process_count={process_count})"
        )


def _check_global_batch(global_batch_size: int, process_count: int, n: int | None) -> None:
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by process_count "
            f"{process_count}"
        )
    if n is not None and global_batch_size > n:
        raise ValueError(
            f"global_batch_size {global_batch_size} is larger than the dataset ({n} examples)"
        )


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    perm.setflags(write=False)
    return perm


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The visiting order of epoch ``epoch``: a permutation of ``range(n)``, int64 ``[n]``."""
    if seed < 0 or epoch < 0 or n < 1:
        raise ValueError(f"need seed >= 0, epoch >= 0, n >= 1; got {seed=}, {epoch=}, {n=}")
    return _permutation(int(seed), int(epoch), int(n))


def batch_at_step(
    arrays: Mapping[str, np.ndarray],
    step: int,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    shuffle: bool = True,
) -> dict[str, np.ndarray]:
    """This host's share of the global training batch of ``step``.

    Args:
      arrays: name → array ``[n, ...]`` (same ``n`` for all).
      step: training step, ``>= 0`` (epochs follow each other without end).
      global_batch_size: rows of the global batch (all hosts together); ``<= n`` and divisible by
        ``process_count``.
      seed: non-negative seed of the per-epoch permutations.
      process_index: this host's index in ``[0, process_count)``.
      process_count: number of hosts.
      shuffle: False visits ``0 .. n-1`` in order in every epoch.

    Returns:
      name → array ``[global_batch_size // process_count, ...]`` (copies, same dtypes).
    """
    n = num_examples(arrays)
    _check_hosts(process_index, process_count)
    _check_global_batch(global_batch_size, process_count, n)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    steps_per_epoch = n // global_batch_size
    epoch, position = divmod(int(step), steps_per_epoch)
    local = global_batch_size // process_count
    start = position * global_batch_size + process_index * local
    if shuffle:
        idx = epoch_permutation(seed, epoch, n)[start : start + local]
    else:
        idx = np.arange(start, start + local)
    return {key: np.asarray(value)[idx] for key, value in arrays.items()}


def iterate_eval(
    arrays: Mapping[str, np.ndarray],
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields every example once, in order, in fixed-size batches with a ``"mask"`` entry.

    Args:
      arrays: name → array ``[n, ...]``; must not contain the key ``"mask"``.
      batch_size: **global** rows per batch (all hosts together), divisible by
        ``process_count``. May exceed ``n`` (one padded batch).
      process_index, process_count: this host and the number of hosts. Every host yields the
        same number of batches, ``ceil(n / batch_size)``; global batch ``b`` covers examples
        ``[b * batch_size, (b + 1) * batch_size)`` and host ``p`` takes the ``p``-th contiguous
        block of ``batch_size // process_count`` of them.

    Yields:
      name → array ``[batch_size // process_count, ...]``, rows past the end zero-filled, plus
      ``"mask"``: bool ``[batch_size // process_count]``, True for real examples.
    """
    n = num_examples(arrays)
    if "mask" in arrays:
        raise ValueError(f"arrays must not contain the key 'mask', got keys {sorted(arrays)}")
    _check_hosts(process_index, process_count)
    _check_global_batch(batch_size, process_count, None)
    local = batch_size // process_count
    num_batches = -(-n // batch_size)
    for b in range(num_batches):
        start = b * batch_size + process_index * local
        stop = min(start + local, n)
        real = max(0, stop - start)
        batch = {}
        for key, value in arrays.items():
            value = np.asarray(value)
            rows = np.zeros((local,) + value.shape[1:], value.dtype)
            if real:
                rows[:real] = value[start:stop]
            batch[key] = rows
        mask = np.zeros((local,), bool)
        mask[:real] = True
        batch["mask"] = mask
        yield batch


class ArrayDataset:
    """Random-access training batches of in-memory arrays: ``ds[step]`` = ``batch_at_step``.

    Args: as ``batch_at_step`` (validated once here).

    Attributes:
      num_examples: ``n``.
      steps_per_epoch: ``n // global_batch_size``.
      local_batch_size: ``global_batch_size // process_count``.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        shuffle: bool = True,
    ):
        self.num_examples = num_examples(arrays)
        _check_hosts(process_index, process_count)
        _check_global_batch(global_batch_size, process_count, self.num_examples)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.arrays = {key: np.asarray(value) for key, value in arrays.items()}
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.shuffle = shuffle
        self.steps_per_epoch = self.num_examples // global_batch_size
        self.local_batch_size = global_batch_size // process_count

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        return batch_at_step(
            self.arrays,
            step,
            global_batch_size=self.global_batch_size,
            seed=self.seed,
            process_index=self.process_index,
            process_count=self.process_count,
            shuffle=self.shuffle,
        )

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields the batches of steps ``start_step, start_step + 1, ...`` without end."""
        step = start_step
        while True:
            yield self[step]
            step += 1
