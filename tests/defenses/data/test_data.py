"""The data layer: embedded generator, Tiny ImageNet reader, cache, evaluation samples."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from arena.ground.contract import worst_case_distances
from defenses.data import DataError, load_samples, load_split, to_float_chw
from defenses.data import embedded
from defenses.data.cache import cache_path
from defenses.data.sources import balanced_order


# ---------------------------------------------------------------- embedded dataset

def test_embedded_is_deterministic_per_seed_and_split():
    a = embedded.generate(10, "val", seed=3, per_class=4)
    b = embedded.generate(10, "val", seed=3, per_class=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    other_seed = embedded.generate(10, "val", seed=4, per_class=4)
    assert not np.array_equal(a.images, other_seed.images)
    train = embedded.generate(10, "train", seed=3, per_class=4)
    assert not np.array_equal(a.images, train.images)


def test_embedded_format_and_balance():
    split = embedded.generate(12, "train", seed=0, per_class=3)
    assert split.images.dtype == np.uint8 and split.images.shape == (36, 64, 64, 3)
    assert np.bincount(split.labels).tolist() == [3] * 12
    assert split.num_classes == 12
    # Images are not flat: the shape and clutter give real structure.
    assert all(img.std() > 10 for img in split.images)


def test_embedded_class_names():
    assert embedded.class_names(10)[:3] == ("disk", "square", "triangle")
    names = embedded.class_names(200)
    assert len(set(names)) == 200 and names[0] == "red disk" and names[199] == "rose frame"
    with pytest.raises(ValueError, match="num_classes"):
        embedded.class_names(201)
    with pytest.raises(ValueError, match="num_classes"):
        load_split("demo", "val", num_classes=1)


def test_demo_split_is_cached(tmp_path):
    first = load_split("demo", "val", num_classes=3, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    second = load_split("demo", "val", num_classes=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, second.images)
    assert second.class_names == first.class_names
    # A damaged cache entry is rebuilt, not trusted.
    files[0].write_bytes(b"garbage")
    third = load_split("demo", "val", num_classes=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, third.images)


# ---------------------------------------------------------------- conversions

def test_to_float_chw_and_worst_case():
    images = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    images[0, 0, 1, 2] = 255
    x = to_float_chw(images)
    assert x.dtype == np.float32 and x.shape == (1, 3, 64, 64)
    assert x[0, 2, 0, 1] == 1.0 and x.sum() == 1.0
    # All zeros but one 1: max(x, 1-x) is 1 everywhere, so the worst case is sqrt(12288).
    np.testing.assert_allclose(worst_case_distances(x), [np.sqrt(12288)])
    half = np.full((1, 3, 64, 64), 0.25, dtype=np.float32)
    np.testing.assert_allclose(worst_case_distances(half), [0.75 * np.sqrt(12288)], rtol=1e-6)


def test_balanced_order_takes_classes_in_turn():
    labels = np.array([2, 2, 0, 1, 0, 2, 1])
    order = balanced_order(labels)
    assert labels[order].tolist() == [0, 1, 2, 0, 1, 2, 2]
    assert order.tolist()[:3] == [2, 3, 0]  # the first of each class, in file order


# ---------------------------------------------------------------- Tiny ImageNet reader

def _jpeg(path, colour, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (64, 64), colour).save(path, "JPEG", quality=95)


@pytest.fixture()
def tiny_tree(tmp_path):
    """A standard-layout tree: 2 classes, 2 train images each (one grayscale), 3 val images."""
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("n01443537\nn01629819\n")
    (root / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n")
    _jpeg(root / "train/n01443537/images/n01443537_0.JPEG", (250, 10, 10))
    _jpeg(root / "train/n01443537/images/n01443537_1.JPEG", 128, mode="L")
    _jpeg(root / "train/n01629819/images/n01629819_0.JPEG", (10, 250, 10))
    _jpeg(root / "train/n01629819/images/n01629819_1.JPEG", (10, 10, 250))
    for i, (wnid, colour) in enumerate([("n01629819", (0, 200, 0)), ("n01443537", (200, 0, 0)), ("n01629819", (0, 0, 200))]):
        _jpeg(root / f"val/images/val_{i}.JPEG", colour)
    (root / "val/val_annotations.txt").write_text(
        "val_0.JPEG\tn01629819\t0\t0\t63\t63\nval_1.JPEG\tn01443537\t1\t1\t60\t60\nval_2.JPEG\tn01629819\t0\t0\t10\t10\n"
    )
    return root


def test_reader_standard_layout(tiny_tree, tmp_path):
    train = load_split(str(tiny_tree), "train", cache_dir=tmp_path / "cache")
    assert train.images.shape == (4, 64, 64, 3) and train.labels.tolist() == [0, 0, 1, 1]
    assert train.class_names == ("goldfish", "European fire salamander")
    gray = train.images[1].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()  # grayscale -> RGB
    assert abs(gray.mean() - 128) < 3
    red = train.images[0].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 40

    val = load_split(str(tiny_tree), "val", cache_dir=tmp_path / "cache")
    assert val.labels.tolist() == [1, 0, 1]
    x, y, names = load_samples(str(tiny_tree), 2, cache_dir=tmp_path / "cache")
    assert x.shape == (2, 3, 64, 64) and y.tolist() == [0, 1]  # balanced order: one of each class first
    assert names == train.class_names


def test_reader_errors_name_the_file(tiny_tree, tmp_path):
    (tiny_tree / "val/val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt"):
        load_split(str(tiny_tree), "val", cache_dir=tmp_path)
    with pytest.raises(DataError, match="wnids.txt"):
        load_split(str(tmp_path), "train", cache_dir=tmp_path)
    with pytest.raises(DataError, match="neither 'demo'"):
        load_split(str(tmp_path / "nope"), "train")


def test_reader_corrupt_and_missing_images(tiny_tree, tmp_path):
    bad = tiny_tree / "train/n01629819/images/n01629819_1.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="n01629819_1.JPEG"):
        load_split(str(tiny_tree), "train", cache_dir=tmp_path / "c1")
    (tiny_tree / "val/images/val_2.JPEG").unlink()
    with pytest.raises(DataError, match="val_2.JPEG"):
        load_split(str(tiny_tree), "val", cache_dir=tmp_path / "c2")
    (tiny_tree / "val/val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="n99999999"):
        load_split(str(tiny_tree), "val", cache_dir=tmp_path / "c3")


def test_reader_cache_key_follows_the_tree(tiny_tree, tmp_path):
    cache = tmp_path / "cache"
    load_split(str(tiny_tree), "val", cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    # Editing the annotations changes the key, so stale data is never served.
    text = (tiny_tree / "val/val_annotations.txt").read_text().splitlines()
    (tiny_tree / "val/val_annotations.txt").write_text("\n".join(text[:2]) + "\n")
    assert len(load_split(str(tiny_tree), "val", cache_dir=cache)) == 2
    assert cache_path(cache, "x") != cache_path(cache, "y")


# ---------------------------------------------------------------- .npz samples

def test_npz_samples(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 64, 64), dtype=np.float32)
    y = np.array([0, 3, 1, 1, 2], dtype=np.int64)
    path = tmp_path / "s.npz"
    np.savez(path, x=x, y=y)
    got_x, got_y, names = load_samples(str(path), 3)
    np.testing.assert_array_equal(got_x, x[:3])
    assert got_y.tolist() == [0, 3, 1] and names == ("0", "1", "2", "3")
    with pytest.raises(DataError, match="holds only 5"):
        load_samples(str(path), 6)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((2, 3, 32, 32), np.float32), np.zeros(2, np.int64), "shape"),
        (np.zeros((2, 3, 64, 64), np.float64), np.zeros(2, np.int64), "float32"),
        (np.full((2, 3, 64, 64), 1.5, np.float32), np.zeros(2, np.int64), r"\[0, 1\]"),
        (np.full((2, 3, 64, 64), np.nan, np.float32), np.zeros(2, np.int64), "finite"),
        (np.zeros((2, 3, 64, 64), np.float32), np.zeros(3, np.int64), "'y'"),
    ],
)
def test_npz_samples_are_checked(tmp_path, x, y, message):
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=y)
    with pytest.raises(DataError, match=message):
        load_samples(str(path))


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_samples(str(path))
    with pytest.raises(DataError, match="does not exist"):
        load_samples(str(tmp_path / "missing.npz"))
