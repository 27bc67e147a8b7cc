"""Meshes, shardings and multi-host start-up. Every mesh and sharding decision lives here."""

from augpar.parallel.distributed import initialize_distributed
from augpar.parallel.mesh import (
    AXES,
    DATA_AXES,
    batch_sharding,
    data_parallel_size,
    make_mesh,
    replicated,
    shard_batch,
    shard_params,
    tree_shardings,
    validate_global_batch,
)

__all__ = [
    "AXES",
    "DATA_AXES",
    "batch_sharding",
    "data_parallel_size",
    "initialize_distributed",
    "make_mesh",
    "replicated",
    "shard_batch",
    "shard_params",
    "tree_shardings",
    "validate_global_batch",
]
