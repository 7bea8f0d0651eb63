"""Image batches in requests, as the server reads them (the encoding side is `arena.ground.wire`).

Decoding is zero-copy (`np.frombuffer` over the message's bytes) and checks everything
docs/rules.md section 2 asks of an image; every failure is a `BadRequest` (an unknown sample: `NotFound`) naming the field.
"""

from __future__ import annotations

import numpy as np

from arena.ground.contract import IMAGE_BYTES, IMAGE_SHAPE, first_bad_image, in_unit_interval
from arena.server.errors import BadRequest, NotFound
from arena.ground.wire import WIRE_DTYPE


# ---------------------------------------------------------------- zero-copy request parsing


class RawImages:
    """An ImageBatch whose `data` is a memoryview into the received request bytes (no copy)."""

    __slots__ = ("shape", "data")

    def __init__(self, shape, data) -> None:
        self.shape = shape
        self.data = data


class ParsedRequest:
    """A Predict / SubmitAdversarials request parsed without copying its pixels: the small fields
    come from protobuf, `images` is a RawImages view. `error` is set when the bytes are not a
    well-formed message (the handler answers INVALID_ARGUMENT)."""

    def __init__(self, message, images: RawImages | None, error: str = "") -> None:
        self._message = message
        self.images = images if images is not None else RawImages([], b"")
        self.error = error

    def __getattr__(self, name):
        return getattr(self._message, name)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _split_field(raw, field_number: int) -> tuple[bytes, memoryview | None]:
    """(the message's bytes without `field_number`, that length-delimited field's payload)."""
    view = memoryview(raw)
    rest, found, pos, n = [], None, 0, len(raw)
    while pos < n:
        start = pos
        tag, pos = _read_varint(raw, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = _read_varint(raw, pos)
        elif wire_type == 2:
            length, pos = _read_varint(raw, pos)
            if pos + length > n:
                raise ValueError("truncated field")
            if number == field_number:
                if found is not None:
                    raise ValueError(f"field {field_number} appears twice")
                found = view[pos:pos + length]
                pos += length
                continue
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > n:
            raise ValueError("truncated field")
        rest.append(view[start:pos])
    return b"".join(rest), found


def parse_with_images(message_type, images_field: int):
    """A request deserializer for gRPC: protobuf for the small fields, a zero-copy view for the
    ImageBatch in `images_field` (saves two copies of every image on the server's event loop).
    The message types come from the caller (the transport): this module never imports protos."""
    field = message_type.DESCRIPTOR.fields_by_number[images_field]
    batch_type = type(getattr(message_type(), field.name))   # ImageBatch

    def parse(raw: bytes) -> ParsedRequest:
        try:
            rest, images = _split_field(raw, images_field)
            message = message_type.FromString(rest)
            if images is None:
                return ParsedRequest(message, None)
            shape_part, data = _split_field(images, 2)
            shape = list(batch_type.FromString(shape_part).shape)
            return ParsedRequest(message, RawImages(shape, data if data is not None else b""))
        except Exception as error:  # malformed bytes: reported by the handler
            return ParsedRequest(message_type(), None, error=f"request: malformed message ({error})")

    return parse


def decode(batch, field: str, max_batch: int) -> np.ndarray:
    """An ImageBatch (or a RawImages view of one) -> read-only float32 [N,3,64,64] view of the message bytes, fully checked.

    Checks: shape [N,3,64,64] with 1 <= N <= max_batch, byte length N*49,152, every value finite
    and in [0, 1] (one pass: `arena.ground.contract.in_unit_interval`).
    """
    shape = tuple(int(s) for s in batch.shape)
    if len(shape) != 4 or shape[1:] != IMAGE_SHAPE:
        raise BadRequest(f"{field}.shape must be [N,3,64,64], got {list(shape)}")
    n = shape[0]
    if n < 1:
        raise BadRequest(f"{field}.shape: the batch is empty (N=0)")
    if n > max_batch:
        raise BadRequest(f"{field}: a batch of {n} images exceeds max_batch={max_batch}")
    data = batch.data
    if len(data) != n * IMAGE_BYTES:
        raise BadRequest(
            f"{field}.data must hold N*3*64*64 float32 values = {n * IMAGE_BYTES} bytes for shape "
            f"{list(shape)}, got {len(data)} bytes"
            + (" (not a multiple of 4: wrong dtype?)" if len(data) % 4 else "")
        )
    array = np.frombuffer(data, dtype=WIRE_DTYPE).reshape(shape)
    if not in_unit_interval(array):
        index, problem = first_bad_image(array)
        raise BadRequest(f"{field}: image {index} {problem}")
    return array


def check_sample_indices(indices, n_images: int, num_samples: int, field: str = "sample_indices") -> np.ndarray:
    """One sample index per image, each in [0, num_samples)."""
    idx = np.fromiter(indices, dtype=np.int64, count=len(indices))
    if idx.shape[0] != n_images:
        raise BadRequest(f"{field}: {idx.shape[0]} indices for {n_images} images (one per image)")
    if idx.size and int(idx.max()) >= num_samples:
        bad = int(idx[np.argmax(idx >= num_samples)])
        raise NotFound(f"{field}: sample {bad} does not exist (the evaluation set has {num_samples} samples)")
    return idx
