"""tfds.data_source → grain under tfds.testing.mock_data: shapes, host sharding, determinism."""

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from augpar.data.tfds_source import (
    eval_iterator,
    image_classification_dataset,
    resize_and_center_crop,
    training_iterator,
)

N = 40


@pytest.fixture
def mock40():
    with tfds.testing.mock_data(num_examples=N):
        yield


def _keys(images):
    return [img.tobytes() for img in images]


def test_sharded_batches_tile_the_global_batch(mock40):
    G, P = 8, 2
    full = image_classification_dataset("cifar10", "train", global_batch_size=G, seed=5)
    hosts = [
        image_classification_dataset(
            "cifar10", "train", global_batch_size=G, seed=5, process_index=p, process_count=P
        )
        for p in range(P)
    ]
    assert isinstance(full, grain.MapDataset)
    all_keys = set()
    epoch0 = []
    for step in range(2 * N // G):  # two epochs
        g = full[step]
        assert g["image"].shape == (G, 32, 32, 3) and g["image"].dtype == np.uint8
        assert g["label"].shape == (G,) and g["label"].dtype == np.int32
        parts = [h[step] for h in hosts]
        for part in parts:
            assert part["image"].shape == (G // P, 32, 32, 3) and part["label"].dtype == np.int32
        a, b = set(_keys(parts[0]["image"])), set(_keys(parts[1]["image"]))
        assert not a & b
        np.testing.assert_array_equal(np.concatenate([q["image"] for q in parts]), g["image"])
        np.testing.assert_array_equal(np.concatenate([q["label"] for q in parts]), g["label"])
        if step < N // G:
            epoch0.extend(_keys(g["image"]))
        all_keys |= set(_keys(g["image"]))
    # One epoch visits every example once; the mock has N distinct images.
    assert len(epoch0) == N and len(set(epoch0)) == N and len(all_keys) == N
    # Consecutive steps and consecutive epochs differ.
    assert not np.array_equal(full[0]["image"], full[1]["image"])
    e0 = [k for s in range(5) for k in _keys(full[s]["image"])]
    e1 = [k for s in range(5, 10) for k in _keys(full[s]["image"])]
    assert sorted(e0) == sorted(e1) and e0 != e1


def test_deterministic_per_seed_and_step(mock40):
    def build(seed):
        return image_classification_dataset(
            "cifar10", "train", global_batch_size=8, seed=seed, process_index=1, process_count=2
        )

    a, b = build(3), build(3)
    for step in (7, 0, 13):  # any order of access
        np.testing.assert_array_equal(a[step]["image"], b[step]["image"])
        np.testing.assert_array_equal(a[step]["label"], b[step]["label"])
    assert not np.array_equal(a[7]["image"], build(4)[7]["image"])
    # The prefetching iterator yields the same batches, also when resumed at a later step.
    it = training_iterator(a, start_step=6, num_threads=2, prefetch_buffer_size=4)
    for step in range(6, 10):
        np.testing.assert_array_equal(next(it)["image"], b[step]["image"])


def test_unshuffled_and_finite_epochs(mock40):
    ds = image_classification_dataset(
        "cifar10", "test", global_batch_size=12, seed=0, shuffle=False, num_epochs=2
    )
    assert len(ds) == 2 * (N // 12)
    src = tfds.data_source("cifar10", split="test")
    np.testing.assert_array_equal(
        ds[1]["image"], np.stack([src[i]["image"] for i in range(12, 24)])
    )
    # Second epoch, unshuffled: again examples 0..11 (the remainder 36..39 is dropped).
    np.testing.assert_array_equal(ds[3]["image"], np.stack([src[i]["image"] for i in range(12)]))
    keep = image_classification_dataset(
        "cifar10", "test", global_batch_size=12, seed=0, shuffle=False, drop_remainder=False
    )
    # Epochs concatenated: step 3 holds examples 36..39 then 0..7 of the next epoch.
    want = np.stack([src[i % N]["image"] for i in range(36, 48)])
    np.testing.assert_array_equal(keep[3]["image"], want)


@pytest.mark.parametrize(
    "name,split,kwargs,shape",
    [
        ("cifar100", "train", {}, (32, 32, 3)),
        ("svhn_cropped", "train", {}, (32, 32, 3)),
        ("mnist", "train", {}, (28, 28, 1)),
        ("mnist", "train", {"grayscale_to_rgb": True}, (28, 28, 3)),
        ("mnist", "test", {"image_size": 16}, (16, 16, 1)),
        ("imagenet2012", "validation", {"image_size": 24}, (24, 24, 3)),
        ("imagenet2012", "train", {"image_size": 16, "crop_fraction": 0.875}, (16, 16, 3)),
    ],
)
def test_datasets_shapes(mock40, name, split, kwargs, shape):
    ds = image_classification_dataset(
        name, split, global_batch_size=8, seed=1, process_index=1, process_count=4, **kwargs
    )
    batch = ds[3]
    assert batch["image"].shape == (2,) + shape and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (2,) and batch["label"].dtype == np.int32


def test_label_key_and_transforms(mock40):
    coarse = image_classification_dataset(
        "cifar100", "train", global_batch_size=40, seed=0, label_key="coarse_label"
    )
    assert coarse[0]["label"].max() < 20

    def flip(example):
        return {**example, "image": example["image"][:, ::-1]}

    def noise(example, rng):
        return {**example, "noise": rng.integers(0, 2**31, dtype=np.int64)}

    def add_count(batch):
        return {**batch, "count": np.int32(len(batch["label"]))}

    plain = image_classification_dataset("cifar10", "train", global_batch_size=8, seed=2)
    ds = image_classification_dataset(
        "cifar10",
        "train",
        global_batch_size=8,
        seed=2,
        transform=flip,
        random_transform=noise,
        batch_transform=add_count,
    )
    np.testing.assert_array_equal(ds[4]["image"], plain[4]["image"][:, :, ::-1])
    assert ds[4]["count"] == 8 and ds[4]["noise"].shape == (8,)
    again = image_classification_dataset(
        "cifar10", "train", global_batch_size=8, seed=2, random_transform=noise
    )
    np.testing.assert_array_equal(again[9]["noise"], ds[9]["noise"])
    assert len(set(ds[4]["noise"].tolist()) | set(ds[9]["noise"].tolist())) == 16


@pytest.mark.parametrize("batch_size,process_count", [(16, 1), (16, 2), (64, 4)])
def test_eval_iterator_counts_each_example_once(mock40, batch_size, process_count):
    seen = []
    lengths = set()
    for p in range(process_count):
        batches = list(
            eval_iterator(
                "cifar10",
                "test",
                batch_size=batch_size,
                process_index=p,
                process_count=process_count,
            )
        )
        lengths.add(len(batches))
        for b in batches:
            assert b["image"].shape == (batch_size // process_count, 32, 32, 3)
            assert b["mask"].dtype == bool and np.all(b["image"][~b["mask"]] == 0)
            seen.extend(_keys(b["image"][b["mask"]]))
    assert lengths == {-(-N // batch_size)}
    src = tfds.data_source("cifar10", split="test")
    assert sorted(seen) == sorted(_keys(np.stack([src[i]["image"] for i in range(N)])))


def test_errors_name_the_numbers(mock40):
    with pytest.raises(ValueError, match=r"global_batch_size 64 is larger than cifar10/train \(40"):
        image_classification_dataset("cifar10", "train", global_batch_size=64, seed=0)
    with pytest.raises(ValueError, match="global_batch_size 6 must be positive and divisible by"):
        image_classification_dataset(
            "cifar10", "train", global_batch_size=6, seed=0, process_count=4
        )
    with pytest.raises(ValueError, match="variable size"):
        image_classification_dataset("imagenet2012", "validation", global_batch_size=4, seed=0)
    with pytest.raises(ValueError, match="has no feature 'fine'"):
        image_classification_dataset(
            "cifar100", "train", global_batch_size=4, seed=0, label_key="fine"
        )


def test_resize_and_center_crop():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 255  # the centre 20x20 square is white, the sides black
    out = resize_and_center_crop(image, 10)
    # Centre crop of the half-size image: white; the antialiasing filter blurs the edge columns.
    assert out.shape == (10, 10, 3) and out[:, 1:-1].min() == 255 and out.min() > 128
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    assert resize_and_center_crop(gray, 8).tolist() == gray.tolist()
    crop = resize_and_center_crop(gray, 4, crop_fraction=0.5)  # no resize: centre 4x4
    np.testing.assert_array_equal(crop, gray[2:6, 2:6])


def test_custom_source_through_grain():
    from augpar.data.arrow_pointing import ArrowPointingSource, generate

    source = ArrowPointingSource("train", num_samples=24, resolution=32, seed=9)
    ds = image_classification_dataset(
        "arrow_pointing", "train", global_batch_size=8, seed=0, shuffle=False, source=source
    )
    want = generate("train", num_samples=24, resolution=32, seed=9)
    np.testing.assert_array_equal(ds[1]["image"], want["image"][8:16])
    np.testing.assert_array_equal(ds[1]["label"], want["label"][8:16])
