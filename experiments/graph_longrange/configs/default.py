"""Long-range graph task: a label set at a source node many hops upstream of the readout.

A fixed random layered DAG (``width`` source nodes, then ``num_layers`` layers of ``width``
nodes, each node with two parents in the layer above, and one sink fed by the last layer).
Each sample flags one source (feature 0) and gives every source a random bit (feature 1);
all nodes carry noise features. The label is the flagged source's bit, read out at the sink
only, ``num_layers + 1`` hops downstream. Models: the pLSTM graph model (one P- and one
D-mode pLSTM-DAG block), a message-passing GNN of the same depth (2 layers), and, for
reference, a GNN as deep as the distance (``gnn_deep``).

Variants (``--config=experiments/graph_longrange/configs/default.py:<variant>[,key=value...]``):

- ``cpu``: 6 layers (7 hops), 4096 training graphs, 300 steps of batch 64. Command::

    python -m experiments.graph_longrange.main \
        --config=experiments/graph_longrange/configs/default.py:cpu --workdir=runs/graph_longrange

  Expected: pLSTM near 100 %, the 2-layer GNN at chance (50 %: the source is out of its
  reach); the 7-layer GNN shows whether plain message passing solves it at full depth.
  Measured numbers and run times are in experiments/graph_longrange/README.md.
- ``gpu``: 48 layers (49 hops), wider graph, more steps.
- ``smoke``: a few steps on a small graph, for tests.
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
    c.models = "plstm,gnn,gnn_deep"  # comma-separated; see train.MODEL_BUILDERS

    c.data = ml_collections.ConfigDict()
    c.data.num_layers = 6  # layers after the sources; distance source -> sink = num_layers + 1
    c.data.width = 4  # nodes per layer (and number of candidate sources)
    c.data.graph_seed = 1
    c.data.num_features = 4  # flag, bit, and noise features
    c.data.noise = 1.0  # std of the noise features
    c.data.num_train = 4096
    c.data.num_eval = 1024
    c.data.train_seed = 11
    c.data.eval_seed = 12

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, pipe=1))

    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_steps = 300
    c.log_every = 25
    c.eval_every = 0
    c.checkpoint_every = 150
    c.keep_checkpoints = 2

    c.optim = adamw_cosine_config(3e-3, warmup_fraction=0.05, final_lr_fraction=1e-2)

    c.model = ml_collections.ConfigDict()
    c.model.dim = 32
    c.model.num_heads = 2
    c.model.plstm_blocks = 2  # pLSTM-DAG blocks (P then D); the GNN gets as many layers

    if variant == "gpu":
        c.data.num_layers = 48
        c.data.width = 8
        c.data.num_train = 65536
        c.data.num_eval = 4096
        c.batch_size = 256
        c.eval_batch_size = 1024
        c.num_steps = 3000
        c.log_every = 100
        c.checkpoint_every = 1000
        c.optim.lr = 1e-3
        c.model.dim = 64
        c.model.num_heads = 4
    elif variant == "smoke":
        c.models = "plstm,gnn"
        c.data.num_layers = 4
        c.data.width = 3
        c.data.num_train = 64
        c.data.num_eval = 32
        c.batch_size = 16
        c.eval_batch_size = 16
        c.num_steps = 2
        c.log_every = 1
        c.checkpoint_every = 2
        c.model.dim = 8

    apply_overrides(c, overrides)
    return c
