"""Test configuration: 8 CPU devices and strict rank promotion, set before JAX initialises."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_collection_modifyitems(config, items):
    import pytest

    on_accelerator = jax.default_backend() in ("gpu", "tpu")
    skip_gpu = pytest.mark.skip(reason="needs a GPU/TPU; this machine runs JAX on CPU")
    for item in items:
        if "gpu" in item.keywords and not on_accelerator:
            item.add_marker(skip_gpu)
