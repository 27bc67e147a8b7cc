"""pLSTM 2D layer on small token grids: ``method="masked"`` against ``"dense"`` and
``"state_passing"``, forward+backward through ``PLSTM2DLayer`` (the vision models' hot path).

Prints one JSON object per case: ``{"bench", "case", "ours", "ours_s", "baseline",
"baseline_s", "ratio", "peak_bytes", "baseline_peak_bytes", "compile_s", "baseline_compile_s",
"loadavg"}``; ``ratio`` = baseline_s / ours_s. Median of ``--repeats`` timed runs after a
warm-up, ours and the baseline alternated. ``peak_bytes``: XLA-planned temp bytes.

    python -m experiments.benchmarks.plstm_layer                  # 8x8 and 16x16 tokens
    python -m experiments.benchmarks.plstm_layer --grids 8 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from augpar.plstm.layers import PLSTM2DLayer


def _compiled(method: str, batch: int, grid: int, dim: int, heads: int):
    layer = PLSTM2DLayer(dim, num_heads=heads, method=method, chunk_size=8, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(layer)
    x = jax.random.normal(jax.random.key(0), (batch, grid, grid, dim))

    def loss(params, x):
        return jnp.sum(jnp.tanh(nnx.merge(graphdef, params)(x)))

    t = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
    seconds = time.perf_counter() - t
    mem = compiled.memory_analysis()
    temp = int(mem.temp_size_in_bytes) if mem is not None else None
    return compiled, (params, x), seconds, temp


def _time(compiled, args) -> float:
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="8,16", help="token grid sides, comma-separated")
    parser.add_argument("--baselines", default="dense,state_passing")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for grid in (int(g) for g in args.grids.split(",")):
        ours = _compiled("masked", args.batch, grid, args.dim, args.heads)
        for baseline in args.baselines.split(","):
            base = _compiled(baseline, args.batch, grid, args.dim, args.heads)
            _time(ours[0], ours[1]), _time(base[0], base[1])  # warm-up
            t_ours, t_base = [], []
            for _ in range(args.repeats):
                t_ours.append(_time(ours[0], ours[1]))
                t_base.append(_time(base[0], base[1]))
            ours_s, base_s = statistics.median(t_ours), statistics.median(t_base)
            record = {
                "bench": "plstm_layer",
                "case": f"{grid}x{grid} tokens, batch {args.batch}, dim {args.dim}, "
                f"{args.heads} heads, fwd+bwd",
                "ours": "masked",
                "ours_s": round(ours_s, 5),
                "baseline": baseline,
                "baseline_s": round(base_s, 5),
                "ratio": round(base_s / ours_s, 3),
                "peak_bytes": ours[3],
                "baseline_peak_bytes": base[3],
                "compile_s": round(ours[2], 2),
                "baseline_compile_s": round(base[2], 2),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
