"""Dataset loaders on digits, on Fashion-MNIST where Debian installed it, and on tiny IDX, CIFAR-10
and ImageFolder files written here."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nas.runtime.paths import SYSTEM_DATASETS
from nas.training.config import DataConfig, DatasetError
from nas.training.data import SHIFT, open_data
from tests.support.datasets import write_cifar10, write_idx, write_image_folder


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
    assert data.sizes == {"train": 40000, "held_out": 10000, "validation": 10000}
    images, labels = _first_batch(data.train(8))
    assert images.shape == (8, 3, 24, 24) and labels.dtype == np.int32
    assert sum(1 for _ in data.validation(1500).create_tuple_iterator(num_epochs=1)) == 7
    assert open_data(DataConfig(str(tmp_path), resolution=24, held_out=0.2, subset=100)).sizes["train"] == 100


def test_a_truncated_cifar10_file_is_a_named_error(tmp_path) -> None:
    folder = write_cifar10(tmp_path) / "cifar-10-batches-bin"
    data = (folder / "data_batch_3.bin").read_bytes()
    (folder / "data_batch_3.bin").write_bytes(data[:3073 * 9000])
    with pytest.raises(DatasetError, match="data_batch_3.bin holds 9000 records; the CIFAR-10 binary version has "
                                           "10000 per file"):
        open_data(DataConfig(str(tmp_path)))
    (folder / "data_batch_3.bin").write_bytes(data[:-5])
    with pytest.raises(DatasetError, match="data_batch_3.bin' is not a whole number of 3073-byte records"):
        open_data(DataConfig(str(tmp_path)))


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


def test_digits_shifts_are_fixed_by_the_seed_and_the_epoch() -> None:
    """The augmentation moves each image by at most SHIFT pixels, the same way in every run of
    an epoch (a resumed run trains on the same images) and differently in the next epoch."""
    config = DataConfig("digits", resolution=12, augment=True)
    shifted = open_data(config)

    def images(data, epoch: int) -> np.ndarray:
        batches = data.train(64, shuffle=False, drop_remainder=False, epoch=epoch).create_tuple_iterator(num_epochs=1)
        return np.concatenate([batch.asnumpy() for batch, _ in batches])

    first = images(shifted, 1)
    np.testing.assert_array_equal(first, images(shifted, 1))
    np.testing.assert_array_equal(first, images(open_data(config), 1))
    assert not np.array_equal(first, images(shifted, 2))
    plain = images(open_data(DataConfig("digits", resolution=12, augment=False)), 1)
    assert np.array_equal(first[:, 0], first[:, 1]) and np.array_equal(first[:, 0], first[:, 2])
    moves = set()
    for moved, image in zip(first[:40, 0], plain[:40, 0]):
        matches = [(dy, dx) for dy in range(-SHIFT, SHIFT + 1) for dx in range(-SHIFT, SHIFT + 1)
                   if np.array_equal(moved, _moved(image, dy, dx))]
        assert matches, "an augmented image is not a shift of its original by at most SHIFT pixels"
        moves.add(matches[0])
    assert len(moves) > 5


def _moved(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.full_like(image, image.min())
    height, width = image.shape
    out[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        image[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


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


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """``$NAS_DATA_DIR`` and ``$NAS_CACHE_DIR`` inside the test's directory."""
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_fashion_mnist_idx_files_are_unpacked_once_and_read_by_mindspore(data_dir: Path, tmp_path) -> None:
    write_idx(data_dir / "fashion-mnist", train=50, test=12)
    data = open_data(DataConfig("fashion-mnist", resolution=32, held_out=0.2, augment=True))
    assert data.kind == "fashion-mnist" and data.num_classes == 10
    assert data.sizes == {"train": 40, "held_out": 10, "validation": 12}
    images, labels = _first_batch(data.train(8))
    assert images.shape == (8, 3, 32, 32) and images.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_array_equal(images[:, 0], images[:, 2])  # grayscale replicated to 3 channels
    assert -1.0 <= images.min() < images.max() <= 1.0
    unpacked = sorted((tmp_path / "cache" / "datasets").glob("fashion-mnist-*/*"))
    assert [path.name for path in unpacked] == sorted(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                                        "train-images-idx3-ubyte", "train-labels-idx1-ubyte"])
    times = [path.stat().st_mtime_ns for path in unpacked]
    again = open_data(DataConfig("fashion-mnist", resolution=28, held_out=0.2, subset=16))
    assert [path.stat().st_mtime_ns for path in unpacked] == times  # not unpacked twice
    assert again.sizes["train"] == 16 and again.sizes["held_out"] == 10
    held = np.concatenate([lab.asnumpy() for _, lab in data.held_out(4).create_tuple_iterator(num_epochs=1)])
    held_again = np.concatenate([lab.asnumpy() for _, lab in again.held_out(4).create_tuple_iterator(num_epochs=1)])
    np.testing.assert_array_equal(held, held_again)  # the subset leaves the held-out split alone
    assert sum(len(lab) for _, lab in again.validation(5).create_tuple_iterator(num_epochs=1)) == 12


