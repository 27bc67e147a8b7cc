"""One process of a two-process CPU job (run by test_mesh.py; not a test module itself).

Usage: python distributed_worker.py PORT PROCESS_ID NUM_PROCESSES
Prints one JSON line with the globally reduced result seen by this process.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from augpar.parallel import initialize_distributed, make_mesh, shard_batch  # noqa: E402

port, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ.update(
    JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(pid)
)
assert initialize_distributed() is True
mesh = make_mesh({"data": -1})
# Each host holds rows [4*pid, 4*pid + 4) of the global batch 0..4n-1.
local = {"x": np.arange(4 * pid, 4 * pid + 4, dtype=np.float32)}
batch = shard_batch(local, mesh)
total = jax.jit(lambda b: jnp.sum(b["x"] ** 2))(batch)
print(
    json.dumps(
        {
            "process": jax.process_index(),
            "process_count": jax.process_count(),
            "global_devices": jax.device_count(),
            "mesh_data": mesh.shape["data"],
            "global_batch": int(batch["x"].shape[0]),
            "sum_sq": float(total),
        }
    ),
    flush=True,
)
jax.distributed.shutdown()
