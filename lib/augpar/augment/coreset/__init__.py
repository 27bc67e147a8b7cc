"""Data-efficient augmentation: weighted coresets whose augmentations stand in for the full set.

Reference: Liu & Mirzasoleiman, "Data-Efficient Augmentation for Training Neural Networks",
NeurIPS 2022; reference code ``tianyu139/data-efficient-augmentation`` (CRAIG-style selection).

Recipe (every ``R`` epochs):

1. :func:`gradient_proxy` – per example ``g_i = softmax(z_i) − onehot(y_i)`` (∂CE/∂logits,
   ``[N, K]``), optionally ``⊗ h_i`` with the penultimate features (the last-layer weight
   gradient, ``[N, K·D]``). Computed on un-augmented inputs with the model in eval mode.
2. Per class ``c``: similarities ``s_ij`` of the proxies (:func:`pairwise_similarity`), then
   greedy maximisation of the facility-location function ``F(S) = Σ_{i∈V_c} max_{j∈S} s_ij``
   (:func:`facility_location_lazy_greedy` on the host, :func:`facility_location_greedy` as a
   jit-able dense version for an accelerator).
3. Weights: ``γ_j`` = number of class members whose most similar selected element is ``j``
   (:func:`cluster_sizes`; per class they sum to the class size), then normalised to mean 1
   over the whole coreset (``Coreset.weights``), as the reference code does.
4. Training uses the full data plus the strongly augmented coreset with weights
   (:func:`coreset_loss`, :func:`make_coreset_step`).

Host vs device: selection (steps 2–3) runs once every ``R`` epochs on per-class matrices of size
``n_c × n_c``; :func:`select_coreset` does it with numpy on the host (float64, lazy greedy with a
binary heap), which costs ``O(n_c²)`` memory per class. Proxies and the train step are JAX.

Modules: ``proxies`` (step 1 and the similarities), ``facility`` (facility location and cluster
sizes), ``selection`` (budgets, :class:`Coreset`, :func:`select_coreset`, reselection schedule),
``training`` (:func:`coreset_loss`, :func:`make_coreset_step`).
"""

from augpar.augment.coreset.facility import (
    cluster_sizes,
    facility_location_greedy,
    facility_location_lazy_greedy,
    facility_location_value,
)
from augpar.augment.coreset.proxies import (
    _similarity_np,  # noqa: F401 - the tests' float64 oracle
    dataset_gradient_proxies,
    gradient_proxy,
    pairwise_similarity,
)
from augpar.augment.coreset.selection import (
    Coreset,
    class_budgets,
    maybe_reselect,
    select_coreset,
    should_reselect,
)
from augpar.augment.coreset.training import CoresetStepOutput, coreset_loss, make_coreset_step

__all__ = [
    "Coreset",
    "CoresetStepOutput",
    "class_budgets",
    "cluster_sizes",
    "coreset_loss",
    "dataset_gradient_proxies",
    "facility_location_greedy",
    "facility_location_lazy_greedy",
    "facility_location_value",
    "gradient_proxy",
    "make_coreset_step",
    "maybe_reselect",
    "pairwise_similarity",
    "select_coreset",
    "should_reselect",
]
