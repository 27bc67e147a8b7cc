"""Step-indexed batching: pure function of (seed, step), epochs are permutations, host shards
are disjoint and tile the global batch, eval counts every example once, errors name numbers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from augpar.data.batching import ArrayDataset, batch_at_step, epoch_permutation, iterate_eval


def _arrays(n):
    return {
        "image": np.arange(n * 2 * 2 * 3, dtype=np.uint8).reshape(n, 2, 2, 3),
        "label": np.arange(n, dtype=np.int32) % 7,
        "id": np.arange(n, dtype=np.int64),
    }


def test_pure_function_of_seed_and_step():
    arrays = _arrays(50)
    a = batch_at_step(arrays, 13, global_batch_size=8, seed=3)
    # Any history before: same result.
    for s in range(20):
        batch_at_step(arrays, s, global_batch_size=8, seed=4)
    b = batch_at_step(arrays, 13, global_batch_size=8, seed=3)
    for key in arrays:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == arrays[key].dtype and a[key].shape[0] == 8
    # Rows stay aligned across keys.
    np.testing.assert_array_equal(a["label"], a["id"] % 7)
    np.testing.assert_array_equal(a["image"], arrays["image"][a["id"]])
    # Other seed or other step: another batch.
    c = batch_at_step(arrays, 13, global_batch_size=8, seed=4)
    d = batch_at_step(arrays, 14, global_batch_size=8, seed=3)
    assert not np.array_equal(a["id"], c["id"]) and not np.array_equal(a["id"], d["id"])
    ds = ArrayDataset(arrays, global_batch_size=8, seed=3)
    np.testing.assert_array_equal(ds[13]["id"], a["id"])
    it = ds.iterate(start_step=12)
    next(it)
    np.testing.assert_array_equal(next(it)["id"], a["id"])


@given(
    n=st.integers(1, 60),
    gbs=st.integers(1, 60),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 5),
)
@settings(max_examples=60, deadline=None)
def test_epochs_are_permutations(n, gbs, seed, epoch):
    if gbs > n:
        with pytest.raises(ValueError, match=f"global_batch_size {gbs} is larger than the dataset"):
            batch_at_step(_arrays(n), 0, global_batch_size=gbs, seed=seed)
        return
    arrays = _arrays(n)
    spe = n // gbs
    ids = np.concatenate(
        [
            batch_at_step(arrays, epoch * spe + k, global_batch_size=gbs, seed=seed)["id"]
            for k in range(spe)
        ]
    )
    # Drop remainder: spe * gbs distinct examples, in the epoch permutation's order.
    assert len(set(ids.tolist())) == spe * gbs
    np.testing.assert_array_equal(ids, epoch_permutation(seed, epoch, n)[: spe * gbs])
    perm = epoch_permutation(seed, epoch, n)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_epochs_differ_and_unshuffled_order():
    arrays = _arrays(40)
    e0 = np.concatenate(
        [batch_at_step(arrays, s, global_batch_size=10, seed=1)["id"] for s in range(4)]
    )
    e1 = np.concatenate(
        [batch_at_step(arrays, s, global_batch_size=10, seed=1)["id"] for s in range(4, 8)]
    )
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == list(range(40))
    assert not np.array_equal(e0, e1)
    plain = [
        batch_at_step(arrays, s, global_batch_size=10, seed=1, shuffle=False)["id"]
        for s in range(5)
    ]
    np.testing.assert_array_equal(np.concatenate(plain[:4]), np.arange(40))
    np.testing.assert_array_equal(plain[4], np.arange(10))


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_host_shards_disjoint_and_tile_global_batch(process_count):
    arrays = _arrays(64)
    for step in (0, 5, 9):
        full = batch_at_step(arrays, step, global_batch_size=16, seed=2)["id"]
        shards = [
            batch_at_step(
                arrays,
                step,
                global_batch_size=16,
                seed=2,
                process_index=p,
                process_count=process_count,
            )["id"]
            for p in range(process_count)
        ]
        assert all(s.shape == (16 // process_count,) for s in shards)
        np.testing.assert_array_equal(np.concatenate(shards), full)
        assert len(set(np.concatenate(shards).tolist())) == 16


@pytest.mark.parametrize(
    "n,batch_size,process_count", [(23, 8, 1), (23, 8, 2), (5, 8, 4), (16, 4, 2)]
)
def test_eval_counts_every_example_once(n, batch_size, process_count):
    arrays = _arrays(n)
    seen = []
    num_batches = None
    for p in range(process_count):
        batches = list(
            iterate_eval(
                arrays, batch_size=batch_size, process_index=p, process_count=process_count
            )
        )
        num_batches = num_batches or len(batches)
        assert len(batches) == num_batches == -(-n // batch_size)
        for b in batches:
            assert b["mask"].dtype == bool and b["mask"].shape == (batch_size // process_count,)
            assert b["image"].shape == (batch_size // process_count, 2, 2, 3)
            np.testing.assert_array_equal(
                b["image"][b["mask"]], arrays["image"][b["id"][b["mask"]]]
            )
            assert np.all(b["image"][~b["mask"]] == 0)
            seen.extend(b["id"][b["mask"]].tolist())
    assert sorted(seen) == list(range(n))


def test_errors_name_the_numbers():
    arrays = _arrays(10)
    with pytest.raises(ValueError, match="global_batch_size 6 is not divisible by process_count 4"):
        batch_at_step(arrays, 0, global_batch_size=6, seed=0, process_count=4)
    with pytest.raises(ValueError, match=r"global_batch_size 12 is larger than the dataset \(10"):
        batch_at_step(arrays, 0, global_batch_size=12, seed=0)
    with pytest.raises(ValueError, match=r"process_index must be in \[0, 2\), got 2"):
        batch_at_step(arrays, 0, global_batch_size=4, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        batch_at_step(arrays, -1, global_batch_size=4, seed=0)
    with pytest.raises(ValueError, match="same leading dimension"):
        batch_at_step({"a": np.zeros(3), "b": np.zeros(4)}, 0, global_batch_size=2, seed=0)
    with pytest.raises(ValueError, match="global_batch_size 12 is larger than the dataset"):
        ArrayDataset(arrays, global_batch_size=12, seed=0)
    with pytest.raises(ValueError, match="global_batch_size 6 is not divisible by process_count 4"):
        next(iterate_eval(arrays, batch_size=6, process_count=4))
    with pytest.raises(ValueError, match="must not contain the key 'mask'"):
        next(iterate_eval({"mask": np.zeros(3)}, batch_size=2))
