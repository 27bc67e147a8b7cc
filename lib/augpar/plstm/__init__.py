"""pLSTM: parallelizable Linear Source Transition Mark networks, as pure JAX functions.

Pöppel et al., 2025 (arXiv:2506.11997). Sequences (:func:`plstm_1d`), 2D grids
(:func:`plstm_2d`, four orientations fused, ``method="dense" | "state_passing"``; for small
token grids with scalar gates :func:`plstm_2d_masked`, the path-sum matrix as an attention
mask) and general
DAGs (:func:`plstm_dag`), each with a plain reference recurrence (``*_reference``) that is its
test oracle; P-mode / D-mode gate builders; DAG structure helpers. NNX layers live in
``augpar.plstm.layers``.

Shape convention: every array has shared leading batch dims ``...`` (e.g. batch, heads), then
the sequence / grid / node / edge / link axes, then per-head feature and J axes:
q ``[..., *, DK, JQ]``, k ``[..., *, DK, JK]``, v ``[..., *, DV, JV]``,
S ``[..., *, JT, JK, JV]``, T ``[..., *, JT, JT]``, M ``[..., *, JO, JQ, JT]``,
D ``[..., *, JO, JQ, JK, JV]``, states ``[..., DK, DV, JT]``, output ``[..., *, DV, JO]``.
Scalar gates are the J = 1 case (add ``[..., None]`` axes).
"""

from augpar.plstm.dag import grid_gates_to_dag, normalize_p_mode, plstm_dag
from augpar.plstm.gates import Gates2D, d_mode, p_mode
from augpar.plstm.graph import (
    DAG,
    GridLayout,
    disjoint_union,
    grid_dag,
    is_multitree,
    make_dag,
    prune_to_multitree,
)
from augpar.plstm.grid_gating import gating_matrix_2d, plstm_2d_masked
from augpar.plstm.reference import plstm_1d_reference, plstm_2d_reference, plstm_dag_reference
from augpar.plstm.scan1d import plstm_1d
from augpar.plstm.scan2d import plstm_2d

__all__ = [
    "DAG",
    "Gates2D",
    "GridLayout",
    "d_mode",
    "gating_matrix_2d",
    "disjoint_union",
    "grid_dag",
    "grid_gates_to_dag",
    "is_multitree",
    "make_dag",
    "normalize_p_mode",
    "p_mode",
    "plstm_1d",
    "plstm_1d_reference",
    "plstm_2d",
    "plstm_2d_masked",
    "plstm_2d_reference",
    "plstm_dag",
    "plstm_dag_reference",
    "prune_to_multitree",
]