def test_a_directory_of_plain_idx_files_is_mnist_style(tmp_path) -> None:
    data = open_data(DataConfig(str(write_idx(tmp_path / "idx", gz=False)), resolution=16, held_out=0.25))
    assert data.kind == "idx" and data.sizes == {"train": 30, "held_out": 10, "validation": 10}
    images, _ = _first_batch(data.held_out(10))
    assert images.shape == (10, 3, 16, 16)


@pytest.mark.skipif(not (SYSTEM_DATASETS / "fashion-mnist").is_dir(),
                    reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_the_real_fashion_mnist_from_debian(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NAS_DATA_DIR", raising=False)
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    data = open_data(DataConfig("fashion-mnist", resolution=28, held_out=0.1, subset=1000))
    assert data.sizes == {"train": 1000, "held_out": 6000, "validation": 10000}  # 60,000 / 10,000 images
    _, labels = _first_batch(data.validation(10000))
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10  # the test split is balanced


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-30])


@pytest.mark.parametrize("damage,message", [
    (lambda d: _truncate(d / "train-images-idx3-ubyte.gz"), "train-images-idx3-ubyte.gz cannot be unpacked"),
    (lambda d: (d / "train-labels-idx1-ubyte.gz").unlink(), "train-labels-idx1-ubyte\\(.gz\\) is missing"),
    (lambda d: write_idx(d, labels_short_by=3), "holds 40 images but .* holds 37 labels"),
])
def test_broken_idx_files_are_named_errors_with_the_apt_line(data_dir: Path, damage, message: str) -> None:
    folder = write_idx(data_dir / "fashion-mnist")
    damage(folder)
    before = {path: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(DatasetError, match=message) as raised:
        open_data(DataConfig("fashion-mnist"))
    assert "apt-get install dataset-fashion-mnist" in str(raised.value)
    assert {path: path.read_bytes() for path in folder.iterdir()} == before  # nothing written beside them


def test_a_subset_larger_than_the_training_split_is_a_named_error(data_dir: Path) -> None:
    write_idx(data_dir / "fashion-mnist", train=50)
    with pytest.raises(DatasetError, match="data.subset: 41 is more than .* holds \\(40 images"):
        open_data(DataConfig("fashion-mnist", held_out=0.2, subset=41))
    with pytest.raises(DatasetError, match="data.subset: 2000 is more than"):
        open_data(DataConfig("digits", subset=2000))
    with pytest.raises(DatasetError, match="data.subset"):
        DataConfig(subset=-1)


def test_named_sources_are_looked_for_in_order(data_dir: Path) -> None:
    assert os.environ["NAS_DATA_DIR"] == str(data_dir)
    write_idx(data_dir, train=20)  # directly in $NAS_DATA_DIR
    assert open_data(DataConfig("mnist")).sizes["train"] == 16
    write_idx(data_dir / "mnist", train=30)  # $NAS_DATA_DIR/mnist comes first
    assert open_data(DataConfig("mnist")).sizes["train"] == 24


def test_fashion_mnist_nowhere_says_how_to_install_it(data_dir: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("nas.runtime.paths.SYSTEM_DATASETS", tmp_path / "usr-share-datasets")
    with pytest.raises(DatasetError, match="Fashion-MNIST not found: .* install it with 'apt-get install "
                                           "dataset-fashion-mnist'"):
        open_data(DataConfig("fashion-mnist"))
