"""Device meshes over the named axes ``data``, ``fsdp``, ``tensor``, ``pipe`` and batch sharding.

A mesh is built once, by the experiment, from its config (``config.mesh``); library code takes
the mesh as an argument and never enumerates devices itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES: tuple[str, ...] = ("data", "fsdp", "tensor", "pipe")
# The batch dimension is split over both data-parallel axes (FSDP is data parallel for activations).
DATA_AXES: tuple[str, ...] = ("data", "fsdp")


def _mesh_sizes(config: Mapping[str, Any] | Any) -> dict[str, int]:
    """Reads axis sizes from a mapping, a ConfigDict or an object with a ``mesh`` field."""
    if hasattr(config, "mesh") and not isinstance(config, Mapping):
        config = config.mesh
    elif isinstance(config, Mapping) and "mesh" in config:
        config = config["mesh"]
    getter = config.get if hasattr(config, "get") else lambda k, d: getattr(config, k, d)
    unknown = set(config.keys() if hasattr(config, "keys") else []) - set(AXES)
    if unknown:
        raise ValueError(f"Unknown mesh axes {sorted(unknown)}; allowed axes are {list(AXES)}.")
    sizes = {}
    for name in AXES:
        value = getter(name, 1)
        if not isinstance(value, int | np.integer) or (value < 1 and value != -1):
            raise ValueError(
                f"Mesh axis {name!r} has size {value!r}; allowed: a positive int, or -1 for "
                "'all remaining devices' (at most one axis)."
            )
        sizes[name] = int(value)
    return sizes


def make_mesh(config: Mapping[str, Any] | Any, *, devices: Sequence[Any] | None = None) -> Mesh:
    """Builds a ``jax.sharding.Mesh`` with axes ``(data, fsdp, tensor, pipe)``.

    Args:
      config: a mapping or ConfigDict with integer sizes for any of ``data``, ``fsdp``, ``tensor``,
        ``pipe`` (missing axes have size 1; one axis may be -1 to take the remaining devices), or
        an object/mapping with such a ``mesh`` entry.
      devices: the devices to lay out; defaults to all global devices (``jax.devices()``).

    Returns:
      A mesh of shape ``(data, fsdp, tensor, pipe)`` with ``AxisType.Auto`` on every axis.

    Raises:
      ValueError: if the product of the sizes differs from the number of devices.
    """
    sizes = _mesh_sizes(config)
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"At most one mesh axis may be -1; got {free} in {sizes}.")
    if free:
        rest = math.prod(v for v in sizes.values() if v != -1)
        if n % rest:
            raise ValueError(
                f"Mesh {sizes}: the fixed axes multiply to {rest}, which does not divide the "
                f"{n} devices."
            )
        sizes[free[0]] = n // rest
    total = math.prod(sizes.values())
    if total != n:
        shape = " x ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(
            f"Mesh {shape} has {total} positions but there are {n} devices; the product of the "
            "axis sizes must equal the device count."
        )
    shape = tuple(sizes[a] for a in AXES)
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    """Number of ways the batch is split (product of the ``data`` and ``fsdp`` axis sizes)."""
    return math.prod(mesh.shape[a] for a in DATA_AXES if a in mesh.shape)


def validate_global_batch(global_batch_size: int, mesh: Mesh, *, process_count: int = 1) -> int:
    """Checks that a global batch splits evenly over data-parallel devices and processes.

    Returns:
      The per-process (host) batch size.

    Raises:
      ValueError: naming the batch size and the data-parallel size when they do not divide.
    """
    dp = data_parallel_size(mesh)
    if global_batch_size < 1:
        raise ValueError(f"Global batch size must be positive; got {global_batch_size}.")
    if global_batch_size % dp:
        raise ValueError(
            f"Global batch size {global_batch_size} is not divisible by the data-parallel size "
            f"{dp} (data={mesh.shape.get('data', 1)} x fsdp={mesh.shape.get('fsdp', 1)})."
        )
    if global_batch_size % process_count:
        raise ValueError(
            f"Global batch size {global_batch_size} is not divisible by the {process_count} "
            "processes."
        )
    return global_batch_size // process_count


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: leading axis split over ``(data, fsdp)``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A fully replicated sharding on ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Turns this host's share of a batch (numpy pytree) into global arrays sharded on ``mesh``.

    Each leaf has this process's rows ``[global_batch // process_count, ...]``; the result has the
    global leading dimension and is laid out by :func:`batch_sharding`.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def tree_shardings(tree: Any, rules: Any, mesh: Mesh) -> Any:
    """The ``NamedSharding`` of every leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s).

    Args:
      tree: a pytree whose leaves have ``shape``/``ndim``.
      rules: ``None`` (replicate everything) or a callable ``(path, leaf) -> PartitionSpec``.
      mesh: the mesh.
    """
    if rules is None:
        return jax.tree.map(lambda _: replicated(mesh), tree)
    if not callable(rules):
        raise ValueError(
            f"rules must be None or a callable (path, leaf) -> PartitionSpec; got {rules!r}."
        )
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, rules(path, leaf)), tree
    )


def shard_params(params: Any, rules: Any, mesh: Mesh) -> Any:
    """Places a parameter pytree on ``mesh`` by :func:`tree_shardings` of ``rules``.

    Returns:
      The same pytree with every leaf placed by its ``NamedSharding``.
    """
    return jax.device_put(params, tree_shardings(params, rules, mesh))
