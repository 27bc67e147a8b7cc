"""Invariance-constrained augmentation: MCMC worst-case transformations and dual ascent.

Reference: Hounie, Chamon, Ribeiro, "Automatic Data Augmentation via Invariance-Constrained
Learning", ICML 2023 (PMLR 202:13410); reference code ``ihounie/daug``.

The problem ``min_θ E[ℓ(f_θ(x), y)]  s.t.  E[max_g ℓ(f_θ(g·x), y)] ≤ ε`` is relaxed so that the
worst case over transformations ``g`` becomes an expectation under ``λ(g | x, y) ∝ ℓ(f_θ(g·x), y)``.
Samples of ``λ`` come from an **independent Metropolis–Hastings** chain per image whose proposal
is the TrivialAugment distribution (op and level uniform) and whose acceptance probability is
``min(1, ℓ'/ℓ)``. Training is primal–dual:

    primal:  L(θ) = mean ℓ(f_θ(x), y) + γ · mean ℓ(f_θ(x_mh), y)
    dual:    γ ← max(0, γ + η · (mean ℓ(f_θ(x_mh), y) − ε))

The pieces:
- :class:`TransformSpace` – what the sampler moves over: ``apply_fn(image, op_index, level)``
  on one image plus the grid sizes. :func:`trivial_augment_space` builds the default one from
  ``augpar.augment.policies`` (TrivialAugment-Wide ops, 31 bins, random sign folded into the
  level).
- :func:`mh_augment` – the sampler, a ``lax.scan`` over chain steps; every image has its own
  chain (the transform is ``vmap``-ed over the batch, the loss is one batched call per step).
- :func:`primal_dual_objective`, :func:`dual_update` – the two halves of a step.
- :func:`op_histogram` – counts of the sampled ops, to see which transformations the
  constraint asks for over training.
- :func:`make_primal_dual_step` – a pure step core ``(key, params, images, labels, gamma) ->
  PrimalDualOutput(loss, grads, gamma, aux, metrics)`` that an experiment wraps with its
  optimiser.

Differences from the reference code (deliberate, documented):
- The sampler's loss evaluations run under ``stop_gradient`` and their auxiliary outputs (e.g.
  BatchNorm statistics) are discarded; ``daug`` runs them in train mode and lets BatchNorm
  update from them.
- The clean and the augmented batch go through **one** forward pass (concatenated, 2B
  examples), so a model with batch statistics sees both; ``daug`` uses two passes.
"""

from augpar.augment.invariance.mcmc import MHResult, mh_augment, op_histogram
from augpar.augment.invariance.primal_dual import (
    PrimalDualOutput,
    dual_update,
    make_primal_dual_step,
    primal_dual_objective,
)
from augpar.augment.invariance.space import TransformSpace, trivial_augment_space

__all__ = [
    "MHResult",
    "PrimalDualOutput",
    "TransformSpace",
    "dual_update",
    "make_primal_dual_step",
    "mh_augment",
    "op_histogram",
    "primal_dual_objective",
    "trivial_augment_space",
]
