"""Dataset loaders on digits and on tiny CIFAR-10 / ImageFolder files written here."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nas.training.config import DataConfig, DatasetError
from nas.training.data import open_data
from tests.support.datasets import write_cifar10, write_image_folder


def _first_batch(dataset):
    images, labels = next(dataset.create_tuple_iterator(num_epochs=1))
    return images.asnumpy(), labels.asnumpy()


def test_digits_split_is_stratified_and_deterministic() -> None:
    data = open_data(DataConfig("digits", resolution=16, seed=3))
    assert data.num_classes == 10 and data.sizes == {"train": 1437, "held_out": 360}
    images, labels = _first_batch(data.held_out(360))
    assert images.shape == (360, 3, 16, 16) and images.dtype == np.float32
    assert np.bincount(labels, minlength=10).min() >= 35  # stratified: about 36 per class
    again, again_labels = _first_batch(open_data(DataConfig("digits", resolution=16, seed=3)).held_out(360))
    np.testing.assert_array_equal(labels, again_labels)
    np.testing.assert_array_equal(images, again)


def test_cifar10_binaries(tmp_path) -> None:
    data = open_data(DataConfig(str(write_cifar10(tmp_path)), resolution=24, held_out=0.2))
    assert data.kind == "cifar10" and data.num_classes == 10
    assert data.sizes == {"train": 80, "held_out": 20, "validation": 20}
    images, labels = _first_batch(data.train(8))
    assert images.shape == (8, 3, 24, 24) and labels.dtype == np.int32
    assert sum(1 for _ in data.validation(7).create_tuple_iterator(num_epochs=1)) == 3


@pytest.mark.parametrize("with_val", [True, False])
def test_image_folder(tmp_path, with_val: bool) -> None:
    root = write_image_folder(tmp_path, with_val=with_val)
    data = open_data(DataConfig(str(root), resolution=16, held_out=0.25, augment=True))
    assert data.kind == "imagefolder" and data.num_classes == 3
    assert data.sizes["train"] + data.sizes["held_out"] == 18
    assert ("validation" in data.sizes) == with_val
    images, labels = _first_batch(data.train(4))
    assert images.shape == (4, 3, 16, 16) and set(labels) <= {0, 1, 2}
    held = sum(len(labels) for _, labels in data.held_out(5).create_tuple_iterator(num_epochs=1))
    assert held == data.sizes["held_out"]


def test_shards_partition_the_training_split() -> None:
    data = open_data(DataConfig("digits", resolution=8))

    def rows(shard):
        batches = data.train(1, shuffle=False, shard=shard, drop_remainder=False).create_tuple_iterator(num_epochs=1)
        return [images.asnumpy().tobytes() for images, _ in batches]

    everything = rows(None)
    first, second = rows((2, 0)), rows((2, 1))
    # Equal shards (as data parallel needs): 1437 images pad to 2 x 719, one image seen twice.
    assert len(everything) == 1437 and len(first) == len(second) == 719
    extra = Counter(first + second) - Counter(everything)
    assert not Counter(everything) - Counter(first + second) and sum(extra.values()) == 1


def test_a_batch_larger_than_the_split_is_a_named_error() -> None:
    data = open_data(DataConfig("digits", resolution=8))
    with pytest.raises(DatasetError, match="batch_size 2000 is larger than the training split"):
        data.steps_per_epoch(2000)


@pytest.mark.parametrize("make,message", [
    (lambda p: str(p / "nowhere"), "not found"),
    (lambda p: str(p), "neither CIFAR-10 binaries"),
])
def test_missing_or_unrecognised_dataset(tmp_path, make, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        open_data(DataConfig(make(tmp_path)))


def test_bad_data_config() -> None:
    with pytest.raises(DatasetError, match="data.held_out"):
        DataConfig(held_out=1.5)
    with pytest.raises(DatasetError, match="data.resolution"):
        DataConfig(resolution=2)


def test_held_out_split_does_not_move_with_the_epoch(tmp_path) -> None:
    data = open_data(DataConfig(str(write_image_folder(tmp_path, with_val=False, per_class=8)), resolution=8))

    def held_images():
        return np.concatenate([i.asnumpy() for i, _ in data.held_out(50).create_tuple_iterator(num_epochs=1)])

    first = held_images()
    data.train(4, epoch=7)
    np.testing.assert_array_equal(held_images(), first)
