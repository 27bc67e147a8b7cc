"""scikit-learn digits: shapes, dtypes, stratified deterministic split, faithful upsampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from augpar.data.digits import load_digits, resize_matrix


def test_shapes_dtypes_and_coverage():
    train, test = load_digits()
    assert train["image"].shape[1:] == (32, 32, 3) and train["image"].dtype == np.uint8
    assert train["label"].dtype == np.int32 and test["label"].dtype == np.int32
    assert len(train["image"]) == len(train["label"]) and len(test["image"]) == len(test["label"])
    assert len(train["label"]) + len(test["label"]) == 1797
    assert abs(len(test["label"]) - 0.2 * 1797) <= 10
    assert train["image"].max() > 200 and train["image"].min() == 0
    np.testing.assert_array_equal(train["image"][..., 0], train["image"][..., 2])


def test_stratified_and_deterministic():
    train, test = load_digits(test_fraction=0.25, seed=3)
    counts_all = np.bincount(sk_load_digits().target, minlength=10)
    counts_test = np.bincount(test["label"], minlength=10)
    np.testing.assert_array_equal(counts_test, np.round(0.25 * counts_all).astype(int))
    np.testing.assert_array_equal(
        np.bincount(train["label"], minlength=10) + counts_test, counts_all
    )
    again_train, again_test = load_digits(test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again_test["image"], test["image"])
    np.testing.assert_array_equal(again_train["label"], train["label"])
    _, other = load_digits(test_fraction=0.25, seed=4)
    np.testing.assert_array_equal(np.bincount(other["label"], minlength=10), counts_test)
    assert not np.array_equal(other["image"], test["image"])


def test_train_and_test_disjoint_and_faithful():
    raw = sk_load_digits()
    train8, test8 = load_digits(size=8)
    ref = np.rint(raw.images * 255 / 16).astype(np.uint8)
    keys = {img.tobytes() for img in ref}
    together = np.concatenate([train8["image"][..., 0], test8["image"][..., 0]])
    assert {img.tobytes() for img in together} <= keys
    # Upsampling is jax.image.resize's bilinear (half-pixel centres, no antialias when growing):
    # the 32 px images are exactly the rounded resizes of the scans, train and test together.
    scans = raw.images * 255 / 16
    want = np.asarray(
        jax.image.resize(jnp.asarray(scans, jnp.float32), (1797, 32, 32), "linear", antialias=False)
    )
    m = resize_matrix(8, 32)
    np.testing.assert_allclose(np.einsum("ij,njk,lk->nil", m, scans, m), want, atol=1e-3)
    want_keys = {img.tobytes() for img in np.clip(np.rint(want), 0, 255).astype(np.uint8)}
    train32, test32 = load_digits(size=32)
    got = np.concatenate([train32["image"][..., 0], test32["image"][..., 0]])
    # float32 (jax) vs float64 (ours) may round an exact .5 differently in a rare image.
    assert np.mean([img.tobytes() in want_keys for img in got]) > 0.99


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="size must be an int >= 8, got 4"):
        load_digits(size=4)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\), got 1.5"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -2"):
        load_digits(seed=-2)
