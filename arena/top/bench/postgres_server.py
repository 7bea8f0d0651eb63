"""A throwaway PostgreSQL server for the tests and `arena bench serve --replicas`: initdb in a
temporary folder, a free port, the unix socket in that folder; fsync off unless `durable` (the
tests' data dies with the session; the bench fsyncs like a real deployment).

The server binaries come from $ARENA_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH
(Debian's package `postgresql-15` puts them in /usr/lib/postgresql/15/bin; `.ci/run` installs it).
PostgreSQL refuses to run as root: as root, the server runs as the user `postgres` (or `nobody`)
through `runuser`, in a folder that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_bin() -> Path | None:
    if os.environ.get("ARENA_PG_BIN"):
        return Path(os.environ["ARENA_PG_BIN"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`start()`, then `url(dbname)` / `new_database()`; `stop()` removes everything."""

    def __init__(self, bin_dir: Path, durable: bool = False, user: str = "arena") -> None:
        self.bin = Path(bin_dir)
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="arena-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = user          # the superuser initdb creates
        self._as: list[str] = []
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    entry = pwd.getpwnam(name)
                except KeyError:
                    continue
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
                self._as = ["runuser", "-u", name, "--"]
                break
            else:
                raise RuntimeError("running as root and no user 'postgres' or 'nobody' to run PostgreSQL as")
        os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip()} {tail}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
                  "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses='' -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-t", "60", "-o", options, "start")
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.root}&port={self.port}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
