"""Boundary checks shared by the pLSTM functions: shape binding with clear ValueErrors."""

from __future__ import annotations

from collections.abc import Sequence

import jax


def bind_shapes(
    fn: str, named: Sequence[tuple[str, jax.Array | None, str]]
) -> tuple[tuple[int, ...], dict[str, int]]:
    """Checks that arrays share leading batch dims and that named trailing dims agree.

    Args:
      fn: name of the calling public function (used in error messages).
      named: ``(name, array_or_None, "DIM DIM ...")`` triples; the pattern names the
        trailing axes, everything before them is the shared batch shape. ``None`` arrays
        are skipped. Numeric tokens must match exactly.

    Returns:
      ``(batch_shape, dims)`` with the size of every named dim.
    """
    batch: tuple[int, ...] | None = None
    first = ""
    dims: dict[str, int] = {}
    origin: dict[str, str] = {}
    for name, arr, pattern in named:
        if arr is None:
            continue
        toks = pattern.split()
        shape = tuple(arr.shape)
        want = "[..., " + ", ".join(toks) + "]"
        if len(shape) < len(toks):
            raise ValueError(
                f"{fn}: {name} has shape {shape} (ndim {len(shape)}); expected {want} "
                f"with at least {len(toks)} dims"
            )
        lead = shape[: len(shape) - len(toks)]
        if batch is None:
            batch, first = lead, name
        elif lead != batch:
            raise ValueError(
                f"{fn}: {name} has shape {shape}, i.e. leading batch dims {lead} before {want}, "
                f"but {first} has leading dims {batch}; all inputs must share them"
            )
        for tok, size in zip(toks, shape[len(lead) :], strict=True):
            if tok.isdigit():
                if int(tok) != size:
                    raise ValueError(f"{fn}: {name} has shape {shape}; expected {want}")
            elif tok in dims and dims[tok] != size:
                raise ValueError(
                    f"{fn}: {name} has shape {shape} with {tok}={size}, but {origin[tok]} "
                    f"fixed {tok}={dims[tok]}; expected {name} as {want}"
                )
            else:
                dims[tok] = size
                origin.setdefault(tok, name)
    assert batch is not None
    return batch, dims


def check_power_of_two(fn: str, name: str, value: int) -> None:
    """Raises ValueError unless ``value`` is a positive power of two."""
    if not isinstance(value, int) or value < 1 or value & (value - 1):
        raise ValueError(f"{fn}: {name}={value!r}; allowed: a positive power of two (1, 2, 4, ...)")


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def check_graph_dims(fn: str, graph, dims: dict[str, int]) -> None:
    """Checks the node/edge/link axis sizes bound by :func:`bind_shapes` against a DAG."""
    for tok, want, what in (
        ("N", graph.num_nodes, "nodes"),
        ("E", graph.num_edges, "edges"),
        ("NL", graph.num_links, "line-graph links"),
    ):
        if tok in dims and dims[tok] != want:
            raise ValueError(
                f"{fn}: the inputs' {tok} axis has size {dims[tok]}, but the graph has {want} "
                f"{what}; allowed: {tok}={want}"
            )
