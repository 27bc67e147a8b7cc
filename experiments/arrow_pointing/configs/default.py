"""Arrow-pointing extrapolation (pLSTM paper, §4): train at one resolution, test at double.

Variants (``--config=experiments/arrow_pointing/configs/default.py:<variant>[,key=value...]``):

- ``cpu``: 64 px train / 128 px extrapolation, 8 px patches, 6144 generated training images,
  small models. Command (this is ``make run``)::

    python -m experiments.arrow_pointing.main \
        --config=experiments/arrow_pointing/configs/default.py:cpu --workdir=runs/arrow_pointing

  Run time and accuracies measured on the 2-core CPU machine are in the README results table.
- ``gpu``: the paper's setting: 192 px train / 384 px extrapolation, 16 px patches, 100k
  training images, 50 epochs of batch 128, AdamW (wd 0.05), 1 warm-up epoch then cosine,
  clip 1.0, ViT-T (dim 192, 12 blocks). Reference (validation, 5 seeds, the paper's code):
  ViT-T 91.21 / 70.56, pLSTM 97.25 / 77.54 at 192 / 384 px.
- ``smoke``: a few steps on tiny images, for tests.
"""

from __future__ import annotations

import ml_collections

from experiments.configs_common import adamw_cosine_config, apply_overrides, parse_arg

VARIANTS = ("cpu", "gpu", "smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant, overrides = parse_arg(arg, variants=VARIANTS, default="cpu")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.seed = 0
    c.models = "vit,plstm"  # comma-separated list of models to train one after another

    c.data = ml_collections.ConfigDict()
    c.data.resolution = 64  # training resolution; `_ext` splits are rendered at twice this
    c.data.num_train = 0  # 0: a fresh image for every example (num_steps * batch_size of them)
    c.data.num_eval = 1024  # per eval split (val and val_ext)
    c.data.train_seed = 43
    c.data.eval_splits = ("val", "val_ext")
    c.data.lazy_train = False  # True: render training images on demand (grain) instead of in RAM
    c.data.scaling = "unit"  # the paper's [0, 1], white 1 | symmetric ([-1, 1]) | ink (white 0)
    c.data.stroke = "fixed"  # 2-3 px strokes at every scale | scaled (shrink with the geometry)

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, pipe=1))

    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_epochs = 0  # used when num_steps is 0: num_epochs * num_train // batch_size
    c.num_steps = 1500
    # Per-model step counts (0: num_steps): each model gets about the same CPU time.
    c.model_steps = ml_collections.ConfigDict(dict(vit=2000, plstm=0))
    c.log_every = 25
    c.eval_every = 0  # 0: evaluate at the end only
    c.checkpoint_every = 200
    c.keep_checkpoints = 3

    c.optim = adamw_cosine_config(1e-3, warmup_fraction=0.05, final_lr_fraction=1e-3)

    c.vit = ml_collections.ConfigDict()
    c.vit.patch_size = 8
    c.vit.dim = 64
    c.vit.depth = 4
    c.vit.num_heads = 4
    c.vit.mlp_ratio = 2.0
    # sincos2d at cpu scale: the learned one (init std 0.02, 2 % of a patch's content vector)
    # must grow ~25x before attention can use position; the paper's budget allows that, ours
    # does not (README probes). learned (bicubic-resized) | sincos2d | none
    c.vit.position_embedding = "sincos2d"
    c.vit.pool = "cls"  # cls | gap
    c.vit.head_init = "small"  # small (the paper's SmallInit) | zero

    # pLSTM vision model (augpar.models.PLSTMVisionModel): depth counts PD blocks (2 layers each).
    c.plstm = ml_collections.ConfigDict()
    c.plstm.patch_size = 8
    c.plstm.dim = 64
    c.plstm.num_heads = 4
    c.plstm.depth = 1
    c.plstm.mlp_ratio = 2.0
    c.plstm.mlp_multiple = 16
    c.plstm.pooling = "corners"
    c.plstm.method = "masked"  # 8x8 training grid: path-sum G + masked attention is cheapest
    c.plstm.chunk_size = 8
    c.plstm.head_init = "small"

    if variant == "gpu":
        c.data.resolution = 192
        c.data.num_train = 100_000
        c.data.num_eval = 5120
        c.data.lazy_train = True
        c.batch_size = 128
        c.eval_batch_size = 512
        c.num_epochs = 50
        c.num_steps = 0
        c.model_steps.update(vit=0, plstm=0)
        c.log_every = 100
        c.eval_every = 781 * 5
        c.checkpoint_every = 781
        c.optim.lr = 3e-4
        c.optim.warmup_fraction = 1 / 50
        c.vit.update(patch_size=16, dim=192, depth=12, num_heads=3, mlp_ratio=4.0,
                     position_embedding="learned")  # fmt: skip
        # pLSTM-T (dim 192, 6 PD blocks); the paper's APE config overrides num_heads to 6.
        # 12x12 tokens at 192 px (24x24 at 384 px) are padded exactly inside plstm_2d.
        c.plstm.update(
            patch_size=16, dim=192, num_heads=6, depth=6, mlp_ratio=4.0, mlp_multiple=64,
            method="state_passing", chunk_size=16,
        )  # fmt: skip
    elif variant == "smoke":
        c.data.resolution = 32
        c.data.num_train = 64
        c.data.num_eval = 32
        c.batch_size = 16
        c.eval_batch_size = 16
        c.num_steps = 2
        c.model_steps.update(vit=0, plstm=0)
        c.log_every = 1
        c.checkpoint_every = 2
        c.vit.update(patch_size=8, dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
        c.models = "vit"
        c.plstm.update(dim=16, num_heads=2, depth=1, mlp_ratio=2.0, mlp_multiple=16)

    apply_overrides(c, overrides)
    return c
