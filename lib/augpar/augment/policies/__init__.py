"""Batched, jit-able RandAugment, TrivialAugment (Wide) and AugMix on uint8 images.

Papers: Cubuk, Zoph, Shlens & Le, "RandAugment" (CVPR-W 2020); Müller & Hutter,
"TrivialAugment" (ICCV 2021); Hendrycks et al., "AugMix" (ICLR 2020).

Semantics follow torchvision v2 (``RandAugment``, ``TrivialAugmentWide``, ``AugMix``): the same
op lists in the same order, the same float32 magnitude tables and the same per-op pixel
semantics (``augpar.augment.ops``), so ``apply_op`` matches torchvision's own per-op application
bit for bit. Unlike torchvision, every image of the batch gets its own draw of op, sign and (for
TrivialAugment/AugMix) magnitude, and AugMix draws chain depths and mixing weights per image.

Cost. Under ``vmap`` a ``lax.switch`` over 14 ops would evaluate all 14. Instead each drawn op
is folded, through per-image parameter tables (``tables``), into three stages: one affine warp
(identity for colour ops), one blend ``x * r + d * (1 - r)`` with a per-image degenerate (zero,
gray, mean gray or smoothed), and one per-channel 256-entry lookup table (posterize, solarize,
autocontrast, equalize or identity). Exactly one stage is active per image and layer, and
``gating`` runs each expensive stage only on the images that drew it (fixed-size buffers, with
an exact whole-batch fallback when a buffer would overflow).

Randomness. ``sample_ops`` draws the per-image parameters (a pure function of the key), the
apply path consumes them; tests check op frequencies, sign balance and magnitude bins there.

Modules: ``tables`` (op lists, magnitude and stage-parameter tables), ``apply`` (``apply_op``,
``sample_ops``, ``apply_ops``), ``gating`` (the batch-level gated layer), ``randaugment``
(``rand_augment``, ``trivial_augment_wide``), ``augmix``.
"""

from augpar.augment.policies.apply import OpDraw, apply_op, apply_ops, sample_ops
from augpar.augment.policies.augmix import augmix, augmix_js_loss, augmix_weights
from augpar.augment.policies.gating import GATE_SIGMAS
from augpar.augment.policies.randaugment import rand_augment, trivial_augment_wide
from augpar.augment.policies.tables import (
    AUGMIX_OPS,
    RAND_AUGMENT_OPS,
    TRIVIAL_AUGMENT_OPS,
    _tables,  # noqa: F401 - the tests read the stage tables
    magnitude_table,
)

__all__ = [
    "AUGMIX_OPS",
    "GATE_SIGMAS",
    "RAND_AUGMENT_OPS",
    "TRIVIAL_AUGMENT_OPS",
    "OpDraw",
    "apply_op",
    "apply_ops",
    "augmix",
    "augmix_js_loss",
    "augmix_weights",
    "magnitude_table",
    "rand_augment",
    "sample_ops",
    "trivial_augment_wide",
]
