"""Augmentation experiment: each variant's loss sees the augmentation it names; a smoke run of
every variant with checkpoint, restore and continue (γ and the coreset survive the restart)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from augpar.augment import mix, policies
from augpar.augment.coreset import coreset_loss
from augpar.train import read_metrics
from experiments.augment_small_data import objectives
from experiments.augment_small_data import train as asd_train
from experiments.augment_small_data.configs import default

SEEN: list[np.ndarray] = []  # concrete inputs of the spy network, in call order


class Spy(nnx.Module):
    """Logits = per-channel image means @ w; records every concrete input."""

    def __init__(self, num_classes: int = 10):
        self.w = nnx.Param(jnp.linspace(-1.0, 1.0, 3 * num_classes).reshape(3, num_classes))

    def __call__(self, x, *, train):
        if not isinstance(x, jax.core.Tracer):
            SEEN.append(np.asarray(x))
        return jnp.mean(x, axis=(1, 2)) @ self.w[...]


def _batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": jnp.asarray(rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8)),
        "label": jnp.asarray(rng.integers(0, 10, (b,), dtype=np.int32)),
    }


def _norm(x):
    return np.asarray(x, np.float32) / 127.5 - 1.0


def _ce(x_float_0_255, labels):
    logits = Spy()(jnp.asarray(_norm(x_float_0_255)), train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


@pytest.mark.parametrize("kind", ["none", "rand_augment", "trivial_augment"])
def test_policy_variants_feed_the_drawn_augmentation(kind):
    config = default.get_config("smoke")
    loss_fn = objectives.make_loss_fn(kind, config, num_classes=10)
    batch, rng = _batch(), jax.random.key(3)
    SEEN.clear()
    loss, metrics = loss_fn(objectives.Classifier(Spy()), batch, rng)
    x = batch["image"]
    k_aug = jax.random.split(rng)[1]
    if kind == "rand_augment":
        x = policies.rand_augment(k_aug, x, num_ops=2, magnitude=9, fill=0)
    elif kind == "trivial_augment":
        x = policies.trivial_augment_wide(k_aug, x, fill=0)
    assert len(SEEN) == 1
    np.testing.assert_allclose(SEEN[0], _norm(x), atol=1e-6)
    if kind != "none":
        assert np.abs(SEEN[0] - _norm(batch["image"])).max() > 0.5
    np.testing.assert_allclose(loss, np.mean(_ce(x, batch["label"])), rtol=1e-5)


def test_mixup_cutmix_variant_switches_per_batch_and_uses_soft_labels():
    config = default.get_config("smoke")
    loss_fn = objectives.make_loss_fn("mixup_cutmix", config, num_classes=10)
    batch = _batch()
    batch["label"] = jnp.arange(4, dtype=jnp.int32)  # distinct: every mixed row is soft
    branches = set()
    for i in range(12):
        rng = jax.random.fold_in(jax.random.key(0), i)
        k_base, k_switch, k_mix, k_cut = jax.random.split(rng, 4)
        use_cut = bool(jax.random.bernoulli(k_switch, 0.5))
        if use_cut in branches:
            continue
        branches.add(use_cut)
        if use_cut:
            x, y = mix.cutmix(k_cut, batch["image"], batch["label"], num_classes=10, alpha=1.0)
        else:
            x, y = mix.mixup(k_mix, batch["image"], batch["label"], num_classes=10, alpha=0.8)
        SEEN.clear()
        loss, _ = loss_fn(objectives.Classifier(Spy()), batch, rng)
        np.testing.assert_allclose(SEEN[0], _norm(x), atol=1e-6)
        logits = Spy()(jnp.asarray(_norm(x)), train=True)
        np.testing.assert_allclose(loss, optax.softmax_cross_entropy(logits, y).mean(), rtol=1e-5)
        assert float(jnp.min(jnp.max(y, axis=-1))) < 1.0  # label mass moved to the partner
    assert branches == {True, False}


def test_invariance_variant_runs_mh_and_the_dual_update():
    config = default.get_config("smoke")
    inv = config.invariance
    loss_fn = objectives.make_loss_fn("invariance", config, num_classes=10)
    batch = _batch(b=6)
    model = objectives.Classifier(Spy(), with_dual=True)
    with pytest.raises(ValueError, match="with_dual"):
        loss_fn(objectives.Classifier(Spy()), batch, jax.random.key(0))
    SEEN.clear()
    loss, m = loss_fn(model, batch, jax.random.key(1))
    joint = SEEN[-1]  # the differentiated forward pass: clean then MH images
    assert joint.shape == (12, 32, 32, 3)
    np.testing.assert_allclose(joint[:6], _norm(batch["image"]), atol=1e-6)
    assert np.abs(joint[6:] - joint[:6]).max() > 0.5
    # γ starts at 0: the loss is the clean loss, then γ ← max(0, η (ℓ_aug − ε)).
    np.testing.assert_allclose(loss, m["clean_loss"], rtol=1e-6)
    want = max(0.0, inv.dual_lr * (float(m["aug_loss"]) - inv.epsilon))
    np.testing.assert_allclose(model.gamma.get_value(), want, rtol=1e-6)
    ops = {k: float(v) for k, v in m.items() if k.startswith("mh_op_")}
    assert "mh_op_Identity" not in ops and len(ops) == 13  # identity is not proposed
    assert sum(ops.values()) == pytest.approx(1.0)
    model.gamma.set_value(jnp.float32(2.0))
    loss, m = loss_fn(model, batch, jax.random.key(2))
    np.testing.assert_allclose(loss, m["clean_loss"] + 2.0 * m["aug_loss"], rtol=1e-5)
    assert float(m["gamma"]) == 2.0


def test_coreset_variant_adds_the_weighted_augmented_subset():
    config = default.get_config("smoke")
    loss_fn = objectives.make_loss_fn("coreset", config, num_classes=10)
    batch = _batch(b=4)
    sub = _batch(b=2, seed=1)
    batch.update(sub_image=sub["image"], sub_label=sub["label"], sub_weight=jnp.asarray([0.5, 1.5]))
    rng = jax.random.key(4)
    SEEN.clear()
    loss, m = loss_fn(objectives.Classifier(Spy()), batch, rng)
    k_aug = jax.random.split(rng, 3)[2]
    aug = policies.rand_augment(k_aug, sub["image"], num_ops=2, magnitude=9, fill=0)
    np.testing.assert_allclose(SEEN[0], _norm(jnp.concatenate([batch["image"], aug])), atol=1e-6)
    clean, augl = _ce(batch["image"], batch["label"]), _ce(aug, sub["label"])
    want = (np.sum(clean) + 0.5 * augl[0] + 1.5 * augl[1]) / 6
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(loss, coreset_loss(clean, augl, jnp.asarray([0.5, 1.5])), rtol=1e-5)


def test_names_and_sizes_are_checked():
    assert objectives.variant_kind("coreset_30") == ("coreset", 0.3)
    for bad in ("coreset", "coreset_0", "coreset_x", "autoaugment"):
        with pytest.raises(ValueError, match="variant"):
            objectives.variant_kind(bad)
    config = default.get_config("smoke")
    config.variants = "none,none"
    with pytest.raises(ValueError, match="repeats"):
        asd_train.parse_variants(config)
    config.variants = " , "
    with pytest.raises(ValueError, match="names no variant"):
        asd_train.parse_variants(config)
    assert asd_train.coreset_batch_size(config, 0.3, 8) == 8  # ceil(16 * 0.3) = 5 -> 8
    assert asd_train.coreset_batch_size(config, 0.5, 1) == 8
    config.augment.base = "rotate"
    with pytest.raises(ValueError, match="augment.base"):
        objectives.make_base_augment(config)


def _smoke_config():
    config = default.get_config("smoke")
    config.data.train_per_class = 4  # 40 images: 2 steps per epoch, a coreset segment each
    return config


def test_smoke_every_variant_then_restore_and_continue(tmp_path, capsys):
    config = _smoke_config()
    results = asd_train.train_and_evaluate(config, str(tmp_path))
    names = config.variants.split(",")
    assert list(results) == names
    for name in names:
        assert 0.0 <= results[name]["accuracy"] <= 1.0
        assert results[name]["num_steps"] == 2
        assert sorted(os.listdir(tmp_path / name / "checkpoints")) == ["2"]
    out = capsys.readouterr().out
    assert "test acc %" in out and "summary.png" in out
    assert os.path.exists(tmp_path / "summary.png")
    summary = json.load(open(tmp_path / "results.json"))
    assert set(summary["results"]) == set(names) and summary["num_train"] == 40
    for name, size in (("coreset_50", 20), ("coreset_30", 12)):
        files = os.listdir(tmp_path / name / "coresets")
        assert files == ["0.npz"]
        with np.load(tmp_path / name / "coresets" / "0.npz") as f:
            assert f["indices"].shape == (size,) and len(set(f["indices"])) == size
            assert f["weights"].mean() == pytest.approx(1.0, rel=1e-5)
            assert f["cluster_sizes"].sum() == 40

    # Continue two variants with state beyond the parameters (γ; the coreset) to step 4.
    config.variants = "invariance,coreset_50"
    config.num_steps = 4
    asd_train.train_and_evaluate(config, str(tmp_path))
    for name in ("invariance", "coreset_50"):
        assert sorted(os.listdir(tmp_path / name / "checkpoints"), key=int) == ["2", "4"]
        steps = [r["step"] for r in read_metrics(str(tmp_path / name)) if "train/loss" in r]
        assert steps == [1, 2, 3, 4]
    # The coreset was reselected at step 2 from checkpoint 2 (a new segment), and saved.
    assert sorted(os.listdir(tmp_path / "coreset_50" / "coresets")) == ["0.npz", "2.npz"]
    # γ went on from its checkpointed value: γ_{t+1} = max(0, γ_t + η (ℓ_aug,t − ε)).
    recs = [r for r in read_metrics(str(tmp_path / "invariance")) if "train/gamma" in r]
    inv = config.invariance
    for a, b in zip(recs[:-1], recs[1:], strict=True):
        want = max(0.0, a["train/gamma"] + inv.dual_lr * (a["train/aug_loss"] - inv.epsilon))
        assert b["train/gamma"] == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert recs[-1]["train/gamma"] > 0

    # A finished variant is restored and evaluated, not retrained.
    config.variants = "invariance"
    again = asd_train.train_and_evaluate(config, str(tmp_path))
    assert again["invariance"]["restored_finished_run"]
    last = [r for r in read_metrics(str(tmp_path / "invariance")) if "eval/test/accuracy" in r]
    assert again["invariance"]["accuracy"] == pytest.approx(last[-1]["eval/test/accuracy"])


def test_gpu_config_loads_cifar10_through_tfds_under_mock_data():
    import tensorflow_datasets as tfds

    config = default.get_config("gpu")
    config.data.train_per_class = 2
    with tfds.testing.mock_data(num_examples=30):
        train_set, test_set, num_classes = asd_train.load_data(config)
    assert num_classes == 10
    assert test_set["image"].shape == (30, 32, 32, 3) and test_set["image"].dtype == np.uint8
    counts = np.bincount(train_set["label"], minlength=10)
    assert train_set["image"].shape[0] == counts.sum() and counts.max() <= 2
    base = objectives.make_base_augment(config)  # crop + flip for CIFAR
    out = base(jax.random.key(0), jnp.asarray(test_set["image"][:4]))
    assert out.shape == (4, 32, 32, 3) and out.dtype == jnp.uint8
    assert not np.array_equal(np.asarray(out), test_set["image"][:4])
