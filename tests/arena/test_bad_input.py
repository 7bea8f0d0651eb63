"""Every bad input gets the fitting status, a message naming the field, charges nothing, and the
server stays up."""

from __future__ import annotations

import numpy as np
import pytest
from grpc import StatusCode

from arena.ground.wire import encode
from protos import arena_v1_pb2 as pb

from .conftest import MAX_BATCH, NUM_SAMPLES, rpc_error


def predict(client, request: pb.PredictRequest):
    return client.runs.Predict(request, metadata=client.metadata, timeout=30)


def good_request(run, images, n=2, request_id="r1") -> pb.PredictRequest:
    return pb.PredictRequest(run_id=run.run_id, request_id=request_id, sample_indices=list(range(n)),
                             images=encode(images[:n]))


def assert_nothing_charged(client, run) -> None:
    assert list(client.get_run(run.run_id).queries_used) == [0] * NUM_SAMPLES


def _bad_cases(images):
    x = images[:2]
    nan = x.copy()
    nan[1, 2, 3, 4] = np.nan
    inf = x.copy()
    inf[0, 0, 0, 0] = np.inf
    neg = x.copy()
    neg[1, 0, 0, 0] = -0.01
    big = x.copy()
    big[0, 1, 5, 5] = 1.0001
    f64 = pb.ImageBatch(shape=[2, 3, 64, 64], data=x.astype(np.float64).tobytes())
    return {
        "short data": (pb.ImageBatch(shape=[2, 3, 64, 64], data=x.tobytes()[:-4]), "images.data"),
        "odd byte count": (pb.ImageBatch(shape=[2, 3, 64, 64], data=x.tobytes()[:-1]), "wrong dtype"),
        "float64 payload": (f64, "images.data"),
        "shape rank": (pb.ImageBatch(shape=[2, 3, 4096], data=x.tobytes()), "images.shape"),
        "shape channels": (pb.ImageBatch(shape=[2, 1, 64, 192], data=x.tobytes()), "images.shape"),
        "empty batch": (pb.ImageBatch(shape=[0, 3, 64, 64], data=b""), "images.shape"),
        "nan": (encode(nan), "NaN or Inf"),
        "inf": (encode(inf), "NaN or Inf"),
        "below 0": (encode(neg), "outside [0, 1]"),
        "above 1": (encode(big), "outside [0, 1]"),
    }


@pytest.mark.parametrize("case", list(_bad_cases(np.zeros((2, 3, 64, 64), np.float32))))
def test_malformed_images_are_invalid_argument(arena, client, run, case):
    batch, needle = _bad_cases(arena.images)[case]
    request = pb.PredictRequest(run_id=run.run_id, request_id="x", sample_indices=[0, 1], images=batch)
    error = rpc_error(predict, client, request)
    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert needle in error.details()
    # the same for SubmitAdversarials
    sub = pb.SubmitAdversarialsRequest(run_id=run.run_id, sample_indices=[0, 1], images=batch)
    error = rpc_error(client.runs.SubmitAdversarials, sub, metadata=client.metadata)
    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert_nothing_charged(client, run)


def test_index_count_mismatch(arena, client, run):
    request = good_request(run, arena.images)
    del request.sample_indices[:]
    request.sample_indices.append(0)
    error = rpc_error(predict, client, request)
    assert error.code() == StatusCode.INVALID_ARGUMENT and "sample_indices" in error.details()
    assert_nothing_charged(client, run)


def test_unknown_sample_run_and_defense(arena, client, run):
    request = good_request(run, arena.images)
    request.sample_indices[1] = NUM_SAMPLES
    error = rpc_error(predict, client, request)
    assert error.code() == StatusCode.NOT_FOUND and "sample_indices" in error.details()
    assert_nothing_charged(client, run)

    request = good_request(run, arena.images)
    request.run_id = "no-such-run"
    error = rpc_error(predict, client, request)
    assert error.code() == StatusCode.NOT_FOUND and "run_id" in error.details()
    for call in (client.get_run, client.finish_run):
        assert rpc_error(call, "no-such-run").code() == StatusCode.NOT_FOUND

    error = rpc_error(client.start_run, "no-such-defense", "a")
    assert error.code() == StatusCode.NOT_FOUND and "defense" in error.details()
    error = rpc_error(client.get_defense, "no-such-defense")
    assert error.code() == StatusCode.NOT_FOUND and "name" in error.details()


