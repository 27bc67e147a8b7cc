"""Mesh construction, batch validation and sharding, multi-process start-up."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from augpar.parallel import (
    batch_sharding,
    data_parallel_size,
    initialize_distributed,
    make_mesh,
    shard_batch,
    shard_params,
    validate_global_batch,
)


def test_make_mesh_axes_and_free_axis():
    mesh = make_mesh({"data": 2, "fsdp": -1, "tensor": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2, "pipe": 1}
    assert data_parallel_size(mesh) == 4
    assert make_mesh({"mesh": {"data": -1}}).shape["data"] == 8


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"data": 3}, "Mesh data=3 x fsdp=1 x tensor=1 x pipe=1 has 3 positions but there are 8"),
        ({"data": 4, "tensor": 4}, "has 16 positions but there are 8 devices"),
        ({"data": -1, "fsdp": -1}, "At most one mesh axis may be -1"),
        ({"data": 3, "fsdp": -1}, "multiply to 3, which does not divide the 8 devices"),
        ({"data": 0}, "Mesh axis 'data' has size 0"),
        ({"model": 8}, r"Unknown mesh axes \['model'\]"),
    ],
)
def test_make_mesh_errors_name_the_numbers(sizes, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(sizes)


def test_global_batch_must_divide_data_parallel_size():
    mesh = make_mesh({"data": 4, "fsdp": 2})
    assert validate_global_batch(16, mesh) == 16
    with pytest.raises(
        ValueError,
        match=r"Global batch size 12 is not divisible by the data-parallel size 8 \(data=4 x",
    ):
        validate_global_batch(12, mesh)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        validate_global_batch(16, make_mesh({"data": 8}), process_count=3)


def test_shard_batch_splits_rows_over_data_axes():
    mesh = make_mesh({"data": 4, "fsdp": 2})
    x = np.arange(32, dtype=np.float32).reshape(16, 2)
    batch = shard_batch({"x": x}, mesh)
    assert batch["x"].sharding == batch_sharding(mesh)
    shards = batch["x"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape == (2, 2) for s in shards)
    np.testing.assert_array_equal(np.asarray(batch["x"]), x)


def test_shard_params_with_rules():
    mesh = make_mesh({"data": 2, "tensor": 4})
    params = {"w": jnp.ones((8, 16)), "b": jnp.ones((16,))}
    placed = shard_params(
        params,
        lambda path, x: PartitionSpec(None, "tensor") if x.ndim == 2 else PartitionSpec(),
        mesh,
    )
    assert placed["w"].sharding.spec == PartitionSpec(None, "tensor")
    assert placed["w"].addressable_shards[0].data.shape == (8, 4)
    assert shard_params(params, None, mesh)["b"].sharding.is_fully_replicated
    with pytest.raises(ValueError, match="rules must be None or a callable"):
        shard_params(params, "tensor", mesh)


def test_initialize_distributed_is_a_noop_on_one_process(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert initialize_distributed() is False
    with pytest.raises(ValueError, match="Pass all of coordinator_address"):
        initialize_distributed(coordinator_address="localhost:1234")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_form_one_global_mesh():
    """Two local processes x 2 CPU devices each: one mesh over 4 devices, one global batch."""
    worker = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(port), str(i), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    expected = float(sum(i * i for i in range(8)))
    for i, o in enumerate(outs):
        assert o == {
            "process": i,
            "process_count": 2,
            "global_devices": 4,
            "mesh_data": 4,
            "global_batch": 8,
            "sum_sq": expected,
        }
    assert jax.device_count() == 8  # this (test) process is untouched
