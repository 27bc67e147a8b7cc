"""Tests for augpar.augment.coreset: greedy vs brute force, lazy == plain, weights, train step."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from augpar.augment import coreset as cs


def _random_similarity(rng, n, dim=3, kind="exp"):
    return np.asarray(cs.pairwise_similarity(rng.normal(size=(n, dim)), kind=kind), np.float64)


def _fl_value(sim, subset):
    return sim[:, list(subset)].max(axis=1).sum() if len(subset) else 0.0


def _brute_force_greedy(sim, k):
    """Greedy by definition: evaluate F(S ∪ {j}) for every j from scratch, lowest index on ties."""
    chosen = []
    for _ in range(k):
        values = [(_fl_value(sim, chosen + [j]), -j) for j in range(len(sim)) if j not in chosen]
        chosen.append(-max(values)[1])
    return chosen


@pytest.mark.parametrize("seed", range(6))
def test_greedy_equals_brute_force_on_tiny_sets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 9))
    kind = "exp" if seed % 2 == 0 else "craig"
    sim = _random_similarity(rng, n, kind=kind)
    # greedy is prefix-consistent, so one run with k = n gives the selection for every k
    full_sel, full_gains = cs.facility_location_greedy(jnp.asarray(sim, jnp.float32), n)
    full_sel = np.asarray(full_sel).tolist()
    assert full_sel == _brute_force_greedy(sim, n)
    assert sorted(full_sel) == list(range(n))
    k_mid = n // 2
    assert np.asarray(cs.facility_location_greedy(sim, k_mid)[0]).tolist() == full_sel[:k_mid]
    for k in range(1, n + 1):
        sel, gains = full_sel[:k], np.asarray(full_gains[:k])
        # marginal gains add up to F(S) and never increase (submodularity)
        np.testing.assert_allclose(np.sum(gains), _fl_value(sim, sel), rtol=1e-5)
        assert np.all(np.diff(gains) <= 1e-5)
        # exhaustive optimum: k = 1 is exact; otherwise the (1 - 1/e) guarantee holds
        opt = max(_fl_value(sim, s) for s in itertools.combinations(range(n), k))
        value = _fl_value(sim, sel)
        assert value <= opt + 1e-9
        if k == 1:
            assert value == pytest.approx(opt)
        assert value >= (1 - 1 / math.e) * opt


def test_greedy_finds_the_optimum_on_separated_clusters():
    rng = np.random.default_rng(10)
    centres = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])
    points = np.concatenate([c + 0.3 * rng.normal(size=(3, 2)) for c in centres])
    sim = np.asarray(cs.pairwise_similarity(points, kind="exp", scale=1.0), np.float64)
    sel, _ = cs.facility_location_lazy_greedy(sim, 3)
    opt = max(_fl_value(sim, s) for s in itertools.combinations(range(9), 3))
    assert _fl_value(sim, sel) == pytest.approx(opt)
    assert sorted(int(i) // 3 for i in sel) == [0, 1, 2]  # one medoid per cluster
    np.testing.assert_array_equal(cs.cluster_sizes(sim, sel), [3, 3, 3])


@pytest.mark.parametrize("kind", ["exp", "craig"])
def test_lazy_greedy_equals_plain_greedy(kind):
    rng = np.random.default_rng(1)
    for n, k in [(1, 1), (7, 3), (60, 20), (200, 50)]:
        sim = _random_similarity(rng, n, dim=5, kind=kind)
        lazy, lazy_gains = cs.facility_location_lazy_greedy(sim, k)
        plain, plain_gains = cs.facility_location_greedy(jnp.asarray(sim, jnp.float32), k)
        np.testing.assert_array_equal(lazy, np.asarray(plain))
        np.testing.assert_allclose(lazy_gains, plain_gains, rtol=1e-4, atol=1e-6)
    assert cs.facility_location_lazy_greedy(sim, 0)[0].shape == (0,)


@pytest.mark.parametrize("kind", ["exp", "craig"])
def test_host_similarity_matches_jax(kind):
    x = np.random.default_rng(3).normal(size=(40, 7))
    np.testing.assert_allclose(
        cs._similarity_np(x, kind, None), cs.pairwise_similarity(x, kind=kind), atol=2e-5
    )


def test_cluster_sizes_sum_to_n_and_ties_and_self_assignment():
    # duplicates: points 0 and 1 coincide; both selected -> each keeps at least itself
    points = np.array([[0.0], [0.0], [5.0], [5.1]])
    sim = np.asarray(cs.pairwise_similarity(points, kind="craig"))
    sizes = cs.cluster_sizes(sim, np.array([0, 1, 2]))
    np.testing.assert_array_equal(sizes, [1, 1, 2])
    assert sizes.sum() == 4


def test_select_coreset_weights_and_class_sizes():
    rng = np.random.default_rng(2)
    num_classes, n = 4, 230
    labels = rng.integers(0, num_classes, n)
    logits = rng.normal(size=(n, num_classes))
    features = rng.normal(size=(n, 6))
    proxies = cs.gradient_proxy(jnp.asarray(logits), jnp.asarray(labels), features=features)
    assert proxies.shape == (n, num_classes * 6)
    core = cs.select_coreset(proxies, labels, num_classes=num_classes, fraction=0.3)
    assert core.indices.size == round(0.3 * n) == len(np.unique(core.indices))
    np.testing.assert_array_equal(labels[core.indices], core.labels)
    counts = np.bincount(labels, minlength=num_classes)
    for c in range(num_classes):
        # the invariant: the cluster sizes of a class sum to the class size
        assert core.cluster_sizes[core.labels == c].sum() == counts[c]
    assert np.all(core.cluster_sizes >= 1)
    assert core.weights.mean() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(
        core.weights, core.cluster_sizes / core.cluster_sizes.mean(), rtol=1e-6
    )
    # budgets proportional to class sizes (largest remainder), and dense == lazy selection
    np.testing.assert_array_equal(
        np.bincount(core.labels, minlength=num_classes),
        cs.class_budgets(counts, round(0.3 * n)),
    )
    dense = cs.select_coreset(proxies, labels, num_classes=num_classes, size=69, method="dense")
    np.testing.assert_array_equal(np.sort(dense.indices), np.sort(core.indices))


def test_gradient_proxy_is_the_logit_gradient():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    labels = jnp.array([1, 0])
    g = cs.gradient_proxy(logits, labels)
    ref = jax.vmap(jax.grad(lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y)))(
        logits, labels
    )
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-7)
    h = jnp.array([[1.0, -2.0], [0.5, 0.0]])
    gh = cs.gradient_proxy(logits, labels, features=h)

    def last_layer_loss(w, hi, yi):
        return optax.softmax_cross_entropy_with_integer_labels(hi @ w, yi)

    w = jnp.linalg.pinv(h) @ logits  # logits = h @ w exactly (h is invertible)
    grads = jax.jit(jax.vmap(jax.grad(last_layer_loss), in_axes=(None, 0, 0)))(w, h, labels)
    np.testing.assert_allclose(gh, grads.transpose(0, 2, 1).reshape(2, 6), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_features", [False, True])
def test_dataset_gradient_proxies_match_one_pass(use_features):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(23, 2, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 23)
    w = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)

    def logits_fn(x):
        h = jnp.tanh(x.reshape(x.shape[0], -1))
        return (h @ w, h) if use_features else h @ w

    got = cs.dataset_gradient_proxies(
        logits_fn, images, labels, batch_size=8, use_features=use_features
    )
    h = jnp.tanh(jnp.asarray(images).reshape(23, -1))
    ref = cs.gradient_proxy(h @ w, jnp.asarray(labels), features=h if use_features else None)
    assert got.shape == ref.shape == ((23, 24) if use_features else (23, 4))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_class_budgets():
    np.testing.assert_array_equal(cs.class_budgets(np.array([10, 20, 70]), 10), [1, 2, 7])
    np.testing.assert_array_equal(cs.class_budgets(np.array([10, 5, 5]), 7), [3, 2, 2])
    b = cs.class_budgets(np.array([2, 50, 50]), 30, mode="equal")
    np.testing.assert_array_equal(b, [2, 14, 14])
    assert cs.class_budgets(np.array([3, 4]), 100).tolist() == [3, 4]
    b = cs.class_budgets(np.array([1, 1, 1, 9]), 2, mode="equal")
    assert b.sum() == 2 and np.all(b <= [1, 1, 1, 9])


def test_reselection_schedule():
    assert [e for e in range(12) if cs.should_reselect(e, every=5)] == [0, 5, 10]
    assert [e for e in range(8) if cs.should_reselect(e, every=3, start_epoch=2)] == [2, 5]
    calls = []

    def select():
        calls.append(1)
        return cs.Coreset(np.array([len(calls)]), np.ones(1), np.ones(1, int), np.zeros(1, int))

    current = None
    for epoch in range(7):
        current = cs.maybe_reselect(epoch, current, select, every=3)
    assert len(calls) == 3 and int(current.indices[0]) == 3  # epochs 0, 3, 6


def test_coreset_loss_reductions():
    clean = jnp.array([1.0, 2.0, 3.0])
    aug = jnp.array([4.0, 10.0, 100.0])
    w = jnp.array([0.5, 1.5, 7.0])
    mask = jnp.array([True, True, False])
    concat = cs.coreset_loss(clean, aug, w, aug_mask=mask)
    assert float(concat) == pytest.approx((6.0 + 2.0 + 15.0) / 5)
    summed = cs.coreset_loss(clean, aug, w, aug_mask=mask, reduction="sum")
    assert float(summed) == pytest.approx(2.0 + 17.0 / 2)
    assert float(cs.coreset_loss(clean, aug, w)) == pytest.approx((6.0 + 717.0) / 6)


def test_coreset_step_matches_direct_gradient():
    key = jax.random.key(0)
    kx, ks, kw = jax.random.split(key, 3)
    x = jax.random.normal(kx, (5, 2, 2, 1))
    xs = jax.random.normal(ks, (3, 2, 2, 1))
    y = jnp.array([0, 1, 2, 0, 1])
    ys = jnp.array([2, 2, 0])
    weights = jnp.array([0.5, 2.0, 1.0])
    mask = jnp.array([True, True, False])
    params = {"w": jax.random.normal(kw, (4, 3)), "b": jnp.zeros(3)}

    def per_example_loss(p, images, labels):
        logits = images.reshape(images.shape[0], -1) @ p["w"] + p["b"][None, :]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def flip(k, images):
        del k
        return images[:, ::-1]

    core = cs.make_coreset_step(per_example_loss, augment_fn=flip, reduction="sum")
    out = jax.jit(core)(key, params, x, y, xs, ys, weights, mask)

    def direct(p):
        clean = per_example_loss(p, x, y).mean()
        aug = per_example_loss(p, xs[:, ::-1], ys)
        return clean + (0.5 * aug[0] + 2.0 * aug[1]) / 2

    value, grads = jax.jit(jax.value_and_grad(direct))(params)
    assert float(out.loss) == pytest.approx(float(value), rel=1e-5)
    for name in params:
        np.testing.assert_allclose(out.grads[name], grads[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["concat", "sum"])
def test_coreset_step_under_shard_map_equals_global(reduction):
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((8,), ("data",))
    k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
    x, xs = jax.random.normal(k1, (16, 2, 2, 1)), jax.random.normal(k2, (8, 2, 2, 1))
    y, ys = jnp.arange(16) % 3, jnp.arange(8) % 3
    weights = jax.random.uniform(k3, (8,), minval=0.5, maxval=2.0)
    mask = jnp.array([True, False, True, True, True, True, False, False])  # uneven per shard
    params = {"w": jax.random.normal(k4, (4, 3)), "b": jnp.zeros(3)}

    def per_example_loss(p, images, labels):
        logits = images.reshape(images.shape[0], -1) @ p["w"] + p["b"][None, :]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    core = cs.make_coreset_step(per_example_loss, reduction=reduction, axis_name="data")

    def body(p, a, b, c, d, w, m):
        out = core(None, p, a, b, c, d, w, m)
        return out.loss, out.grads, out.metrics["aug_loss"]

    d = P("data")
    step = jax.jit(
        jax.shard_map(body, mesh=mesh, in_specs=(P(), d, d, d, d, d, d), out_specs=(P(), P(), P()))
    )
    put = functools.partial(jax.device_put, device=NamedSharding(mesh, d))
    loss, grads, aug_metric = step(params, *map(put, (x, y, xs, ys, weights, mask)))

    @jax.jit
    def reference(p):
        return jax.value_and_grad(
            lambda q: cs.coreset_loss(
                per_example_loss(q, x, y),
                per_example_loss(q, xs, ys),
                weights,
                aug_mask=mask,
                reduction=reduction,
            )
        )(p)

    ref_loss, ref_grads = reference(params)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5)
    for name in params:
        np.testing.assert_allclose(np.asarray(grads[name]), ref_grads[name], rtol=1e-4, atol=1e-6)
    aug = per_example_loss(params, xs, ys)
    expected_aug = float(jnp.sum(weights * aug * mask) / jnp.sum(weights * mask))
    assert float(aug_metric) == pytest.approx(expected_aug, rel=1e-5)


def test_invalid_arguments_raise():
    sim = np.eye(3)
    with pytest.raises(ValueError, match="k must be"):
        cs.facility_location_greedy(sim, 4)
    with pytest.raises(ValueError, match="square"):
        cs.facility_location_lazy_greedy(np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match=">= 0"):
        cs.facility_location_lazy_greedy(-np.eye(2), 1)
    with pytest.raises(ValueError, match="exactly one"):
        cs.select_coreset(np.ones((3, 2)), np.zeros(3, int), num_classes=1)
    with pytest.raises(ValueError, match="labels must lie"):
        cs.select_coreset(np.ones((3, 2)), np.array([0, 1, 5]), num_classes=2, size=1)
    with pytest.raises(ValueError, match="mode"):
        cs.class_budgets(np.array([3]), 1, mode="random")
    with pytest.raises(ValueError, match="reduction"):
        cs.coreset_loss(jnp.ones(2), jnp.ones(2), jnp.ones(2), reduction="mean")
    with pytest.raises(ValueError, match="every"):
        cs.should_reselect(3, every=0)
    with pytest.raises(ValueError, match="kind"):
        cs.pairwise_similarity(np.ones((2, 2)), kind="cosine")
