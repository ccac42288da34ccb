"""Datasets through ``mindspore.dataset``: scikit-learn's digits, Fashion-MNIST and MNIST, CIFAR-10,
ImageFolder trees.

``open_data(DataConfig(source=...))`` detects the kind of source:

- ``digits``: the handwritten digits bundled with scikit-learn (1797 images, 10 classes),
  resized to the resolution, kept with one channel and repeated to 3 per image as it is read. A
  real dataset that needs no download.
- ``fashion-mnist`` / ``mnist``: the IDX files (60,000 training and 10,000 test images of 28 x 28
  pixels, 10 classes), read by ``mindspore.dataset.FashionMnistDataset`` / ``MnistDataset``.
  They are looked for in ``$NAS_DATA_DIR/<name>``, ``$NAS_DATA_DIR``, then
  ``/usr/share/datasets/<name>`` (``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST
  there). Gzipped files are unpacked once into ``$NAS_CACHE_DIR/datasets``. A directory
  holding IDX files is read the same way (as MNIST-style data).
- a directory holding CIFAR-10 binaries (``data_batch_*.bin`` and ``test_batch.bin``, directly or
  in ``cifar-10-batches-bin/``), read by ``mindspore.dataset.Cifar10Dataset``;
- a directory holding an ImageFolder tree: ``train/<class>/*`` and ``val/<class>/*`` (ImageNet
  layout), or ``<class>/*`` directly.

The *held-out* split is carved from the training data (MnasNet held 50K ImageNet-train images
out for the search), so the search never sees the official test split. ``validation`` is the
official test/val split where one exists, else the held-out split.

**Grayscale images are replicated to 3 channels** (Fashion-MNIST, MNIST, digits), so every spec
keeps a 3-channel stem: the searched network deploys on RGB input unchanged, its latency is the
deployed network's, and the references' stems need no change. The stem's extra input channels
cost about 1% of a mobile network's multiply-adds.

``DataConfig.subset`` keeps only that many training images (the proxy task's subset), drawn by
the data seed after the held-out images are set aside; more than the split holds is an error.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import transforms, vision
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nas.runtime.paths import cache_dir, data_dirs
from nas.training.config import DataConfig, DatasetError

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG")
SHIFT = 2  # digits augmentation: each training image moves by up to this many pixels each way, per epoch


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
        images -= 0.5
        images /= 0.5
        # Kept with one channel (NCHW, C=1) and repeated to three per image as it is read: at 224 px
        # the three copies held a gigabyte in every process that opened the data.
        images = images[:, None]
        labels = digits.target.astype(np.int32)
        train_x, held_x, train_y, held_y = train_test_split(
            images, labels, test_size=config.held_out, random_state=config.seed, stratify=labels)
        train_x, train_y = _subset_arrays(config, train_x, train_y, "digits")
        self.arrays = {"train": (train_x, train_y), "held_out": (held_x, held_y)}
        super().__init__(config, "digits", 10, {"train": len(train_y), "held_out": len(held_y)})

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:

        images, labels = self.arrays[split]
        columns = {"image": images, "label": labels}
        augment = self.config.augment and split == "train"
        if augment:
            # Every image's shift for this epoch, drawn up front from the epoch's seed (set by
            # ``train``): drawn inside the map, from NumPy's global generator, they depended on
            # how the pipeline's threads interleaved and changed from one run to the next.
            rng = np.random.RandomState(ds.config.get_seed() % 2**32)
            columns["shift"] = rng.randint(-SHIFT, SHIFT + 1, size=(len(labels), 2)).astype(np.int32)
        dataset = ds.NumpySlicesDataset(columns, shuffle=shuffle, **_shard_kwargs(shard))
        if augment:
            dataset = dataset.map(_shift, input_columns=["image", "shift"], output_columns=["image"])
        dataset = dataset.map(_three_channels, input_columns=["image"]).project(["image", "label"])
        return dataset.batch(batch_size, drop_remainder=drop_remainder)


def _three_channels(image: np.ndarray) -> np.ndarray:
    """A one-channel CHW image as three identical channels."""
    return np.repeat(image, 3, axis=0)


def _shift(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Shift a CHW image by ``shift`` = (dy, dx) pixels, filling with the background value."""
    dy, dx = (int(value) for value in shift)
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


