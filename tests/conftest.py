"""Fixtures shared by every test package: a real PostgreSQL server for the session.

`postgres` starts one server for the whole session (arena.top.bench.postgres_server) and stops it at the
end; `postgres_url` is a fresh empty database on it per test. Without the server binaries the
tests that need them are skipped, unless ARENA_REQUIRE_POSTGRES=1 (`.ci/run` sets it), which
makes that a failure.
"""

from __future__ import annotations

import os

import pytest

from arena.top.bench.postgres_server import PostgresServer, find_bin


@pytest.fixture(scope="session")
def postgres():
    bin_dir = find_bin()
    if bin_dir is None:
        message = ("PostgreSQL server binaries not found (install the Debian package postgresql-15, "
                   "or set ARENA_PG_BIN)")
        if os.environ.get("ARENA_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres) -> str:
    return postgres.new_database()
