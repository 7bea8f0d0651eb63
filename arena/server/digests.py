"""The two digests of the serving path.

- `image_digests`: a cryptographic digest of each image's float32 bytes. It keys the arena's record
  of what Predict answered for an image of a run and sample, which makes verifying those exact
  bytes free (arena.server.queries). Only images answered adversarial are recorded (the others can
  never become a verified adversarial), so most images of a Predict are never hashed. It must
  resist forged collisions (two images, one digest: a free label), hence a cryptographic hash:
  BLAKE3 (a third of sha256's cost with SHA-NI on these 48 KiB: docs/benchmarks.md, "The server's
  profile") for stores created since; a store records which one it keys by (`Store.image_digest`),
  and a store created before keeps sha256, so the records of a running competition stay valid.
- `request_digest`: xxh3-128 of a Predict request's sample indices and image bytes (an order of
  magnitude cheaper than sha256). It tells a replayed request id from a reused one; a forged collision would only
  replay an answer its sender already has, so speed wins over collision resistance.
"""

from __future__ import annotations

import hashlib

import blake3
import numpy as np
import xxhash

IMAGE_DIGESTS = ("blake3", "sha256")   # the first: what a new store keys by
LEGACY_IMAGE_DIGEST = "sha256"         # what a store created before the choice was recorded keys by


def image_digests(images: np.ndarray, rows=None, algorithm: str = IMAGE_DIGESTS[0]) -> list[bytes]:
    """The 32-byte `algorithm` digest of the float32 bytes of images[rows] (every image when rows
    is None); both release the GIL on these sizes."""
    flat = images.reshape(images.shape[0], -1)
    picked = flat if rows is None else (flat[i] for i in rows)
    if algorithm == "blake3":
        return [blake3.blake3(memoryview(row).cast("B")).digest() for row in picked]
    if algorithm == "sha256":
        return [hashlib.sha256(row.data).digest() for row in picked]
    raise ValueError(f"unknown image digest {algorithm!r} (known: {', '.join(IMAGE_DIGESTS)})")


def request_digest(indices: np.ndarray, images: np.ndarray) -> bytes:
    """Identifies a Predict request's content: its sample indices and its images' bytes."""
    h = xxhash.xxh3_128()
    h.update(np.ascontiguousarray(indices, dtype="<i8").data)
    h.update(np.ascontiguousarray(images).data)
    return h.digest()
