"""Reader for the standard `tiny-imagenet-200/` layout.

    wnids.txt                      one WordNet id per line; its order defines the labels
    words.txt                      "<wnid>\\t<names>" (optional: names fall back to the wnid)
    train/<wnid>/images/*.JPEG
    val/images/*.JPEG + val/val_annotations.txt  ("<file>\\t<wnid>\\t<bbox...>")

Every problem is a DataError naming the file: a missing list or folder, an annotation naming an
unknown class or a missing image, a JPEG that does not decode.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from defenses.data.split import IMAGE_SIZE, DataError, Split


def read_wnids(root: Path) -> list[str]:
    path = root / "wnids.txt"
    if not path.is_file():
        raise DataError(f"not a tiny-imagenet-200 folder: {path} is missing")
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise DataError(f"{path} lists no classes")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{path} lists a class twice")
    return wnids


def read_class_names(root: Path, wnids: list[str]) -> tuple[str, ...]:
    path = root / "words.txt"
    words: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            wnid, _, names = line.partition("\t")
            words[wnid.strip()] = names.split(",")[0].strip()
    return tuple(words.get(w) or w for w in wnids)


def list_files(root: Path, split: str, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    """The image files of a split and their labels, in a deterministic order."""
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            folder = root / "train" / wnid / "images"
            if not folder.is_dir():
                raise DataError(f"incomplete tiny-imagenet-200 folder: {folder} is missing")
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
            if not found:
                raise DataError(f"incomplete tiny-imagenet-200 folder: {folder} holds no images")
            files += found
            labels += [index[wnid]] * len(found)
    elif split == "val":
        annotations = root / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise DataError(f"incomplete tiny-imagenet-200 folder: {annotations} is missing")
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise DataError(f"{annotations}:{number}: expected '<file>\\t<wnid>...', got {line!r}")
            name, wnid = parts[0].strip(), parts[1].strip()
            if wnid not in index:
                raise DataError(f"{annotations}:{number}: class {wnid!r} is not in wnids.txt")
            files.append(root / "val" / "images" / name)
            labels.append(index[wnid])
        if not files:
            raise DataError(f"{annotations} lists no images")
    else:
        raise DataError(f"split must be 'train' or 'val' (the test split has no labels), got {split!r}")
    return files, np.asarray(labels, dtype=np.int64)


def decode(path: Path) -> np.ndarray:
    """One image as uint8 [64,64,3]; grayscale and CMYK become RGB, other sizes are resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image listed but missing: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"corrupt image {path}: {error}") from None


def read_split(root: Path, split: str, num_classes: int | None = None) -> Split:
    """Decodes a split (in parallel: Pillow releases the GIL while decoding)."""
    root = Path(root)
    wnids = read_wnids(root)
    if num_classes is not None:
        if not 1 <= num_classes <= len(wnids):
            raise DataError(f"num_classes must be in [1, {len(wnids)}] for {root}, got {num_classes}")
        wnids = wnids[:num_classes]
    files, labels = list_files(root, split, wnids)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = np.stack(list(pool.map(decode, files)))
    return Split(images=images, labels=labels, class_names=read_class_names(root, wnids))


def fingerprint(root: Path) -> str:
    """What the cache key of a tree depends on: its lists' sizes and modification times."""
    parts = []
    for name in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        path = Path(root) / name
        if path.is_file():
            stat = path.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)
