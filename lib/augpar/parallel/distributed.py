"""Multi-host start-up: ``jax.distributed.initialize`` when launched as several processes."""

from __future__ import annotations

import os

import jax

# Environment variables set by launchers that run several processes of one job.
_MULTI_PROCESS_ENV = (
    ("JAX_COORDINATOR_ADDRESS", None),
    ("SLURM_NTASKS", "count"),
    ("OMPI_COMM_WORLD_SIZE", "count"),
    ("TPU_WORKER_HOSTNAMES", "list"),
)


def _launched_multi_process() -> bool:
    for name, kind in _MULTI_PROCESS_ENV:
        value = os.environ.get(name)
        if not value:
            continue
        if kind is None:
            return True
        if kind == "count" and value.isdigit() and int(value) > 1:
            return True
        if kind == "list" and len(value.split(",")) > 1:
            return True
    return False


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
) -> bool:
    """Starts JAX's multi-process runtime when this is one process of many; otherwise does nothing.

    With explicit arguments, they are passed to ``jax.distributed.initialize``. Without them, the
    environment decides: ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``), SLURM, Open MPI and multi-host TPU are detected by JAX itself. Call it
    once, before anything else touches JAX devices.

    Returns:
      True if the distributed runtime was initialised, False on a single process.
    """
    explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
    if not explicit and not _launched_multi_process():
        return False
    if explicit and (num_processes is None or process_id is None or coordinator_address is None):
        raise ValueError(
            "Pass all of coordinator_address, num_processes and process_id, or none of them; got "
            f"coordinator_address={coordinator_address!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}."
        )
    if not explicit and os.environ.get("JAX_COORDINATOR_ADDRESS"):
        coordinator_address = os.environ["JAX_COORDINATOR_ADDRESS"]
        num_processes = (
            int(os.environ["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in os.environ else None
        )
        process_id = int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
    return True
