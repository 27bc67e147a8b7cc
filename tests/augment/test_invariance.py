"""Tests for augpar.augment.invariance: MH stationary distribution, acceptance rule, primal-dual."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from augpar.augment import invariance as inv

NUM_OPS, NUM_LEVELS = 4, 3
# Per-transform losses of the toy (op 0 is excluded from the proposal, so its row is unused).
TABLE = np.array(
    [
        [9.0, 9.0, 9.0],
        [0.5, 1.0, 2.0],
        [1.5, 0.7, 1.2],
        [0.9, 1.8, 0.6],
    ],
    np.float32,
)


def _code_apply(image, op_index, level):
    """Toy transform: the image becomes the code op*L + level, so the state is readable."""
    return jnp.full_like(image, (op_index * NUM_LEVELS + level).astype(image.dtype))


def _table_loss(table):
    flat = jnp.asarray(np.asarray(table, np.float32).ravel())
    return lambda images, labels: flat[images[:, 0, 0, 0].astype(jnp.int32)]


TOY_SPACE = inv.TransformSpace(_code_apply, NUM_OPS, NUM_LEVELS, excluded_ops=(0,))


@functools.partial(jax.jit, static_argnames=("num_chains", "num_steps", "table_id"))
def _run_toy(key, *, num_chains, num_steps, table_id):
    table = {0: TABLE, 1: _ZERO_NAN_TABLE}[table_id]
    images = jnp.zeros((num_chains, 1, 1, 1), jnp.float32)
    labels = jnp.zeros((num_chains,), jnp.int32)
    return inv.mh_augment(
        key, images, labels, loss_fn=_table_loss(table), space=TOY_SPACE, num_steps=num_steps
    )


_ZERO_NAN_TABLE = np.array(
    [[1.0, 1.0, 1.0], [0.0, 1.0, 2.0], [np.nan, 0.7, 1.2], [0.9, 1.8, 0.0]], np.float32
)


def _cell_counts(result):
    codes = np.asarray(result.op_index) * NUM_LEVELS + np.asarray(result.level)
    return np.bincount(codes, minlength=NUM_OPS * NUM_LEVELS)[NUM_LEVELS:]  # drop excluded op 0


def test_stationary_distribution_is_proportional_to_loss():
    """Final states of N independent chains are ~iid from π ∝ loss.

    For an independent MH sampler ‖P^t(x, ·) − π‖_TV ≤ (1 − min_g q(g)/π(g))^t, and
    min q/π = mean(ℓ)/max(ℓ) = 1.133/2 here, so after t = 29 proposals the bias is < 1e-10,
    negligible next to the sampling error. With N = 20000 samples over 9 cells the expected
    total-variation error is ≤ ½·sqrt(9/N) ≈ 0.011; we allow 0.03 and also run a chi-square test
    at level 1e-3 (the seed is fixed, so the test is deterministic).
    """
    n = 20000
    result = _run_toy(jax.random.key(0), num_chains=n, num_steps=30, table_id=0)
    counts = _cell_counts(result)
    target = TABLE[1:].ravel().astype(np.float64)
    target /= target.sum()
    assert counts.sum() == n
    chi2 = stats.chisquare(counts, target * n)
    assert chi2.pvalue > 1e-3, (counts, target * n)
    assert 0.5 * np.abs(counts / n - target).sum() < 0.03
    # The test has power: the proposal (uniform) is rejected overwhelmingly.
    assert stats.chisquare(counts, np.full(9, n / 9)).pvalue < 1e-12
    # Outputs are consistent: the loss is that of the final state, the trace ends there.
    np.testing.assert_allclose(result.loss, TABLE[result.op_index, result.level])
    np.testing.assert_array_equal(result.op_trace[-1], result.op_index)
    np.testing.assert_array_equal(result.level_trace[-1], result.level)
    assert result.op_trace.shape == (30, n)
    assert not np.any(np.asarray(result.op_trace) == 0)  # excluded op never proposed
    # Mean acceptance: propagate the chain's exact law from the proposal q through the
    # independent-MH kernel and average E[min(1, ℓ'/ℓ)] over the 29 proposal steps.
    ell = TABLE[1:].ravel().astype(np.float64)
    accept = np.minimum(1.0, ell[None, :] / ell[:, None]) / 9  # [from, to] incl. q(to)
    kernel = accept + np.diag(1.0 - accept.sum(1))
    law, rates = np.full(9, 1 / 9), []
    for _ in range(29):
        rates.append(law @ accept.sum(1))
        law = law @ kernel
    # per-chain rate is an average of 29 Bernoullis: its std over chains is <= 0.5/sqrt(29),
    # so the batch mean has standard error < 0.1/sqrt(n); allow 0.005.
    assert abs(float(result.accept_rate.mean()) - np.mean(rates)) < 0.005


def test_single_step_is_the_proposal():
    n = 9000
    result = _run_toy(jax.random.key(1), num_chains=n, num_steps=1, table_id=0)
    counts = _cell_counts(result)
    assert stats.chisquare(counts, np.full(9, n / 9)).pvalue > 1e-3
    np.testing.assert_array_equal(result.accept_rate, 0.0)


def test_zero_and_nan_losses_are_never_the_final_state():
    result = _run_toy(jax.random.key(2), num_chains=4000, num_steps=30, table_id=1)
    codes = np.asarray(result.op_index) * NUM_LEVELS + np.asarray(result.level)
    flat = _ZERO_NAN_TABLE.ravel()
    bad = np.flatnonzero(~(flat > 0))
    assert not np.isin(codes, bad).any()
    good = [c for c in range(NUM_LEVELS, NUM_OPS * NUM_LEVELS) if flat[c] > 0]
    assert set(np.unique(codes)) == set(good)
    assert np.all(np.isfinite(result.loss)) and np.all(result.loss > 0)


def _image_apply(image, op_index, level):
    level_f = level.astype(image.dtype)
    branches = [
        image,
        jnp.roll(image, 1, axis=0) * (1.0 + level_f),
        image[::-1] + level_f,
        -image,
    ]
    out = branches[0]
    for i, b in enumerate(branches[1:], start=1):
        out = jnp.where(op_index == i, b, out)
    return out


def test_images_and_losses_match_the_returned_transforms():
    key = jax.random.key(3)
    images = jax.random.normal(key, (8, 4, 5, 2))
    labels = jnp.arange(8)
    target = jnp.ones((1, 4, 5, 2))

    def loss_fn(x, y):
        return jnp.mean((x - target) ** 2, axis=(1, 2, 3)) + 0.01 * y

    space = inv.TransformSpace(_image_apply, 4, 5)
    res = jax.jit(functools.partial(inv.mh_augment, loss_fn=loss_fn, space=space, num_steps=4))(
        jax.random.key(4), images, labels
    )
    again = jax.jit(jax.vmap(_image_apply))(images, res.op_index, res.level)
    np.testing.assert_allclose(res.images, again, rtol=1e-6)
    np.testing.assert_allclose(res.loss, loss_fn(again, labels), rtol=1e-6)
    assert res.images.shape == images.shape
    assert np.all((res.accept_rate >= 0) & (res.accept_rate <= 1))
    hist = inv.op_histogram(res.op_trace, num_ops=4)
    assert int(hist.sum()) == 4 * 8


def test_default_trivial_augment_space():
    """The default space wraps policies.apply_op: identity excluded, sign folded into the level."""
    from augpar.augment import policies

    space = inv.trivial_augment_space()
    assert space.num_ops == len(policies.TRIVIAL_AUGMENT_OPS) and space.num_levels == 62
    assert space.excluded_ops == (policies.TRIVIAL_AUGMENT_OPS.index("Identity"),)
    images = jax.random.randint(jax.random.key(8), (6, 8, 8, 3), 0, 256, jnp.int32).astype(
        jnp.uint8
    )
    labels = jnp.zeros((6,), jnp.int32)

    def loss_fn(x, y):
        diff = jnp.abs(x.astype(jnp.float32) - images.astype(jnp.float32))
        return jnp.mean(diff, axis=(1, 2, 3)) + 0.01 + 0.0 * y

    res = jax.jit(functools.partial(inv.mh_augment, loss_fn=loss_fn, space=space, num_steps=3))(
        jax.random.key(9), images, labels
    )
    assert res.images.dtype == jnp.uint8 and res.images.shape == images.shape
    assert not np.any(np.asarray(res.op_trace) == space.excluded_ops[0])
    assert np.all((np.asarray(res.level_trace) >= 0) & (np.asarray(res.level_trace) < 62))
    bins = res.level % 31
    signs = jnp.where(res.level < 31, 1, -1)
    again = jax.jit(jax.vmap(lambda im, o, b, s: policies.apply_op(im, o, b, sign=s)))(
        images, res.op_index, bins, signs
    )
    np.testing.assert_array_equal(res.images, again)
    np.testing.assert_allclose(res.loss, loss_fn(again, labels), rtol=1e-6)


def test_dual_update_and_objective():
    g = inv.dual_update(jnp.float32(0.5), jnp.float32(0.3), epsilon=0.6, dual_lr=1.0)
    assert float(g) == pytest.approx(0.2)
    g = inv.dual_update(jnp.float32(0.1), jnp.float32(0.3), epsilon=0.6, dual_lr=1.0)
    assert float(g) == 0.0
    g = inv.dual_update(jnp.float32(0.0), jnp.float32(1.6), epsilon=0.6, dual_lr=1e-2)
    assert float(g) == pytest.approx(0.01)
    clean, aug = jnp.array([1.0, 3.0]), jnp.array([2.0, 4.0, 6.0])
    assert float(inv.primal_dual_objective(clean, aug, jnp.float32(0.5))) == pytest.approx(4.0)
    d_gamma = jax.grad(lambda g: inv.primal_dual_objective(clean, aug, g))(jnp.float32(0.5))
    assert float(d_gamma) == 0.0  # γ is a dual variable, not trained by the primal step


def _linear_loss(params, images, labels):
    logits = images.reshape(images.shape[0], -1) @ params["w"] + params["b"][None, :]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def test_primal_dual_step_gradients_and_gamma():
    key = jax.random.key(5)
    k_x, k_w, k_step = jax.random.split(key, 3)
    images = jax.random.normal(k_x, (6, 3, 3, 1))
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    params = {"w": 0.3 * jax.random.normal(k_w, (9, 3)), "b": jnp.zeros(3)}
    space = inv.TransformSpace(_image_apply, 4, 3)
    core = inv.make_primal_dual_step(
        _linear_loss, space=space, epsilon=0.5, dual_lr=0.1, num_steps=3
    )
    gamma = jnp.float32(0.7)
    out = jax.jit(core)(k_step, params, images, labels, gamma)

    @jax.jit
    def reference(p):
        mh = inv.mh_augment(
            k_step,
            images,
            labels,
            loss_fn=lambda x, y: _linear_loss(p, x, y),
            space=space,
            num_steps=3,
        )

        def direct(q):
            clean = _linear_loss(q, images, labels).mean()
            aug = _linear_loss(q, mh.images, labels).mean()
            return clean + 0.7 * aug, aug

        return mh.images, jax.value_and_grad(direct, has_aux=True)(p)

    mh_images, ((value, aug), grads) = reference(params)
    np.testing.assert_allclose(out.augmented, mh_images, rtol=1e-6)
    assert float(out.loss) == pytest.approx(float(value), rel=1e-5)
    for name in params:
        np.testing.assert_allclose(out.grads[name], grads[name], rtol=1e-4, atol=1e-6)
    assert float(out.gamma) == pytest.approx(max(0.0, 0.7 + 0.1 * (float(aug) - 0.5)), rel=1e-5)
    assert int(out.metrics["op_counts"].sum()) == 6
    assert float(out.metrics["constraint_slack"]) == pytest.approx(float(aug) - 0.5, rel=1e-5)


def test_primal_dual_step_under_shard_map_uses_global_means():
    """With axis_name, γ and the gradients are those of the whole (8-way sharded) batch."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((8,), ("data",))
    images = jax.random.normal(jax.random.key(11), (16, 3, 3, 1))
    labels = jnp.arange(16) % 3
    params = {"w": 0.3 * jax.random.normal(jax.random.key(12), (9, 3)), "b": jnp.zeros(3)}
    space = inv.TransformSpace(_image_apply, 4, 3)
    core = inv.make_primal_dual_step(
        _linear_loss, space=space, epsilon=0.5, dual_lr=0.1, axis_name="data"
    )

    def body(key, p, x, y, gamma):
        out = core(jax.random.fold_in(key, jax.lax.axis_index("data")), p, x, y, gamma)
        return out.gamma, out.metrics["aug_loss"], out.augmented, out.grads

    sharded = functools.partial(jax.device_put, device=NamedSharding(mesh, P("data")))
    step = jax.jit(
        jax.shard_map(
            body,
            mesh=mesh,
            in_specs=(P(), P(), P("data"), P("data"), P()),
            out_specs=(P(), P(), P("data"), P()),
        )
    )
    gamma, aug_loss, augmented, grads = step(
        jax.random.key(13), params, sharded(images), sharded(labels), jnp.float32(0.7)
    )
    augmented = np.asarray(augmented)
    assert len({tuple(np.asarray(a).ravel()) for a in augmented.reshape(8, 2, -1)}) > 1

    @jax.jit
    def reference(p, x_aug):
        def direct(q):
            aug = _linear_loss(q, x_aug, labels).mean()
            return _linear_loss(q, images, labels).mean() + 0.7 * aug, aug

        return jax.value_and_grad(direct, has_aux=True)(p)

    (_, ref_aug), ref_grads = reference(params, jnp.asarray(augmented))
    assert float(aug_loss) == pytest.approx(float(ref_aug), rel=1e-5)
    assert float(gamma) == pytest.approx(0.7 + 0.1 * (float(ref_aug) - 0.5), rel=1e-5)
    for name in params:
        np.testing.assert_allclose(np.asarray(grads[name]), ref_grads[name], rtol=1e-4, atol=1e-6)


