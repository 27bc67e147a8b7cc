"""augpar: augmented and parallel training in JAX."""

__version__ = "0.1.0"
