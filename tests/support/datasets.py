"""Tiny real-format datasets written by the tests: CIFAR-10 binaries, MNIST-style IDX files and an
ImageFolder tree."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 10000, seed: int = 0) -> Path:
    """CIFAR-10 binary layout: records of 1 label byte + 3072 pixel bytes (R, G, B planes), 10,000
    per file as in the real files (``mindspore.dataset.Cifar10Dataset`` reads whole files only)."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.randint(0, 10, per_batch).astype(np.uint8)
        pixels = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
        # Make the classes learnable: brightness of the red plane encodes the label.
        pixels[:, :1024] = (labels[:, None] * 25).astype(np.uint8)
        records = np.concatenate([labels[:, None], pixels], axis=1)
        (folder / name).write_bytes(records.tobytes())
    return root


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 20,
                       with_val: bool = True, seed: int = 0) -> Path:
    """ImageFolder tree: ``train/<class>/*.png`` (and ``val/...``), each class a different colour."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    splits = ["train", "val"] if with_val else [""]
    for split in splits:
        for label in range(classes):
            folder = root / split / f"class_{label}" if split else root / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                pixels = rng.randint(0, 60, (size, size, 3)).astype(np.uint8)
                pixels[..., label % 3] += 150
                Image.fromarray(pixels).save(folder / f"img_{index}.png")
    return root


def write_idx(root: Path, train: int = 40, test: int = 10, size: int = 28, gz: bool = True, seed: int = 0,
              labels_short_by: int = 0) -> Path:
    """MNIST-style IDX files (big-endian headers: magic, counts, rows, columns; then uint8 data),
    gzipped like the distributed ones. Each class is a bright square at its own place, so the
    classes are learnable. ``labels_short_by`` writes that many labels fewer than images."""
    rng = np.random.RandomState(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.randint(0, 10, count).astype(np.uint8)
        images = rng.randint(0, 40, (count, size, size)).astype(np.uint8)
        for index, label in enumerate(labels):
            row, column = divmod(int(label), 5)
            images[index, 2 + 12 * row:10 + 12 * row, 1 + 5 * column:5 + 5 * column] = 250
        kept = count - labels_short_by
        image_bytes = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (count, size, size)) \
            + images.tobytes()
        label_bytes = (2049).to_bytes(4, "big") + kept.to_bytes(4, "big") + labels[:kept].tobytes()
        for name, data in ((f"{prefix}-images-idx3-ubyte", image_bytes), (f"{prefix}-labels-idx1-ubyte", label_bytes)):
            if gz:
                with gzip.open(root / f"{name}.gz", "wb") as handle:
                    handle.write(data)
            else:
                (root / name).write_bytes(data)
    return root
