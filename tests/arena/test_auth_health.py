"""Tokens (UNAUTHENTICATED without one, teams isolated), health and reflection without a token."""

from __future__ import annotations

import grpc
import pytest
from grpc import StatusCode
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from arena.ground.client import ArenaClient
from protos import arena_v1_pb2 as pb
from protos import arena_v1_pb2_grpc as pb_grpc

from .conftest import rpc_error

METHODS = [
    (pb_grpc.DefenseServiceStub, "ListDefenses", pb.ListDefensesRequest()),
    (pb_grpc.DefenseServiceStub, "GetDefense", pb.GetDefenseRequest(name="tiny")),
    (pb_grpc.RunServiceStub, "StartRun", pb.StartRunRequest(defense="tiny", attack="a")),
    (pb_grpc.RunServiceStub, "GetRun", pb.GetRunRequest(run_id="x")),
    (pb_grpc.RunServiceStub, "Predict", pb.PredictRequest(run_id="x")),
    (pb_grpc.RunServiceStub, "SubmitAdversarials", pb.SubmitAdversarialsRequest(run_id="x")),
    (pb_grpc.RunServiceStub, "FinishRun", pb.FinishRunRequest(run_id="x")),
    (pb_grpc.LeaderboardServiceStub, "GetLeaderboard", pb.GetLeaderboardRequest()),
    (pb_grpc.LeaderboardServiceStub, "GetReport", pb.GetReportRequest()),
]


@pytest.mark.parametrize("metadata", [None, (("authorization", "Bearer nope"),), (("authorization", "Basic x"),)],
                         ids=["missing", "unknown", "not-bearer"])
def test_every_call_needs_a_token(arena, metadata):
    with arena.stub_channel() as channel:
        for stub_type, name, request in METHODS:
            error = rpc_error(getattr(stub_type(channel), name), request, metadata=metadata, timeout=10)
            assert error.code() == StatusCode.UNAUTHENTICATED, name
        stream = pb_grpc.DefenseServiceStub(channel).SubmitDefense
        error = rpc_error(stream, iter([pb.SubmitDefenseRequest(metadata=pb.DefenseMetadata(name="x"))]),
                          metadata=metadata, timeout=10)
        assert error.code() == StatusCode.UNAUTHENTICATED


def test_team_sees_and_spends_only_its_own_runs(arena, client, run):
    with ArenaClient(arena.address, arena.beta) as beta:
        for call in (lambda: beta.get_run(run.run_id),
                     lambda: beta.predict(run.run_id, arena.images[:1], [0]),
                     lambda: beta.submit_adversarials(run.run_id, arena.images[:1], [0]),
                     lambda: beta.finish_run(run.run_id),
                     lambda: beta.samples(run.run_id)):
            error = rpc_error(call)
            # another team's run reads exactly like an unknown one
            assert error.code() == StatusCode.NOT_FOUND and "run_id" in error.details()
        # defenses and the leaderboard are for everyone
        assert "tiny" in [d.name for d in beta.list_defenses()]
        beta.get_leaderboard()
        own = beta.start_run("tiny", "beta-attack")
        assert own.team == "beta"
        assert rpc_error(client.get_run, own.run_id).code() == StatusCode.NOT_FOUND
    assert list(client.get_run(run.run_id).queries_used) == [0] * run.num_samples


def test_token_from_environment(arena, monkeypatch):
    monkeypatch.setenv("ARENA_TOKEN", arena.beta)
    with ArenaClient(arena.address) as c:
        assert c.list_defenses()


def test_health_answers_without_a_token(arena):
    with arena.stub_channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "arena.v1.RunService", "arena.v1.DefenseService", "arena.v1.LeaderboardService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        error = rpc_error(stub.Check, health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert error.code() == StatusCode.NOT_FOUND


def test_reflection_lists_every_service(arena):
    with arena.stub_channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in response.list_services_response.service}
        assert {"arena.v1.DefenseService", "arena.v1.RunService", "arena.v1.LeaderboardService",
                "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
        # and the file descriptors resolve
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="arena.v1.RunService")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        assert response.file_descriptor_response.file_descriptor_proto


def test_channel_is_loopback_only(arena):
    assert arena.address.startswith("127.0.0.1:")
    assert isinstance(grpc.__version__, str)
