"""Orbax checkpoints of a :class:`TrainState`: periodic saves, keep-last-M, resume with fallback."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: Any) -> Any:
    """Typed PRNG key arrays become their raw uint32 data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saveable(restored: Any, like: Any) -> Any:
    def back(x, ref):
        return jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x

    return jax.tree.map(back, restored, like)


def _abstract(tree: Any) -> Any:
    def leaf(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree.map(leaf, _to_saveable(tree))


class Checkpointer:
    """A thin wrapper of ``orbax.checkpoint.CheckpointManager`` for train states.

    Checkpoints live in ``<workdir>/checkpoints/<step>``. The manager keeps the last
    ``max_to_keep``. Saves are asynchronous; :meth:`close` waits for them.
    """

    def __init__(self, workdir: str, *, max_to_keep: int = 3):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1; got {max_to_keep}.")
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.workdir = os.path.abspath(workdir)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Saves ``state`` as checkpoint ``step`` (asynchronously)."""
        self.manager.save(step, args=ocp.args.StandardSave(_to_saveable(state)))

    def restore_latest(self, like: Any) -> tuple[Any, int | None]:
        """Restores the newest checkpoint that can be read, onto the structure of ``like``.

        A checkpoint that fails to restore (truncated, corrupted) is moved to
        ``<workdir>/corrupt_checkpoints/<step>`` and the previous one is tried, so that later saves
        of the same step do not collide with it.

        Returns:
          ``(state, step)``, or ``(like, None)`` when there is no readable checkpoint.
        """
        target = _abstract(like)
        for step in reversed(self.all_steps()):
            try:
                restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
            except Exception as err:  # noqa: BLE001 - any failure means "unreadable"
                log.warning(
                    "Checkpoint %d could not be restored (%s); trying an older one.", step, err
                )
                self._quarantine(step)
                continue
            log.info("Restored checkpoint %d from %s.", step, self.directory)
            return _from_saveable(restored, like), step
        return like, None

    def _quarantine(self, step: int) -> None:
        src = os.path.join(self.directory, str(step))
        dst_root = os.path.join(self.workdir, "corrupt_checkpoints")
        if jax.process_index() == 0 and os.path.exists(src):
            os.makedirs(dst_root, exist_ok=True)
            shutil.move(src, os.path.join(dst_root, str(step)))
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
