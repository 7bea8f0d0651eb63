"""Images on the wire (`arena.v1.ImageBatch`): raw little-endian float32 bytes plus an explicit
shape. The client side (encoding, and decoding the pages of samples the server sends); the server
reads requests with `arena.server.images` (zero-copy, fully checked).
"""

from __future__ import annotations

import numpy as np

from arena.ground.contract import IMAGE_BYTES, IMAGE_SHAPE
from protos import arena_v1_pb2 as pb

WIRE_DTYPE = np.dtype("<f4")


def encode(images: np.ndarray) -> pb.ImageBatch:
    """float32 [N,3,64,64] -> ImageBatch (one copy only if the array is not little-endian C-contiguous)."""
    array = np.ascontiguousarray(images, dtype=WIRE_DTYPE)
    return pb.ImageBatch(shape=list(array.shape), data=array.tobytes())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def image_batch_field(field_number: int, images: np.ndarray) -> bytes:
    """The wire bytes of an ImageBatch as field `field_number` of an enclosing message, built
    with a single copy of the pixels (protobuf messages may be concatenated: a request's other
    fields serialised by protobuf + this = the whole request)."""
    array = np.ascontiguousarray(images, dtype=WIRE_DTYPE)
    shape = pb.ImageBatch(shape=list(array.shape)).SerializeToString()
    data_header = b"\x12" + _varint(array.nbytes)            # field 2 (data), length-delimited
    inner = len(shape) + len(data_header) + array.nbytes
    return b"".join((_varint(field_number << 3 | 2), _varint(inner), shape, data_header, array.data))


def predict_request_bytes(run_id: str, request_id: str, sample_indices, images: np.ndarray) -> bytes:
    """A serialised arena.v1.PredictRequest, about 2x cheaper than building the message."""
    head = pb.PredictRequest(run_id=run_id, request_id=request_id,
                             sample_indices=[int(i) for i in sample_indices]).SerializeToString()
    return head + image_batch_field(4, images)


def submit_request_bytes(run_id: str, sample_indices, images: np.ndarray) -> bytes:
    """A serialised arena.v1.SubmitAdversarialsRequest (see predict_request_bytes)."""
    head = pb.SubmitAdversarialsRequest(run_id=run_id, sample_indices=[int(i) for i in sample_indices]).SerializeToString()
    return head + image_batch_field(3, images)


def decode_batch(batch: pb.ImageBatch) -> np.ndarray:
    """An ImageBatch the server sent -> float32 [N,3,64,64] (a copy the caller owns).
    Raises ValueError when its shape or byte length is not that of N images."""
    shape = tuple(int(s) for s in batch.shape)
    if len(shape) != 4 or shape[1:] != IMAGE_SHAPE or len(batch.data) != shape[0] * IMAGE_BYTES:
        raise ValueError(f"malformed image batch (shape {list(shape)}, {len(batch.data)} bytes)")
    return np.frombuffer(batch.data, dtype=WIRE_DTYPE).reshape(shape).astype(np.float32)
