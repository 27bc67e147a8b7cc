"""CIFAR ResNet: sizes, BatchNorm train/eval semantics, a block against a hand-written
reference, data-parallel sharding and argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from augpar.models import CifarResNet, resnet18_cifar, resnet20
from augpar.models.resnet import BasicBlock, resnet_param_count
from augpar.parallel import batch_sharding, make_mesh


def _images(key, b=4, size=16, c=3):
    return jax.random.normal(jax.random.key(key), (b, size, size, c), jnp.float32)


def test_parameter_counts_match_the_published_sizes():
    # He et al. 2016, Table 6: ResNet-20 has 0.27M parameters; ResNet-18 (CIFAR stem) 11.17M.
    # Abstract initialisation (shapes only): no 11M-parameter arrays are filled.
    r20 = nnx.eval_shape(lambda: resnet20(num_classes=10, rngs=nnx.Rngs(0)))
    r18 = nnx.eval_shape(lambda: resnet18_cifar(num_classes=10, rngs=nnx.Rngs(0)))
    assert resnet_param_count(r20) == 272_474
    assert resnet_param_count(r18) == 11_173_962


def test_shapes_and_downsampling():
    model = CifarResNet(num_classes=7, stage_sizes=(1, 2, 1), widths=(4, 8, 16), rngs=nnx.Rngs(0))
    x = _images(0, b=3, size=16)
    assert model(x, train=False).shape == (3, 7)
    assert model(x, train=False).dtype == jnp.float32
    assert model.features(x, train=False).shape == (3, 16)
    strides = [b.conv1.strides for b in model.blocks]
    assert strides == [1, 2, 1, 2]  # the first block of every stage after the first halves


def test_train_mode_updates_batch_stats_and_eval_mode_does_not():
    model = CifarResNet(num_classes=3, stage_sizes=(1,), widths=(4,), rngs=nnx.Rngs(0))
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    model(_images(1), train=False)
    same = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, before, same)
    model(_images(1) * 3.0 + 2.0, train=True)
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    diffs = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before, after)
    assert min(jax.tree.leaves(diffs)) > 0  # every mean and var moved
    # stem running mean moved by (1 - momentum) * batch mean.
    stem_out = model.stem(_images(1) * 3.0 + 2.0)
    np.testing.assert_allclose(
        after["stem_bn"]["mean"], 0.1 * np.asarray(stem_out.mean(axis=(0, 1, 2))), rtol=1e-4
    )


def test_eval_mode_is_per_example_and_train_mode_uses_the_batch():
    model = resnet20(num_classes=5, width=4, rngs=nnx.Rngs(0), zero_init_residual=False)
    x = _images(2, b=6)
    full = model(x, train=False)
    np.testing.assert_allclose(model(x[:2], train=False), full[:2], rtol=1e-5, atol=1e-5)
    graphdef, state = nnx.split(model)
    train_full = nnx.merge(graphdef, state)(x, train=True)
    train_part = nnx.merge(graphdef, state)(x[:2], train=True)
    assert float(jnp.abs(train_full[:2] - train_part).max()) > 1e-3


def _bn_ref(y, scale, bias, eps=1e-5):
    y, scale, bias = np.asarray(y, np.float64), np.asarray(scale), np.asarray(bias)
    mean = y.mean(axis=(0, 1, 2))
    var = y.var(axis=(0, 1, 2))
    return (y - mean) / np.sqrt(var + eps) * scale + bias


def _conv_ref(x, kernel, stride, pad):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        [(pad, pad), (pad, pad)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


@pytest.mark.parametrize("stride,cin,cout", [(1, 4, 4), (2, 4, 8)])
def test_basic_block_matches_a_hand_written_reference(stride, cin, cout):
    block = BasicBlock(
        cin, cout, stride=stride, bn_momentum=0.9, zero_init_residual=False, rngs=nnx.Rngs(3)
    )
    # Non-trivial BatchNorm affine parameters.
    for i, bn in enumerate([block.bn1, block.bn2] + ([block.proj_bn] if block.proj_bn else [])):
        k1, k2 = jax.random.split(jax.random.key(10 + i))
        bn.scale[...] = 1.0 + 0.3 * jax.random.normal(k1, bn.scale[...].shape)
        bn.bias[...] = 0.2 * jax.random.normal(k2, bn.bias[...].shape)
    x = _images(4, b=5, size=8, c=cin)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(block(x, train=True))
    y = _conv_ref(x, block.conv1.kernel[...], stride, 1)
    y = np.maximum(_bn_ref(np.asarray(y), block.bn1.scale[...], block.bn1.bias[...]), 0)
    y = _conv_ref(jnp.asarray(y, jnp.float32), block.conv2.kernel[...], 1, 1)
    y = _bn_ref(np.asarray(y), block.bn2.scale[...], block.bn2.bias[...])
    if block.proj is None:
        short = np.asarray(x)
    else:
        s = np.asarray(_conv_ref(x, block.proj.kernel[...], stride, 0))
        short = _bn_ref(s, block.proj_bn.scale[...], block.proj_bn.bias[...])
    want = np.maximum(y + short, 0)
    assert got.shape == want.shape == (5, 8 // stride, 8 // stride, cout)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_zero_init_residual_starts_blocks_as_their_shortcut():
    block = BasicBlock(4, 4, stride=1, bn_momentum=0.9, zero_init_residual=True, rngs=nnx.Rngs(0))
    x = _images(5, b=2, size=8, c=4)
    np.testing.assert_allclose(block(x, train=True), jax.nn.relu(x), atol=1e-6)


def test_data_sharded_forward_and_gradient_equal_single_device():
    assert len(jax.devices()) == 8
    mesh = make_mesh({"data": -1})
    model = CifarResNet(num_classes=4, stage_sizes=(1, 1), widths=(4, 8), rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = _images(6, b=16, size=8)

    @jax.jit
    def loss(params, rest, x):
        m = nnx.merge(graphdef, params, jax.tree.map(lambda v: v, rest))
        return jnp.sum(m(x, train=True) ** 2)

    single = jax.value_and_grad(loss)(params, rest, x)
    xs = jax.device_put(x, batch_sharding(mesh))
    assert len(xs.sharding.device_set) == 8
    sharded = jax.value_and_grad(loss)(params, rest, xs)
    np.testing.assert_allclose(sharded[0], single[0], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), sharded[1], single[1]
    )


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="equal length"):
        CifarResNet(num_classes=3, stage_sizes=(1, 1), widths=(4,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="positive ints"):
        CifarResNet(num_classes=3, stage_sizes=(0,), widths=(4,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes"):
        CifarResNet(num_classes=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="bn_momentum"):
        CifarResNet(num_classes=3, bn_momentum=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="stride"):
        BasicBlock(4, 4, stride=3, bn_momentum=0.9, zero_init_residual=False, rngs=nnx.Rngs(0))
    model = CifarResNet(num_classes=3, stage_sizes=(1,), widths=(4,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="floating"):
        model(jnp.zeros((1, 8, 8, 3), jnp.uint8), train=False)
    with pytest.raises(ValueError, match="C=3"):
        model(jnp.zeros((1, 8, 8, 1)), train=False)