def _split_indices(total: int, config: DataConfig, source: str) -> dict[str, list[int]]:
    """The training and held-out images of a training split of ``total``: a permutation seeded by
    the data seed alone (the held-out images never move with the epoch or the shard), the
    held-out ones first; ``config.subset`` keeps that many of the rest."""
    order = np.random.RandomState(config.seed).permutation(total)
    held = max(1, int(round(total * config.held_out)))
    train = order[held:][:_subset_size(config, held_out_removed=len(order) - held, source=source)]
    return {"train": sorted(int(i) for i in train), "held_out": sorted(int(i) for i in order[:held])}


def _subset_size(config: DataConfig, held_out_removed: int, source: str) -> int:
    """How many training images ``config.subset`` keeps of ``held_out_removed`` (all for 0); more
    than there are is a named error."""
    if config.subset > held_out_removed:
        raise DatasetError(f"data.subset: {config.subset} is more than the training split of {source} holds "
                           f"({held_out_removed} images once the held-out ones are set aside); use a subset of at "
                           f"most {held_out_removed}")
    return config.subset or held_out_removed


def _subset_arrays(config: DataConfig, images: np.ndarray, labels: np.ndarray,
                   source: str) -> tuple[np.ndarray, np.ndarray]:
    """The first ``config.subset`` of an already shuffled training split (all of it for 0)."""
    count = _subset_size(config, len(labels), source)
    return images[:count], labels[:count]


