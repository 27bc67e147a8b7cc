"""pLSTM speed/memory benchmark: parallel forms against sequential scans, forward+backward.

Prints one JSON object per case on stdout:
``{"bench", "case", "ours", "ours_s", "baseline", "baseline_s", "ratio", "peak_bytes",
"baseline_peak_bytes", "compile_s", "baseline_compile_s", ...}``; ``ratio`` =
baseline_s / ours_s (> 1: ours faster). Times are the median of ``--repeats`` runs after a
warm-up, ours and the baseline alternated in the same process. ``peak_bytes`` is the
XLA-planned temp allocation of the compiled fwd+bwd (``memory_analysis().temp_size_in_bytes``).
A form whose planned memory exceeds ``--max-gib`` is not run; its entry says why.

Cases (batch 8, 6 heads, dk = dv = 32, all J = 1):
  1d-L:     plstm_1d (chunkwise) vs plstm_1d_reference (one lax.scan step per token).
  2d-NxN:   plstm_2d state passing vs dense (one G over the grid), and vs a sequential
            lax.scan over node anti-diagonals; four orientations fused in all three.

    python -m experiments.benchmarks.plstm                      # everything
    python -m experiments.benchmarks.plstm --cases 1d-1024,2d-16 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from augpar.plstm import Gates2D, p_mode, plstm_1d, plstm_1d_reference, plstm_2d

B, H, DK, DV = 8, 6, 32, 32
ALL_CASES = ["1d-1024", "1d-4096", "1d-16384", "2d-16", "2d-32", "2d-64", "2d-128"]


def _compile(fn, args):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t
    mem = compiled.memory_analysis()
    temp = int(mem.temp_size_in_bytes) if mem is not None else None
    return compiled, seconds, temp


def _run(compiled, args):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t


def _grad_fn(forward):
    """fwd+bwd: ``(args, w) -> d<w, forward(*args)>/d args`` (w is an argument, not a
    closed-over constant, so XLA cannot constant-fold work into the compile)."""
    return jax.grad(lambda args, w: jnp.sum(w * forward(*args)))


def _measure(named, args, repeats, max_bytes):
    """Compiles each (name, fn), then times them alternately. Returns per-name dicts."""
    out = {}
    for name, fn in named:
        compiled, cs, temp = _compile(fn, args)
        out[name] = {"compiled": compiled, "compile_s": round(cs, 3), "peak_bytes": temp}
        if temp is not None and temp > max_bytes:
            out[name]["skip"] = f"planned temp {temp / 2**30:.1f} GiB > --max-gib"
            out[name]["compiled"] = None
    live = [n for n, _ in named if out[n]["compiled"] is not None]
    for n in live:
        _run(out[n]["compiled"], args)  # warm-up
    times = {n: [] for n in live}
    for _ in range(repeats):
        for n in live:
            times[n].append(_run(out[n]["compiled"], args))
    for n in live:
        out[n]["s"] = statistics.median(times[n])
    for n in out:
        out[n].pop("compiled")
    return out


def _emit(bench, case, ours, base, res, extra):
    o, b = res[ours], res[base]
    rec = {"bench": bench, "case": case, "ours": ours, "ours_s": o.get("s"), "baseline": base,
           "baseline_s": b.get("s"), "ratio": None, "peak_bytes": o["peak_bytes"],
           "baseline_peak_bytes": b["peak_bytes"], "compile_s": o["compile_s"],
           "baseline_compile_s": b["compile_s"]}  # fmt: skip
    if o.get("s") and b.get("s"):
        rec["ratio"] = round(b["s"] / o["s"], 2)
    for who, r in (("ours", o), ("baseline", b)):
        if "skip" in r:
            rec[f"{who}_reason"] = r["skip"]
    rec.update(extra)
    rec["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(rec), flush=True)


def _gates_1d(rng, L):
    u = lambda *s: jnp.asarray(rng.standard_normal((B, H, L) + s), jnp.float32)  # noqa: E731
    S = jax.nn.sigmoid(u(1, 1, 1))
    T = jax.nn.sigmoid(u(1, 1) + 3.0)
    M = jax.nn.sigmoid(u(1, 1, 1))
    D = jax.nn.sigmoid(u(1, 1, 1, 1) - 6.0)
    q, k, v = u(DK, 1), u(DK, 1), u(DV, 1)
    return q, k, v, S, T, M, D


def bench_1d(L, repeats, max_bytes, chunk):
    rng = np.random.default_rng(0)
    args = _gates_1d(rng, L)
    w = jnp.asarray(rng.standard_normal((B, H, L, DV, 1)), jnp.float32)
    ours = _grad_fn(functools.partial(plstm_1d, chunk_size=chunk))
    base = _grad_fn(plstm_1d_reference)
    named = [("plstm_1d", ours), ("sequential_scan", base)]
    res = _measure(named, (args, w), repeats, max_bytes)
    _emit("plstm1d", f"1d-{L}", "plstm_1d", "sequential_scan", res,
          {"L": L, "chunk_size": chunk, "batch": B, "heads": H, "dk": DK, "dv": DV})  # fmt: skip


def _inputs_2d(rng, n):
    u = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)  # noqa: E731
    q, k, v = u(B, H, n, n, DK, 1), u(B, H, n, n, DK, 1), u(B, H, n, n, DV, 1)
    g = p_mode(u(B, H, 4, n, n), u(B, H, 4, n, n) + 3.0, u(B, H, 4, n, n), u(B, H, 4, n, n))
    D = jax.nn.sigmoid(u(B, H, n, n, 1, 1, 1, 1) - 6.0)
    return q, k, v, g, D


def sequential_2d(q, k, v, g: Gates2D, D, lean=False):
    """Baseline: the fused four-orientation 2D recurrence (J = 1) as one lax.scan over node
    anti-diagonals, orientations stacked into the batch. ``lean``: the same recurrence with
    the orientations one at a time (``lax.map``) and the scan step under ``jax.checkpoint``
    (the backward keeps only the carried node-diagonal states), for grids where the plain
    form does not fit in memory."""
    b, h, n = q.shape[:3]
    scale = q.shape[-2] ** -0.5

    def fl(a, o, ax):
        axes = tuple(d for d, bit in ((ax, 1), (ax + 1, 2)) if o & bit)
        return jnp.flip(a, axes) if axes else a

    per_o = lambda a: jnp.stack([fl(a[:, :, o], o, 2) for o in range(4)], 2)  # noqa: E731
    rep = lambda a: jnp.stack([fl(a, o, 2) for o in range(4)], 2)  # noqa: E731
    qo, ko, vo = rep(q[..., 0]), rep(k[..., 0]), rep(v[..., 0])  # [B, H, 4, n, n, d]
    sc = {f: per_o(getattr(g, f)).reshape(b, h, 4, n, n) for f in g._fields}
    nt = 2 * n - 1
    tt = np.arange(nt)[:, None]
    xx = np.broadcast_to(np.arange(n)[None], (nt, n))
    yy = tt - xx
    valid = jnp.asarray((yy >= 0) & (yy < n), jnp.float32)
    yc = np.clip(yy, 0, n - 1)

    def skew(a):  # [B, H, 4, n, n, ...] -> [nt, B, H, 4, n, ...]
        s = a[:, :, :, xx, yc]
        m = valid.reshape((1, 1, 1, nt, n) + (1,) * (s.ndim - 5))
        return jnp.moveaxis(s * m, 3, 0)

    xs = [skew(a) for a in (qo, ko, vo)] + [skew(sc[f]) for f in g._fields]

    def step(carry, x):
        cr, cd = carry  # [B, H, 4, n(x), DK, DV]
        qn, kn, vn, s_r, s_d, t_rl, t_du, t_dl, t_ru, m_l, m_u = x
        left = jnp.concatenate([jnp.zeros_like(cr[:, :, :, :1]), cr[:, :, :, :-1]], 3)
        up = cd
        kv = kn[..., :, None] * vn[..., None, :]
        e = lambda a: a[..., None, None]  # noqa: E731
        new_r = e(t_rl) * left + e(t_ru) * up + e(s_r) * kv
        new_d = e(t_du) * up + e(t_dl) * left + e(s_d) * kv
        h = jnp.einsum("bhoxd,bhoxdv->bhoxv", qn, e(m_l) * left + e(m_u) * up)
        return (new_r, new_d), h

    zero = jnp.zeros((b, h, 4, n) + q.shape[-2:-1] + v.shape[-2:-1], jnp.float32)
    if lean:  # orientation axis to the front, one orientation (size-1 axis) at a time
        per_o = [jnp.moveaxis(a, 3, 0)[:, :, :, :, None] for a in xs]

        @jax.checkpoint
        def one(xs_o):
            z = zero[:, :, :1]
            return jax.lax.scan(jax.checkpoint(step), (z, z), xs_o)[1]

        hs = jax.lax.map(one, per_o)  # [4, nt, B, H, 1, n, DV]
        hs = jnp.moveaxis(hs[:, :, :, :, 0], 0, 3)
    else:
        _, hs = jax.lax.scan(step, (zero, zero), xs)  # [nt, B, H, 4, n(x), DV]
    gx, gy = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    h = jnp.moveaxis(hs[gx + gy, :, :, :, gx], (0, 1), (3, 4))  # [B, H, 4, n, n, DV]
    h = sum(fl(h[:, :, o], o, 2) for o in range(4))
    direct = jnp.einsum("bhxyd,bhxy,bhxyd,bhxyv->bhxyv", q[..., 0], D[..., 0, 0, 0, 0],
                        k[..., 0], v[..., 0])  # fmt: skip
    return (scale * (h + direct))[..., None]


def bench_2d(n, repeats, max_bytes, chunk, remat=False, lean_seq=False):
    rng = np.random.default_rng(1)
    args = _inputs_2d(rng, n)
    w = jnp.asarray(rng.standard_normal((B, H, n, n, DV, 1)), jnp.float32)
    sp = functools.partial(plstm_2d, method="state_passing", chunk_size=chunk, remat=remat)
    dense = functools.partial(plstm_2d, method="dense")
    if n <= 16:  # the baseline computes the same thing
        small = jax.tree.map(lambda a: a[:1, :1], args)
        h1, h2 = jax.jit(sp)(*small), jax.jit(sequential_2d)(*small)
        np.testing.assert_allclose(np.asarray(h1), np.asarray(h2), rtol=2e-4, atol=2e-4)
    seq_name = "sequential_scan_lean" if lean_seq else "sequential_scan"
    seq = functools.partial(sequential_2d, lean=lean_seq)
    named = [("state_passing", _grad_fn(sp)), (seq_name, _grad_fn(seq))]
    # Dense G alone: N^2 floats per (batch, head, orientation) before the orientation sum.
    n2 = 1 << (n - 1).bit_length()
    dense_g = (n2 * n2) ** 2 * B * H * 4 * 4
    if dense_g <= max_bytes:
        named.append(("dense", _grad_fn(dense)))
    res = _measure(named, (args, w), repeats, max_bytes)
    if "dense" not in res:
        why = f"dense G alone needs {dense_g / 2**30:.1f} GiB > --max-gib"
        res["dense"] = {"compile_s": None, "peak_bytes": None, "skip": why}
    extra = {"grid": [n, n], "chunk_size": chunk, "remat": remat, "orientations": 4, "batch": B,
             "heads": H,
             "dk": DK, "dv": DV}  # fmt: skip
    _emit("plstm2d", f"2d-{n}x{n}", "state_passing", "dense", res, extra)
    _emit("plstm2d", f"2d-{n}x{n}", "state_passing", seq_name, res, extra)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--cases", default=",".join(ALL_CASES), help="comma list of " + ",".join(ALL_CASES)
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-gib", type=float, default=10.0, help="skip forms planning more temp")
    p.add_argument("--chunk-1d", type=int, default=32)
    p.add_argument("--chunk-2d", type=int, default=8)
    p.add_argument("--remat", action="store_true", help="2D state passing with remat=True")
    p.add_argument(
        "--lean-seq",
        action="store_true",
        help="2D sequential baseline one orientation at a time with a checkpointed step",
    )
    a = p.parse_args(argv)
    max_bytes = int(a.max_gib * 2**30)
    for case in a.cases.split(","):
        kind, size = case.split("-")
        if case not in ALL_CASES and not size.isdigit():
            sys.exit(f"unknown case {case!r}; allowed: {ALL_CASES}")
        if kind == "1d":
            bench_1d(int(size), a.repeats, max_bytes, a.chunk_1d)
        elif kind == "2d":
            bench_2d(int(size), a.repeats, max_bytes, a.chunk_2d, a.remat, a.lean_seq)
        else:
            sys.exit(f"unknown case {case!r}; allowed: {ALL_CASES}")


if __name__ == "__main__":
    main()
