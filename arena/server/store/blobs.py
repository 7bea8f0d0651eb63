"""Content-addressed files beside the database: ONNX models and the evaluation images
(`blobs/<sha256[:2]>/<sha256>`)."""

from __future__ import annotations

import os
import tempfile
from hashlib import sha256
from pathlib import Path

from arena.server.store.rows import StoreError


class BlobStore:
    """Content-addressed files: the name is the sha256 of the content; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes | memoryview) -> str:
        digest = sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return digest

    def get(self, digest: str) -> bytes:
        data = self.path(digest).read_bytes()
        if sha256(data).hexdigest() != digest:
            raise StoreError(f"blob {digest} is corrupt (its content does not match its name)")
        return data


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