class _IndexedData(Data):
    """A ``mindspore.dataset`` reader with a train and a test usage; the held-out split and the
    subset are index lists into the train usage."""

    def __init__(self, config: DataConfig, kind: str, num_classes: int, train_total: int,
                 test_total: int, source: str) -> None:
        self.indices = _split_indices(train_total, config, source)
        sizes = {split: len(indices) for split, indices in self.indices.items()}
        if test_total:
            sizes["validation"] = test_total
        super().__init__(config, kind, num_classes, sizes)

    def _reader(self, usage: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _transforms(self, train: bool) -> list[Any]:
        raise NotImplementedError

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:
        if split == "validation":
            dataset = self._reader("test", shuffle=False, **_shard_kwargs(shard))
        else:
            indices = self.indices[split]
            if shard is not None:
                indices = indices[shard[1]::shard[0]]
            sampler = ds.SubsetRandomSampler(indices) if shuffle else ds.SubsetSampler(indices)
            dataset = self._reader("train", sampler=sampler)
        dataset = dataset.map(self._transforms(split == "train" and self.config.augment), input_columns=["image"],
                              num_parallel_workers=self.config.workers)
        dataset = dataset.map(transforms.TypeCast(ms.int32), input_columns=["label"])
        return dataset.batch(batch_size, drop_remainder=drop_remainder)


class _CifarData(_IndexedData):
    """CIFAR-10 binaries (files of 10,000 records of one label byte and 3072 pixel bytes) read by
    ``mindspore.dataset.Cifar10Dataset``; only the files' sizes are checked here."""

    RECORD = 1 + 3 * 32 * 32
    PER_FILE = 10000  # Cifar10Dataset reads whole files of the official layout

    def __init__(self, config: DataConfig, root: Path) -> None:
        self.root = root
        train_total = self._count(sorted(root.glob("data_batch_*.bin")))
        if train_total < 2:
            raise DatasetError(f"CIFAR-10 directory {str(root)!r} holds {train_total} training images; need 2+")
        test = root / "test_batch.bin"
        super().__init__(config, "cifar10", 10, train_total, self._count([test]) if test.is_file() else 0,
                         f"CIFAR-10 in {root}")

    @classmethod
    def _count(cls, files: list[Path]) -> int:
        total = 0
        for path in files:
            size = path.stat().st_size
            if size % cls.RECORD:
                raise DatasetError(f"CIFAR-10 file {str(path)!r} is not a whole number of {cls.RECORD}-byte records "
                                   f"({size} bytes): truncated? fetch it again")
            if size // cls.RECORD != cls.PER_FILE:
                raise DatasetError(f"CIFAR-10 file {path} holds {size // cls.RECORD} records; the CIFAR-10 binary "
                                   f"version has {cls.PER_FILE} per file (truncated? fetch it again)")
            total += size // cls.RECORD
        return total

    def _reader(self, usage: str, **kwargs: Any) -> Any:
        return ds.Cifar10Dataset(str(self.root), usage=usage, **kwargs)

    def _transforms(self, train: bool) -> list[Any]:
        return _image_transforms(self.config.resolution, train, train, decoded=True)


IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_IMAGES, IDX_LABELS = 2051, 2049  # the magic numbers of an IDX image and label file (uint8 data)


@dataclasses.dataclass(frozen=True)
class IdxSet:
    """A named MNIST-style dataset: its title, its ``mindspore.dataset`` reader, whether a
    horizontal flip keeps a label (clothes: yes; digits: no), and the package that installs it."""

    title: str
    reader: str
    flips: bool
    install: str | None


IDX_SETS = {
    "fashion-mnist": IdxSet("Fashion-MNIST", "FashionMnistDataset", True, "apt-get install dataset-fashion-mnist"),
    "mnist": IdxSet("MNIST", "MnistDataset", False, None),
}
NAMED = ("digits", *IDX_SETS)  # the sources named rather than given as a directory


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _has_idx(folder: Path) -> bool:
    return folder.is_dir() and all(_idx_path(folder, name) is not None for name in IDX_FILES["train"])


def _idx_header(path: Path, raw: bytes, images: bool, hint: str) -> tuple[int, int]:
    """``(count, bytes per item)`` from an IDX header, checked against its magic number."""
    size = 16 if images else 8
    magic = IDX_IMAGES if images else IDX_LABELS
    if len(raw) < size or int.from_bytes(raw[:4], "big") != magic:
        raise DatasetError(f"{path} is not an IDX {'image' if images else 'label'} file (magic number "
                           f"{int.from_bytes(raw[:4], 'big') if len(raw) >= 4 else 'missing'}, expected {magic}){hint}")
    count = int.from_bytes(raw[4:8], "big")
    item = int.from_bytes(raw[8:12], "big") * int.from_bytes(raw[12:16], "big") if images else 1
    return count, item


class _IdxData(_IndexedData):
    """Fashion-MNIST, MNIST or any MNIST-style IDX directory, read by ``mindspore.dataset``."""

    def __init__(self, config: DataConfig, folder: Path, name: str, idx: IdxSet) -> None:
        self.idx = idx
        self.hint = f"; install it with '{idx.install}'" if idx.install else ""
        ready = self._unpacked(folder, name)
        counts = {usage: self._check(ready, *IDX_FILES[usage], folder)
                  for usage in IDX_FILES if (ready / IDX_FILES[usage][0]).is_file()}
        self.folder = ready
        super().__init__(config, name, 10, counts["train"], counts.get("test", 0), f"{idx.title} in {folder}")

    def _unpacked(self, folder: Path, name: str) -> Path:
        """``folder`` where its IDX files are plain, else their unpacked copies under the cache
        (once per source: a second open finds them)."""
        present = {file: _idx_path(folder, file) for usage in IDX_FILES.values() for file in usage}
        if all(path is None or path.suffix != ".gz" for path in present.values()):
            return folder
        stat = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in present.values() if p is not None]
        key = hashlib.sha1(repr(stat).encode()).hexdigest()[:12]
        target = cache_dir() / "datasets" / f"{name}-{key}"
        target.mkdir(parents=True, exist_ok=True)
        for file, path in present.items():
            if path is None:
                continue
            if path.suffix != ".gz":
                if not (target / file).exists():
                    shutil.copyfile(path, target / file)
                continue
            if (target / file).is_file():
                continue
            temporary = target / f"{file}.{os.getpid()}.tmp"
            try:
                with gzip.open(path, "rb") as source, open(temporary, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            except (EOFError, OSError, zlib.error) as error:
                temporary.unlink(missing_ok=True)
                raise DatasetError(f"{path} cannot be unpacked ({error}): truncated or corrupt{self.hint}") from None
            os.replace(temporary, target / file)
        return target

    def _check(self, folder: Path, images_name: str, labels_name: str, source: Path) -> int:
        """The number of images of one usage, after checking both files' headers and sizes."""
        images, labels = folder / images_name, folder / labels_name
        if not labels.is_file():
            raise DatasetError(f"{source / labels_name} is missing (beside {images_name}){self.hint}")
        counts = []
        for path, is_images in ((images, True), (labels, False)):
            with open(path, "rb") as handle:
                count, item = _idx_header(path, handle.read(16), is_images, self.hint)
            expected = (16 if is_images else 8) + count * item
            if path.stat().st_size != expected:
                raise DatasetError(f"{path} holds {path.stat().st_size} bytes but its header promises {expected} "
                                   f"({count} items): truncated or corrupt{self.hint}")
            counts.append(count)
        if counts[0] != counts[1]:
            raise DatasetError(f"{images} holds {counts[0]} images but {labels} holds {counts[1]} labels; "
                               f"they must match{self.hint}")
        if counts[0] < 2:
            raise DatasetError(f"{images} holds {counts[0]} images; need at least 2")
        return counts[0]

    def _reader(self, usage: str, **kwargs: Any) -> Any:
        return getattr(ds, self.idx.reader)(str(self.folder), usage=usage, **kwargs)

    def _transforms(self, train: bool) -> list[Any]:
        steps: list[Any] = []
        if train:
            steps.append(vision.RandomCrop(28, padding=2))
            if self.idx.flips:
                steps.append(vision.RandomHorizontalFlip())
        if self.config.resolution != 28:
            steps.append(vision.Resize((self.config.resolution, self.config.resolution)))
        return [*steps, vision.Rescale(1 / 127.5, -1.0), vision.HWC2CHW(), _three_channels]


def _three_channels(image: np.ndarray) -> np.ndarray:
    """A 1-channel CHW image repeated to 3 channels (see the module's note on grayscale)."""
    return np.repeat(image, 3, axis=0)


def find_idx(name: str) -> Path:
    """The first directory of :func:`nas.runtime.paths.data_dirs` holding ``name``'s IDX files."""
    tried = data_dirs(name)
    idx = IDX_SETS[name]
    for folder in tried:
        if _has_idx(folder):
            return folder
        present = [file for usage in IDX_FILES.values() for file in usage if _idx_path(folder, file) is not None]
        if present:  # some of the files, not the training pair: a broken copy, not an absent one
            missing = next(file for file in IDX_FILES["train"] if file not in present)
            raise DatasetError(f"{folder / missing}(.gz) is missing beside {present[0]}"
                               + (f"; install it with '{idx.install}'" if idx.install else ""))
    how = f"install it with '{idx.install}', or put" if idx.install else "put"
    raise DatasetError(f"{idx.title} not found: no {IDX_FILES['train'][0]}(.gz) in "
                       f"{', '.join(str(folder) for folder in tried)}; {how} its IDX files in $NAS_DATA_DIR/{name}")


class _FolderData(Data):
    """ImageFolder trees: ``train/`` and ``val/`` subtrees, or class folders directly."""

    def __init__(self, config: DataConfig, root: Path, official: Path | None) -> None:
        self.root, self.official = root, official
        total = self._source(root, shuffle=False).get_dataset_size()
        if total < 2:
            raise DatasetError(f"dataset {str(root)!r} holds {total} images; need at least 2")
        self.indices = _split_indices(total, config, f"the ImageFolder {root}")
        sizes = {split: len(indices) for split, indices in self.indices.items()}
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

    def _pipeline(self, split: str, batch_size: int, *, shuffle: bool, shard: tuple[int, int] | None,
                  drop_remainder: bool) -> Any:
        if split == "validation":
            assert self.official is not None
            dataset = self._source(self.official, shard=shard)
        else:
            indices = self.indices[split]
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
    """Open ``digits``, ``fashion-mnist``, ``mnist`` or a dataset directory (MNIST-style IDX
    files, CIFAR-10 binaries or an ImageFolder tree)."""
    if isinstance(config, str):
        config = DataConfig(source=config)
    if config.source == "digits":
        return _DigitsData(config)
    if config.source in IDX_SETS:
        return _IdxData(config, find_idx(config.source), config.source, IDX_SETS[config.source])
    root = Path(config.source).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset directory {str(root)!r} not found (use {', '.join(NAMED)} or a directory "
                           "holding IDX files, CIFAR-10 binaries or an ImageFolder tree)")
    if _has_idx(root):
        return _IdxData(config, root, "idx", IdxSet(f"the IDX files of {root}", "MnistDataset", False, None))
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
