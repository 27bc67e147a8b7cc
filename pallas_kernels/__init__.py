"""Pallas kernels, one folder per op, each beside its pure-JAX reference (``reference.py``)."""
