"""Throughput of augpar's batched augmentations against torchvision, dm-pix and augmax.

Cases (one JSON object per case on stdout, see shared CONVENTIONS):
- ``rand_augment_{S}px``: ``augpar.augment.policies.rand_augment`` (jit, batch B, per-image op
  and sign draws, num_ops=2, magnitude=9, nearest) against torchvision v2 ``RandAugment``
  applied image by image to uint8 CHW tensors, as one PyTorch data-loader worker does
  (``torch.set_num_threads(1)``). Ours uses the default strategy (``per_image`` on CPU);
  ``--with-ungated`` also times ``strategy="gated"`` (batch-level buffers, ``ours_gated_s``) and
  ``"vmap"`` (every stage on every image, ``ours_ungated_s``). Each record carries the 1-minute
  load average at its end.
- ``rotate_bilinear_{S}px``: a random angle per image in [-30, 30] degrees, bilinear: ours on
  uint8 against ``dm_pix.rotate`` and ``augmax.Rotate`` on float32 (both jit + vmap).
- ``solarize_{S}px``: threshold 128: ours on uint8 against ``dm_pix.solarize`` on float32.

Ours and the baseline alternate within one process; each figure is the median of ``--repeats``
timed runs after one warm-up (compile) run. ``ratio`` = baseline_s / ours_s (> 1: ours faster).
Missing baselines are reported with ``baseline_s: null`` and the package to install.

    python -m experiments.benchmarks.augment --sizes 32 224 --batch 256 --repeats 5
"""

import argparse
import functools
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from augpar.augment import ops, policies


def _median_alternating(fns: dict, repeats: int) -> dict:
    for fn in fns.values():
        fn()  # warm-up / compile
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _peak_bytes(jitted, *args) -> int | None:
    try:
        mem = jitted.lower(*args).compile().memory_analysis()
        return int(mem.temp_size_in_bytes + mem.output_size_in_bytes + mem.argument_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports memory
        return None


def _emit(bench, case, ours_s, baseline, baseline_s, peak, **extra):
    ratio = None if baseline_s is None else baseline_s / ours_s
    record = {
        "bench": bench,
        "case": case,
        "ours_s": ours_s,
        "baseline": baseline,
        "baseline_s": baseline_s,
        "ratio": ratio,
        "peak_bytes": peak,
        **extra,
    }
    print(json.dumps(record), flush=True)


def _images(batch, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def _rand_augment_strategy(key, images, *, strategy):
    """``rand_augment`` (2 ops, bin 9) through ``apply_ops`` with an explicit strategy."""
    draw = policies.sample_ops(
        key, images.shape[0], num_layers=2, num_ops=14, num_magnitude_bins=31, magnitude=9
    )
    return policies.apply_ops(images, draw, strategy=strategy)


def bench_rand_augment(size, batch, repeats, with_ungated=False):
    images = jnp.asarray(_images(batch, size))
    fn = jax.jit(functools.partial(policies.rand_augment, num_ops=2, magnitude=9))
    keys = iter(jax.random.split(jax.random.key(0), 10_000))
    fns = {"ours": lambda: fn(next(keys), images).block_until_ready()}
    if with_ungated:
        for strategy in ("gated", "vmap"):
            other = jax.jit(functools.partial(_rand_augment_strategy, strategy=strategy))
            fns[f"ours_{strategy}"] = lambda f=other: f(next(keys), images).block_until_ready()
    baseline = "torchvision.transforms.v2.RandAugment per image (1 thread)"
    try:
        import torch
        from torchvision.transforms import v2

        torch.set_num_threads(1)
        tv = v2.RandAugment(num_ops=2, magnitude=9)
        chw = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous()

        def run_tv():
            for img in chw:
                tv(img)

        fns["baseline"] = run_tv
        baseline += f" [torch {torch.__version__}]"
    except ImportError:
        baseline += " (missing: pip install torch torchvision)"
    t = _median_alternating(fns, repeats)
    peak = _peak_bytes(fn, jax.random.key(0), images)
    _emit(
        "augment",
        f"rand_augment_{size}px_b{batch}",
        t["ours"],
        baseline,
        t.get("baseline"),
        peak,
        ours_images_per_s=batch / t["ours"],
        baseline_images_per_s=batch / t["baseline"] if "baseline" in t else None,
        ours_gated_s=t.get("ours_gated"),
        ours_ungated_s=t.get("ours_vmap"),
        load_average_1min=os.getloadavg()[0],
    )


def bench_shared_ops(size, batch, repeats):
    images_u8 = jnp.asarray(_images(batch, size, seed=1))
    images_f = images_u8.astype(jnp.float32) / 255.0
    angles = jax.random.uniform(jax.random.key(1), (batch,), minval=-30.0, maxval=30.0)
    ours_rot = jax.jit(
        jax.vmap(lambda im, a: ops.rotate(im, a, interpolation="bilinear"), in_axes=(0, 0))
    )
    ours_sol = jax.jit(jax.vmap(lambda im: ops.solarize(im, 128.0)))
    cases = {
        "rotate_bilinear": (lambda: ours_rot(images_u8, angles).block_until_ready(), ours_rot),
        "solarize": (lambda: ours_sol(images_u8).block_until_ready(), ours_sol),
    }
    baselines = {name: {} for name in cases}
    missing = {}
    try:
        import dm_pix

        pix_rot = jax.jit(jax.vmap(lambda im, a: dm_pix.rotate(im, jnp.deg2rad(a), order=1)))
        pix_sol = jax.jit(jax.vmap(lambda im: dm_pix.solarize(im, 0.5)))
        baselines["rotate_bilinear"]["dm_pix"] = lambda: pix_rot(
            images_f, angles
        ).block_until_ready()
        baselines["solarize"]["dm_pix"] = lambda: pix_sol(images_f).block_until_ready()
    except ImportError:
        missing["dm_pix"] = "pip install dm-pix"
    try:
        import augmax

        rot = augmax.Chain(augmax.Rotate(angle_range=(-30, 30), p=1.0))
        keys = jax.random.split(jax.random.key(2), batch)
        aug_rot = jax.jit(jax.vmap(rot))
        baselines["rotate_bilinear"]["augmax"] = lambda: aug_rot(keys, images_f).block_until_ready()
    except ImportError:
        missing["augmax"] = "pip install augmax"
    for case, (ours, jitted) in cases.items():
        fns = {"ours": ours, **baselines[case]}
        t = _median_alternating(fns, repeats)
        args = (images_u8, angles) if case == "rotate_bilinear" else (images_u8,)
        peak = _peak_bytes(jitted, *args)
        names = [n for n in fns if n != "ours"]
        if not names:
            _emit(
                "augment", f"{case}_{size}px_b{batch}", t["ours"], f"missing {missing}", None, peak
            )
        for name in names:
            _emit("augment", f"{case}_{size}px_b{batch}", t["ours"], name, t[name], peak)
        for name, how in missing.items():
            if case == "rotate_bilinear" or name == "dm_pix":
                _emit(
                    "augment",
                    f"{case}_{size}px_b{batch}",
                    t["ours"],
                    f"{name} (missing: {how})",
                    None,
                    peak,
                )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-shared-ops", action="store_true")
    parser.add_argument(
        "--with-ungated",
        action="store_true",
        help="also time rand_augment with strategy gated and vmap (ungated)",
    )
    args = parser.parse_args(argv)
    for size in args.sizes:
        bench_rand_augment(size, args.batch, args.repeats, with_ungated=args.with_ungated)
        if not args.skip_shared_ops:
            bench_shared_ops(size, args.batch, args.repeats)


if __name__ == "__main__":
    main()