def test_batch_over_the_cap(arena, client, run):
    n = MAX_BATCH + 1
    images = np.repeat(arena.images[:1], n, axis=0)
    request = pb.PredictRequest(run_id=run.run_id, request_id="big", sample_indices=[0] * n, images=encode(images))
    error = rpc_error(predict, client, request)
    assert error.code() == StatusCode.INVALID_ARGUMENT and "max_batch" in error.details()
    assert_nothing_charged(client, run)


def test_oversized_message(arena, client, run):
    limit = run.max_message_bytes
    n = limit // (3 * 64 * 64 * 4) + 1
    images = np.zeros((n, 3, 64, 64), np.float32)
    request = pb.PredictRequest(run_id=run.run_id, request_id="huge", sample_indices=[0] * n, images=encode(images))
    assert request.ByteSize() > limit
    error = rpc_error(predict, client, request)
    # gRPC itself refuses a message over the published receive limit
    assert error.code() == StatusCode.RESOURCE_EXHAUSTED
    assert_nothing_charged(client, run)
    assert client.get_run(run.run_id).run_id == run.run_id  # still up


def test_request_id_required(arena, client, run):
    request = good_request(run, arena.images, request_id="")
    error = rpc_error(predict, client, request)
    assert error.code() == StatusCode.INVALID_ARGUMENT and "request_id" in error.details()
    request = good_request(run, arena.images, request_id="x" * 200)
    assert rpc_error(predict, client, request).code() == StatusCode.INVALID_ARGUMENT
    assert_nothing_charged(client, run)


def test_bad_attack_name_and_paging(arena, client, run):
    error = rpc_error(client.start_run, "tiny", "")
    assert error.code() == StatusCode.INVALID_ARGUMENT and "attack" in error.details()
    error = rpc_error(client.runs.GetRunSamples, pb.GetRunSamplesRequest(run_id=run.run_id, offset=NUM_SAMPLES + 1),
                      metadata=client.metadata)
    assert error.code() == StatusCode.INVALID_ARGUMENT and "offset" in error.details()


def test_finished_run_is_failed_precondition(arena, client, run):
    client.predict(run.run_id, arena.images[:1], [0], request_id="before")
    finished = client.finish_run(run.run_id)
    assert finished.finished and list(finished.queries_used)[0] == 1
    for call in (lambda: client.predict(run.run_id, arena.images[:1], [0], request_id="after"),
                 lambda: client.submit_adversarials(run.run_id, arena.images[:1], [0])):
        error = rpc_error(call)
        assert error.code() == StatusCode.FAILED_PRECONDITION and "finished" in error.details()
    # a replay of an answered request stays safe after the end
    labels, _ = client.predict(run.run_id, arena.images[:1], [0], request_id="before")
    assert client.finish_run(run.run_id).finished            # idempotent
    assert list(client.get_run(run.run_id).queries_used)[0] == 1


def test_server_answers_after_all_that(arena, client, run):
    labels, remaining = client.predict(run.run_id, arena.images[:3], [0, 1, 2])
    assert labels.tolist() == arena.labels[:3].tolist()
    assert remaining.tolist() == [run.budget_per_sample - 1] * 3


def test_fast_request_encoding_matches_protobuf(arena):
    from arena.ground.wire import predict_request_bytes, submit_request_bytes

    x = arena.images[:3]
    fast = pb.PredictRequest.FromString(predict_request_bytes("run", "req", [0, 1, 2], x))
    slow = pb.PredictRequest(run_id="run", request_id="req", sample_indices=[0, 1, 2], images=encode(x))
    assert fast == slow
    fast = pb.SubmitAdversarialsRequest.FromString(submit_request_bytes("run", [2, 1, 0], x))
    assert fast == pb.SubmitAdversarialsRequest(run_id="run", sample_indices=[2, 1, 0], images=encode(x))


def test_malformed_wire_bytes(arena, client, run):
    from arena.ground.wire import image_batch_field, predict_request_bytes

    raw = client.channel.unary_unary("/arena.v1.RunService/Predict", request_serializer=None,
                                     response_deserializer=pb.PredictResponse.FromString)
    good = predict_request_bytes(run.run_id, "w1", [0], arena.images[:1])
    for bad in (good[:-10],                                   # truncated
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # not protobuf
                good + image_batch_field(4, arena.images[:1])):    # the images field twice
        error = rpc_error(raw, bad, metadata=client.metadata, timeout=10)
        assert error.code() == StatusCode.INVALID_ARGUMENT
        assert "request: malformed" in error.details()
    assert_nothing_charged(client, run)
    assert not raw(good, metadata=client.metadata).replayed
