"""Write the golden torchvision fixtures for tests/augment (uint8 ops and policy op tables).

Produced with torch 2.14.1 and torchvision 0.29.1 on CPU (Python 3.11), in a separate venv so
the project venv stays light:

    python3 -m venv /tmp/tv-venv
    /tmp/tv-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
    /tmp/tv-venv/bin/python tests/augment/make_fixtures.py

It writes tests/augment/fixtures/torchvision_ops.npz (inputs, one output per op case, the case
list as JSON) and tests/augment/fixtures/torchvision_policies.npz (the magnitude tables of
RandAugment / TrivialAugmentWide / AugMix and, for sampled (op, bin, sign) triples, torchvision's
own ``_apply_image_or_video_transform`` output). Images are HWC in the files; torchvision sees
CHW. The tests read these files and never import torch.
"""

import json
import math
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).parent / "fixtures"


def make_images(h: int, w: int, seed: int) -> np.ndarray:
    """Three uint8 HWC images: noise, smooth sinusoids, and one with a constant channel."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    smooth = np.stack(
        [
            127.5 + 120 * np.sin(xx / 3.0 + yy / 5.0),
            127.5 + 120 * np.cos(xx / 4.0 - yy / 2.5),
            40 + 0.9 * (xx * 255 / w),
        ],
        axis=-1,
    ).astype(np.uint8)
    const = rng.integers(30, 220, (h, w, 3), dtype=np.uint8)
    const[..., 1] = 77
    return np.stack([noise, smooth, const])


def op_cases() -> list[dict]:
    """(op, kwargs) cases; kwargs use torchvision's names and are JSON serialisable."""
    cases = [{"op": "invert", "kwargs": {}}]
    cases += [{"op": "posterize", "kwargs": {"bits": b}} for b in range(9)]
    cases += [{"op": "solarize", "kwargs": {"threshold": t}} for t in (0.0, 128.0, 178.5, 255.0)]
    cases += [{"op": "equalize", "kwargs": {}}, {"op": "autocontrast", "kwargs": {}}]
    for name, key in (
        ("adjust_brightness", "brightness_factor"),
        ("adjust_saturation", "saturation_factor"),
        ("adjust_contrast", "contrast_factor"),
        ("adjust_sharpness", "sharpness_factor"),
    ):
        cases += [{"op": name, "kwargs": {key: f}} for f in (0.0, 0.1, 0.73, 1.27, 1.9)]
    for interp in ("nearest", "bilinear"):
        for fill in (None, 128):
            for angle in (9.0, -27.0, 30.0, 135.0, 90.0):
                kw = {"angle": angle, "interpolation": interp, "fill": fill}
                cases.append({"op": "rotate", "kwargs": kw})
            for s in (0.09, -0.3, 0.99):
                sh = math.degrees(math.atan(s))
                for shear in ([sh, 0.0], [0.0, sh]):
                    kw = {
                        "angle": 0.0,
                        "translate": [0, 0],
                        "scale": 1.0,
                        "shear": shear,
                        "interpolation": interp,
                        "fill": fill,
                        "center": [0, 0],
                    }
                    cases.append({"op": "affine", "kwargs": kw})
            for t in ([7, 0], [-5, 0], [0, 6], [0, -13]):
                kw = {
                    "angle": 0.0,
                    "translate": t,
                    "scale": 1.0,
                    "shear": [0.0, 0.0],
                    "interpolation": interp,
                    "fill": fill,
                }
                cases.append({"op": "affine", "kwargs": kw})
            kw = {
                "angle": 17.0,
                "translate": [3, -2],
                "scale": 1.2,
                "shear": [5.0, -8.0],
                "interpolation": interp,
                "fill": fill,
            }
            cases.append({"op": "affine", "kwargs": kw})
    return cases


def main() -> None:
    import torch
    import torchvision
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    OUT.mkdir(exist_ok=True)
    # Non-square (catches transposition bugs, skips the rot90 fast path) and square (takes it).
    images = {"rect": make_images(20, 26, 0), "square": make_images(24, 24, 1)}
    cases = op_cases()
    arrays = {f"input_{k}": v for k, v in images.items()}
    for i, case in enumerate(cases):
        kwargs = dict(case["kwargs"])
        if "interpolation" in kwargs:
            kwargs["interpolation"] = v2.InterpolationMode(kwargs["interpolation"])
        for k, img in images.items():
            x = torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()
            outs = [getattr(F, case["op"])(xi, **kwargs) for xi in x]
            arrays[f"case{i}_{k}"] = torch.stack(outs).permute(0, 2, 3, 1).numpy()
    arrays["cases_json"] = np.asarray(json.dumps(cases))
    arrays["versions"] = np.asarray(
        f"torch {torch.__version__}; torchvision {torchvision.__version__}"
    )
    np.savez_compressed(OUT / "torchvision_ops.npz", **arrays)

    # Policies: magnitude tables and torchvision's per-op application for sampled triples.
    pol = {}
    rng = np.random.default_rng(2)
    img = images["rect"][1]
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    h, w = img.shape[:2]
    samples = []
    for policy_name, cls, bins in (
        ("rand_augment", v2.RandAugment, 31),
        ("trivial_augment_wide", v2.TrivialAugmentWide, 31),
        ("augmix", v2.AugMix, 10),
    ):
        t = cls(interpolation=v2.InterpolationMode.NEAREST) if policy_name != "augmix" else cls()
        space = t._AUGMENTATION_SPACE
        names = list(space)
        pol[f"{policy_name}_ops"] = np.asarray(json.dumps(names))
        for name in names:
            mags = space[name][0](bins, h, w)
            if mags is not None:
                pol[f"{policy_name}_table_{name}"] = mags.numpy()
        for j in range(40):
            op = names[j % len(names)]
            b = int(rng.integers(bins))
            sign = int(rng.choice([-1, 1]))
            mags, signed = space[op][0](bins, h, w), space[op][1]
            mag = 0.0 if mags is None else float(mags[b]) * (sign if signed else 1)
            for interp in ("nearest", "bilinear"):
                out = t._apply_image_or_video_transform(
                    x,
                    op,
                    mag,
                    interpolation=v2.InterpolationMode(interp),
                    fill={torchvision.tv_tensors.Image: None, "others": None},
                )
                key = f"apply{len(samples)}"
                pol[key] = out.permute(1, 2, 0).numpy()
                samples.append(
                    {
                        "policy": policy_name,
                        "op": op,
                        "bin": b,
                        "sign": sign,
                        "interpolation": interp,
                        "key": key,
                    }
                )
    pol["input"] = img
    pol["samples_json"] = np.asarray(json.dumps(samples))
    np.savez_compressed(OUT / "torchvision_policies.npz", **pol)
    print("wrote", sorted(p.name for p in OUT.glob("*.npz")))


if __name__ == "__main__":
    main()
