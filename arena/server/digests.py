"""The two digests of the serving path.

- `image_sha256`: sha256 of one image's float32 bytes. It keys the arena's record of what Predict
  answered for an image of a run and sample, which makes verifying those exact bytes free
  (arena.server.queries). Only images answered adversarial are recorded (the others can never become a
  verified adversarial), so most images of a Predict are never hashed. It must resist forged
  collisions (two images, one digest: a free label), hence sha256 (with SHA-NI, the cost of
  one image's hash is a fraction of one model run: docs/benchmarks.md).
- `request_digest`: xxh3-128 of a Predict request's sample indices and image bytes (an order of
  magnitude cheaper than sha256). It tells a replayed request id from a reused one; a forged collision would only
  replay an answer its sender already has, so speed wins over collision resistance.
"""

from __future__ import annotations

import hashlib

import numpy as np
import xxhash


def image_sha256(images: np.ndarray, rows=None) -> list[bytes]:
    """sha256 of the float32 bytes of images[rows] (every image when rows is None); hashlib
    releases the GIL on these sizes."""
    flat = images.reshape(images.shape[0], -1)
    picked = flat if rows is None else (flat[i] for i in rows)
    return [hashlib.sha256(row.data).digest() for row in picked]


def request_digest(indices: np.ndarray, images: np.ndarray) -> bytes:
    """Identifies a Predict request's content: its sample indices and its images' bytes."""
    h = xxhash.xxh3_128()
    h.update(np.ascontiguousarray(indices, dtype="<i8").data)
    h.update(np.ascontiguousarray(images).data)
    return h.digest()
