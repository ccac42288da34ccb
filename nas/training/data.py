"""Datasets through ``mindspore.dataset``: scikit-learn's digits, CIFAR-10 binaries, ImageFolder trees.

``open_data(DataConfig(source=...))`` detects the kind of source:

- ``digits``: the handwritten digits bundled with scikit-learn (1797 images, 10 classes),
  resized to the resolution and repeated to 3 channels. A real dataset that needs no download.
- a directory holding CIFAR-10 binaries (``data_batch_*.bin`` and ``test_batch.bin``, directly or
  in ``cifar-10-batches-bin/``);
- a directory holding an ImageFolder tree: ``train/<class>/*`` and ``val/<class>/*`` (ImageNet
  layout), or ``<class>/*`` directly.

The *held-out* split is carved from the training data (MnasNet held 50K ImageNet-train images
out for the search), so the search never sees the official test split. ``validation`` is the
official test/val split where one exists, else the held-out split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import transforms, vision
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nas.training.config import DataConfig, DatasetError

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG")


def _shard_kwargs(shard: tuple[int, int] | None) -> dict[str, int]:
    return {} if shard is None else {"num_shards": shard[0], "shard_id": shard[1]}


class Data:
    """Opened data: batched ``mindspore.dataset`` pipelines for each split."""

    def __init__(self, config: DataConfig, kind: str, num_classes: int, sizes: dict[str, int]) -> None:
        self.config = config
        self.kind = kind
        self.num_classes = num_classes
        self.sizes = sizes

    def train(self, batch_size: int, *, shuffle: bool = True, shard: tuple[int, int] | None = None,
              drop_remainder: bool = True, epoch: int = 0) -> Any:
        """The training split (minus the held-out images), optionally one shard of it.

        The shuffle order is seeded by the data seed and ``epoch``: every epoch sees a new order,
        and a resumed run sees exactly the order an uninterrupted one would have.
        """

        ds.config.set_seed(self.config.seed * 1000 + epoch)
        np.random.seed((self.config.seed * 1000 + epoch) % 2**32)  # the digits shift augmentation
        return self._pipeline("train", batch_size, shuffle=shuffle, shard=shard, drop_remainder=drop_remainder)

    def held_out(self, batch_size: int, *, shard: tuple[int, int] | None = None) -> Any:
        """The held-out split used to score candidates."""
        return self._pipeline("held_out", batch_size, shuffle=False, shard=shard, drop_remainder=False)

    def validation(self, batch_size: int, *, shard: tuple[int, int] | None = None) -> Any:
        """The official test/val split, or the held-out split where there is none."""
        split = "validation" if "validation" in self.sizes else "held_out"
        return self._pipeline(split, batch_size, shuffle=False, shard=shard, drop_remainder=False)

    def steps_per_epoch(self, batch_size: int, shards: int = 1) -> int:
        """Full batches per epoch (the last partial batch is dropped); none at all is an error."""
        steps = self.sizes["train"] // shards // batch_size
        if steps < 1:
            raise DatasetError(f"batch_size {batch_size} is larger than the training split "
                               f"({self.sizes['train']} images{f' over {shards} shards' if shards > 1 else ''}); "
                               "use a smaller batch")
        return steps

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:
        raise NotImplementedError


def _resize_digits(images: np.ndarray, resolution: int) -> np.ndarray:

    resized = np.empty((len(images), resolution, resolution), np.float32)
    for index, image in enumerate(images):
        picture = Image.fromarray((image / 16.0).astype(np.float32), mode="F")
        resized[index] = np.asarray(picture.resize((resolution, resolution), Image.BILINEAR))
    return resized


class _DigitsData(Data):
    def __init__(self, config: DataConfig) -> None:
        digits = load_digits()
        images = _resize_digits(digits.images, config.resolution)
        images = (images - 0.5) / 0.5
        images = np.repeat(images[:, None], 3, axis=1)  # NCHW, three identical channels
        labels = digits.target.astype(np.int32)
        train_x, held_x, train_y, held_y = train_test_split(
            images, labels, test_size=config.held_out, random_state=config.seed, stratify=labels)
        self.arrays = {"train": (train_x, train_y), "held_out": (held_x, held_y)}
        super().__init__(config, "digits", 10, {"train": len(train_y), "held_out": len(held_y)})

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:

        images, labels = self.arrays[split]
        dataset = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=shuffle,
                                        **_shard_kwargs(shard))
        if self.config.augment and split == "train":
            dataset = dataset.map(_random_shift, input_columns=["image"])
        return dataset.batch(batch_size, drop_remainder=drop_remainder)


def _random_shift(image: np.ndarray) -> np.ndarray:
    """Shift a CHW image by up to 2 pixels, filling with the background value."""
    dy, dx = np.random.randint(-2, 3, size=2)
    shifted = np.full_like(image, image.min())
    height, width = image.shape[1:]
    shifted[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        image[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return shifted


def _image_transforms(resolution: int, train: bool, augment: bool, decoded: bool) -> list[Any]:

    steps: list[Any] = [] if decoded else [vision.Decode()]
    if train and augment:
        steps += [vision.RandomResizedCrop(resolution, scale=(0.25, 1.0)), vision.RandomHorizontalFlip()]
    else:
        steps += [vision.Resize(int(round(resolution / 0.875))) if not decoded else vision.Resize(resolution),
                  vision.CenterCrop(resolution)]
    steps += [vision.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), vision.HWC2CHW()]
    return steps


class _CifarData(Data):
    """CIFAR-10 binaries: records of one label byte and 3072 pixel bytes (R, G, B planes)."""

    RECORD = 1 + 3 * 32 * 32

    def __init__(self, config: DataConfig, root: Path) -> None:

        train_x, train_y = self._read(sorted(root.glob("data_batch_*.bin")))
        if len(train_y) < 2:
            raise DatasetError(f"CIFAR-10 directory {str(root)!r} holds {len(train_y)} training images; need 2+")
        self.arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        stratify = train_y if np.bincount(train_y).min(initial=2) >= 2 and len(set(train_y)) > 1 else None
        try:
            fit_x, held_x, fit_y, held_y = train_test_split(train_x, train_y, test_size=config.held_out,
                                                            random_state=config.seed, stratify=stratify)
        except ValueError:  # too few images per class to stratify
            fit_x, held_x, fit_y, held_y = train_test_split(train_x, train_y, test_size=config.held_out,
                                                            random_state=config.seed)
        self.arrays = {"train": (fit_x, fit_y), "held_out": (held_x, held_y)}
        test = root / "test_batch.bin"
        if test.is_file():
            self.arrays["validation"] = self._read([test])
        super().__init__(config, "cifar10", 10, {split: len(y) for split, (_, y) in self.arrays.items()})

    @classmethod
    def _read(cls, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for path in files:
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size % cls.RECORD:
                raise DatasetError(f"CIFAR-10 file {str(path)!r} is not a whole number of {cls.RECORD}-byte records")
            records = raw.reshape(-1, cls.RECORD)
            labels.append(records[:, 0].astype(np.int32))
            images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # HWC for vision ops
        if not images:
            return np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int32)
        label_array = np.concatenate(labels)
        if label_array.size and label_array.max() > 9:
            raise DatasetError(f"CIFAR-10 labels must be 0..9 (found {int(label_array.max())})")
        return np.concatenate(images), label_array

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:

        images, labels = self.arrays[split]
        dataset = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=shuffle, **_shard_kwargs(shard))
        transforms = _image_transforms(self.config.resolution, split == "train", self.config.augment, decoded=True)
        dataset = dataset.map(transforms, input_columns=["image"], num_parallel_workers=self.config.workers)
        return dataset.batch(batch_size, drop_remainder=drop_remainder)


class _FolderData(Data):
    """ImageFolder trees: ``train/`` and ``val/`` subtrees, or class folders directly."""

    def __init__(self, config: DataConfig, root: Path, official: Path | None) -> None:
        self.root, self.official = root, official
        total = self._source(root, shuffle=False).get_dataset_size()
        if total < 2:
            raise DatasetError(f"dataset {str(root)!r} holds {total} images; need at least 2")
        held = max(1, int(round(total * config.held_out)))
        sizes = {"train": total - held, "held_out": held}
        if official is not None:
            sizes["validation"] = self._source(official, shuffle=False).get_dataset_size()
        super().__init__(config, "imagefolder", len(self._class_names(root)), sizes)

    @staticmethod
    def _class_names(root: Path) -> list[str]:
        return sorted(entry.name for entry in root.iterdir() if entry.is_dir())

    def _source(self, root: Path, *, shuffle: bool = False, shard: tuple[int, int] | None = None,
                sampler: Any = None) -> Any:

        indexing = {name: index for index, name in enumerate(self._class_names(self.root))}
        if sampler is not None:
            return ds.ImageFolderDataset(str(root), sampler=sampler, class_indexing=indexing,
                                         extensions=list(IMAGE_SUFFIXES))
        return ds.ImageFolderDataset(str(root), shuffle=shuffle, class_indexing=indexing,
                                     extensions=list(IMAGE_SUFFIXES), **_shard_kwargs(shard))

    def _split_indices(self, split: str) -> list[int]:
        """The images of ``split``: a permutation seeded by the data seed alone, so the held-out
        images never change with the epoch or the shard."""
        total = self.sizes["train"] + self.sizes["held_out"]
        order = np.random.RandomState(self.config.seed).permutation(total)
        held = self.sizes["held_out"]
        return sorted(int(i) for i in (order[:held] if split == "held_out" else order[held:]))

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:
        if split == "validation":
            assert self.official is not None
            dataset = self._source(self.official, shard=shard)
        else:
            indices = self._split_indices(split)
            if shard is not None:
                indices = indices[shard[1]::shard[0]]
            sampler = ds.SubsetRandomSampler(indices) if shuffle else ds.SubsetSampler(indices)
            dataset = self._source(self.root, sampler=sampler)
        steps = _image_transforms(self.config.resolution, split == "train", self.config.augment, decoded=False)
        dataset = dataset.map(steps, input_columns=["image"], num_parallel_workers=self.config.workers)
        dataset = dataset.map(transforms.TypeCast(ms.int32), input_columns=["label"])
        return dataset.batch(batch_size, drop_remainder=drop_remainder)


def _find_cifar(root: Path) -> Path | None:
    for candidate in (root, root / "cifar-10-batches-bin"):
        if candidate.is_dir() and any(candidate.glob("data_batch_*.bin")):
            return candidate
    return None


def open_data(config: DataConfig | str) -> Data:
    """Open ``digits`` or a dataset directory (CIFAR-10 binaries or an ImageFolder tree)."""
    if isinstance(config, str):
        config = DataConfig(source=config)
    if config.source == "digits":
        return _DigitsData(config)
    root = Path(config.source).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset directory {str(root)!r} not found (use 'digits' or a directory holding "
                           "CIFAR-10 binaries or an ImageFolder tree)")
    cifar = _find_cifar(root)
    if cifar is not None:
        return _CifarData(config, cifar)
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir():
        if not _FolderData._class_names(train_dir):
            raise DatasetError(f"ImageFolder {str(train_dir)!r} has no class directories")
        return _FolderData(config, train_dir, val_dir if val_dir.is_dir() else None)
    classes = [entry for entry in root.iterdir() if entry.is_dir()]
    if not classes or not any(path.suffix in IMAGE_SUFFIXES for folder in classes for path in folder.iterdir()):
        raise DatasetError(f"dataset directory {str(root)!r} holds neither CIFAR-10 binaries "
                           "(data_batch_*.bin) nor an ImageFolder tree (<class>/<image>)")
    return _FolderData(config, root, None)


_OPENED: dict[DataConfig, Data] = {}


def open_cached(config: DataConfig) -> Data:
    """``open_data(config)``, opened once per process: Ray workers are reused across jobs, so a
    campaign or NetAdapt worker reads its dataset once (the last config only, so memory stays
    bounded)."""
    if config not in _OPENED:
        _OPENED.clear()
        _OPENED[config] = open_data(config)
    return _OPENED[config]