def test_primal_dual_training_moves_gamma_with_the_constraint():
    """γ grows while the constraint is violated (ε = 0) and stays at 0 when it is slack."""
    images = jax.random.normal(jax.random.key(6), (16, 3, 3, 1))
    labels = jnp.arange(16) % 3
    params0 = {"w": jnp.zeros((9, 3)), "b": jnp.zeros(3)}
    space = inv.TransformSpace(_image_apply, 4, 3, excluded_ops=(0,))
    tx = optax.sgd(0.1)

    def aux_loss(p, x, y):
        losses = _linear_loss(p, x, y)
        return losses, {"n": jnp.asarray(losses.shape[0])}

    def run(epsilon):
        core = inv.make_primal_dual_step(
            aux_loss, space=space, epsilon=epsilon, dual_lr=0.5, has_aux=True
        )

        @jax.jit
        def train(key):
            def body(carry, k):
                params, opt, gamma = carry
                out = core(k, params, images, labels, gamma)
                updates, opt = tx.update(out.grads, opt, params)
                return (optax.apply_updates(params, updates), opt, out.gamma), (
                    out.gamma,
                    out.aux["n"],
                )

            carry0 = (params0, tx.init(params0), jnp.float32(0.0))
            return jax.lax.scan(body, carry0, jax.random.split(key, 10))[1]

        return train(jax.random.key(7))

    gammas, n = run(0.0)
    assert np.all(np.diff(np.asarray(gammas)) > 0) and float(gammas[-1]) > 1.0
    assert np.all(np.asarray(n) == 32)  # one joint forward over clean + augmented
    gammas, _ = run(100.0)
    np.testing.assert_array_equal(gammas, 0.0)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="excluded_ops"):
        inv.TransformSpace(_code_apply, 2, 3, excluded_ops=(0, 1))
    with pytest.raises(ValueError, match="num_levels"):
        inv.TransformSpace(_code_apply, 2, 0)
    images = jnp.zeros((4, 1, 1, 1))
    labels = jnp.zeros((4,), jnp.int32)
    with pytest.raises(ValueError, match="num_steps"):
        inv.mh_augment(
            jax.random.key(0),
            images,
            labels,
            loss_fn=_table_loss(TABLE),
            space=TOY_SPACE,
            num_steps=0,
        )
    with pytest.raises(ValueError, match="per-example losses"):
        inv.mh_augment(
            jax.random.key(0), images, labels, loss_fn=lambda x, y: jnp.sum(x), space=TOY_SPACE
        )
    with pytest.raises(ValueError, match="keep the image shape"):
        inv.mh_augment(
            jax.random.key(0),
            images,
            labels,
            loss_fn=_table_loss(TABLE),
            space=inv.TransformSpace(lambda x, op, level: x[0], 4, 3),
        )
    with pytest.raises(ValueError, match="epsilon"):
        inv.dual_update(jnp.float32(0), jnp.float32(1), epsilon=-1.0, dual_lr=0.1)
    with pytest.raises(ValueError, match="dual_lr"):
        inv.make_primal_dual_step(_linear_loss, space=TOY_SPACE, epsilon=0.1, dual_lr=0.0)
