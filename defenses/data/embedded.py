"""The embedded dataset: 64x64 RGB images of shapes on cluttered backgrounds, made from a seed.

Each class is a shape (10 families); above 10 classes a class is a (shape, hue) pair, with
20 hues, so up to 200 classes as in Tiny ImageNet. Everything else is a nuisance drawn at
random per image: position, size, rotation, texture of the shape, the smooth colour field and
the lines behind it. A small ResNet learns it to high clean accuracy in minutes on a CPU, while
a naturally trained one stays easy to fool: the contrast adversarial training needs.
"""

from __future__ import annotations

import numpy as np

from defenses.data.split import IMAGE_SIZE, Split

SHAPES = ("disk", "square", "triangle", "ring", "cross", "star", "semicircle", "ellipse", "crescent", "frame")
HUES = (
    "red", "vermilion", "orange", "amber", "yellow", "lime", "chartreuse", "green", "emerald", "jade",
    "cyan", "azure", "cerulean", "blue", "indigo", "violet", "purple", "magenta", "fuchsia", "rose",
)
MAX_CLASSES = len(SHAPES) * len(HUES)
# Supersampling factor: shapes are drawn at 2x and averaged down, for anti-aliased edges.
_SS = 2
_GRID = (np.arange(IMAGE_SIZE * _SS) + 0.5) / _SS


def class_names(num_classes: int) -> tuple[str, ...]:
    check_num_classes(num_classes)
    if num_classes <= len(SHAPES):
        return SHAPES[:num_classes]
    return tuple(f"{HUES[c // len(SHAPES)]} {SHAPES[c % len(SHAPES)]}" for c in range(num_classes))


def check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [2, {MAX_CLASSES}] for the embedded dataset, got {num_classes}")


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of a shape in its own frame, where the shape spans about [-1, 1]^2."""
    if shape == 0:
        return u * u + v * v < 1.0
    if shape == 1:
        return np.maximum(np.abs(u), np.abs(v)) < 0.8
    if shape == 2:
        return (v > -0.6) & (v < 1.0 - np.sqrt(3.0) * np.abs(u))
    if shape == 3:
        r2 = u * u + v * v
        return (r2 < 1.0) & (r2 > 0.55**2)
    if shape == 4:
        return ((np.abs(u) < 0.3) & (np.abs(v) < 1.0)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1.0))
    if shape == 5:
        rho = np.sqrt(u * u + v * v)
        return rho < 0.6 + 0.4 * np.cos(5.0 * np.arctan2(v, u))
    if shape == 6:
        return (u * u + v * v < 1.0) & (v > -0.2)
    if shape == 7:
        return u * u + (v / 0.45) ** 2 < 1.0
    if shape == 8:
        return (u * u + v * v < 1.0) & ((u - 0.45) ** 2 + v * v > 0.8**2)
    if shape == 9:
        m = np.maximum(np.abs(u), np.abs(v))
        return (m < 0.9) & (m > 0.55)
    raise ValueError(f"unknown shape {shape}")


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field (bilinear upsampling of a coarse grid) crossed by a few lines."""
    from PIL import Image, ImageDraw

    coarse = rng.integers(40, 216, size=(6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0, x1, y1 = (int(c) for c in rng.integers(0, IMAGE_SIZE, size=4))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 3)))
    return np.asarray(image, dtype=np.float32) / 255.0


def _texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A brightness modulation in [0.55, 1] for the shape's fill: solid, stripes, checks or dots."""
    kind = int(rng.integers(0, 4))
    period = float(rng.uniform(4.0, 9.0))
    angle = float(rng.uniform(0, np.pi))
    a = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    b = (-xx * np.sin(angle) + yy * np.cos(angle)) / period
    if kind == 0:
        return np.ones_like(xx)
    if kind == 1:
        return 0.775 + 0.225 * np.sign(np.sin(2 * np.pi * a))
    if kind == 2:
        return 0.775 + 0.225 * np.sign(np.sin(2 * np.pi * a) * np.sin(2 * np.pi * b))
    frac_a, frac_b = a - np.floor(a) - 0.5, b - np.floor(b) - 0.5
    return np.where(frac_a**2 + frac_b**2 < 0.09, 0.55, 1.0)


def render_image(rng: np.random.Generator, label: int, num_classes: int) -> np.ndarray:
    """One uint8 [64,64,3] image of class `label`."""
    shape = label % len(SHAPES)
    if num_classes > len(SHAPES):
        hue = (label // len(SHAPES) + rng.uniform(-0.3, 0.3)) / len(HUES)
    else:
        hue = rng.uniform(0.0, 1.0)
    colour = _hsv_to_rgb(hue % 1.0, float(rng.uniform(0.65, 1.0)), float(rng.uniform(0.75, 1.0)))

    radius = rng.uniform(13.0, 22.0)
    cx, cy = rng.uniform(radius, IMAGE_SIZE - radius, size=2)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.meshgrid(_GRID, _GRID, indexing="ij")
    dx, dy = (xx - cx) / radius, (yy - cy) / radius
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    mask = _shape_mask(shape, u, v).astype(np.float32) * _texture(rng, xx, yy).astype(np.float32)
    # Average the supersampled mask down to 64x64: soft, anti-aliased edges.
    mask = mask.reshape(IMAGE_SIZE, _SS, IMAGE_SIZE, _SS).mean(axis=(1, 3))[..., None]
    coverage = (mask > 0).astype(np.float32) * np.minimum(1.0, mask / mask.max(initial=1e-6) * 1.5)

    background = _background(rng) * 0.7  # darker behind the shape, so the shape stands out
    fill = colour[None, None, :] * np.clip(mask * 1.0 / max(float(mask.max()), 1e-6), 0.55, 1.0)
    image = background * (1.0 - coverage) + fill * coverage
    image += rng.normal(0.0, 0.02, size=image.shape).astype(np.float32)  # sensor noise
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# The generator's streams. Independent per split, so train and val never share an image; a public
# seed (whatever `arena data --seed` a team passes) only ever reaches "train" and "val", while the
# arena's private split is drawn from the "secret" stream with a secret seed
# (`arena.server.evaluation`): no public seed can rebuild it (docs/rules.md section 4).
STREAMS = {"train": 0, "val": 1, "secret": 2}


def generate(num_classes: int, split: str, seed: int, per_class: int) -> Split:
    """The `split` ("train", "val", or the arena's "secret" stream) of the embedded dataset:
    per_class images of each class."""
    check_num_classes(num_classes)
    if split not in STREAMS:
        raise ValueError(f"split must be one of {', '.join(STREAMS)}, got {split!r}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng([seed, STREAMS[split], num_classes])
    labels = np.tile(np.arange(num_classes, dtype=np.int64), per_class)
    rng.shuffle(labels)
    images = np.stack([render_image(rng, int(label), num_classes) for label in labels])
    return Split(images=images, labels=labels, class_names=class_names(num_classes))
