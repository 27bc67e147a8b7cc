"""pLSTM vision and graph models, and the message-passing baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from augpar.models import MessagePassingGNN, PLSTMGraphModel, PLSTMVisionModel
from augpar.plstm.graph import make_dag


def _num_params(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("size,expected", [("T", 6.3e6), ("S", 23.3e6), ("B", 89.1e6)])
def test_vision_sizes_match_the_paper(size, expected):
    # The notes' counts (ImageNet: 224 px, 16 px patches, 1000 classes). Ours use full-width
    # gate projections instead of per-sub-head slices: ~2-3 % more parameters.
    model = nnx.eval_shape(
        lambda: PLSTMVisionModel(
            image_size=224, patch_size=16, num_classes=1000, size=size, rngs=nnx.Rngs(0)
        )
    )
    assert abs(_num_params(model) / expected - 1) < 0.04
    assert len(model.blocks) == 6


def test_vision_model_extrapolates_to_larger_images():
    model = PLSTMVisionModel(
        image_size=16, patch_size=4, num_classes=3, size="cpu_tiny", rngs=nnx.Rngs(0)
    )
    model.head.kernel[...] = jax.random.normal(jax.random.key(0), model.head.kernel.shape)
    apply = nnx.jit(lambda m, x: m(x))
    small = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    large = jax.random.normal(jax.random.key(2), (2, 32, 24, 3))  # 8x6 tokens vs trained 4x4
    assert apply(model, small).shape == (2, 3)
    out = apply(model, large)
    assert out.shape == (2, 3) and bool(jnp.all(jnp.isfinite(out)))
    assert model.embed.pos.shape == (4, 4, 32)  # the parameter keeps the training grid
    tokens = model.embed(large)
    assert tokens.shape == (2, 8, 6, 32)


def test_vision_model_errors():
    with pytest.raises(ValueError, match="size='XL'"):
        PLSTMVisionModel(image_size=16, patch_size=4, num_classes=2, size="XL", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not given"):
        PLSTMVisionModel(image_size=16, patch_size=4, num_classes=2, dim=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pooling='max'"):
        PLSTMVisionModel(
            image_size=16, patch_size=4, num_classes=2, size="cpu_tiny", pooling="max",
            rngs=nnx.Rngs(0),
        )  # fmt: skip


def _chain(n):
    """0 -> 1 -> ... -> n-1."""
    return make_dag(n, [(i, i + 1) for i in range(n - 1)])


def _sink_sensitivity(model, graph, n):
    """``|d logits / d x[node]|`` per node ``[N]``, with the readout at the last node only."""
    readout = jnp.zeros(n).at[n - 1].set(1.0)
    x = jax.random.normal(jax.random.key(0), (1, n, 4))

    def f(model, x):
        return model(x, graph, readout).sum()

    grad = nnx.jit(nnx.grad(f, argnums=1))(model, x)
    return np.asarray(jnp.abs(grad[0]).sum(-1))


def _nonzero_head(model):
    model.head.kernel[...] = jax.random.normal(jax.random.key(1), model.head.kernel.shape)


def test_plstm_graph_model_reaches_far_but_the_gnn_only_depth_hops():
    n = 12
    graph = _chain(n)
    plstm = PLSTMGraphModel(in_features=4, num_classes=2, dim=16, depth=2, rngs=nnx.Rngs(0))
    gnn = MessagePassingGNN(in_features=4, num_classes=2, dim=16, depth=2, rngs=nnx.Rngs(0))
    _nonzero_head(plstm), _nonzero_head(gnn)
    # One pLSTM layer already carries node 0's input along the 11-hop chain to the readout.
    assert _sink_sensitivity(plstm, graph, n)[0] > 1e-6
    # Two message-passing layers see exactly two hops upstream, nothing beyond.
    sens = _sink_sensitivity(gnn, graph, n)
    assert sens[n - 3] > 1e-6 and np.all(sens[: n - 3] == 0.0)


def test_graph_models_batch_shapes_and_pooling():
    graph = make_dag(5, [(0, 2), (1, 2), (2, 3), (2, 4), (3, 4)])
    x = jax.random.normal(jax.random.key(0), (3, 5, 4))
    for model in (
        PLSTMGraphModel(in_features=4, num_classes=7, dim=8, depth=2, rngs=nnx.Rngs(0)),
        MessagePassingGNN(in_features=4, num_classes=7, dim=8, depth=2, rngs=nnx.Rngs(0)),
    ):
        _nonzero_head(model)
        apply = nnx.jit(lambda m, x: m(x, graph))
        out = apply(model, x)
        assert out.shape == (3, 7) and bool(jnp.all(jnp.isfinite(out)))
        # Each graph in the batch is independent.
        x2 = x.at[0].set(0.0)
        np.testing.assert_allclose(
            np.asarray(apply(model, x2)[1:]), np.asarray(out[1:]), rtol=1e-5, atol=1e-6
        )
    deep = PLSTMGraphModel(in_features=4, num_classes=2, dim=8, depth=3, rngs=nnx.Rngs(0))
    assert [b.mixer.mode for b in deep.blocks] == ["P", "D", "P"]
    with pytest.raises(ValueError, match="modes='PX'"):
        PLSTMGraphModel(in_features=4, num_classes=2, modes="PX", rngs=nnx.Rngs(0))
