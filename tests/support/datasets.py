"""Tiny real-format datasets written by the tests: CIFAR-10 binaries and an ImageFolder tree."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """CIFAR-10 binary layout: records of 1 label byte + 3072 pixel bytes (R, G, B planes)."""
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
