"""A PostgreSQL server of the tests' own: a fresh cluster in a temporary directory,
listening on a free loopback port, with password authentication.

The binaries come from the system (Debian's `postgresql` package, which `make test`
installs when they are missing). PostgreSQL refuses to run as root, so under root the
server runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["PostgresServer", "postgres_binaries"]

USER = "sidecar"
START_TIMEOUT = 30.0


def postgres_binaries() -> Path:
    """The folder holding `initdb` and `postgres`; fails naming the make target."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    raise RuntimeError(
        "PostgreSQL's server binaries are missing: `make postgres` installs them "
        "(`make test` does it first)"
    )


@dataclass
class PostgresServer:
    """One cluster; `start`, `stop` and `restart` it, `database()` gives a fresh one."""

    bin_dir: Path = field(default_factory=postgres_binaries)
    password: str = field(default_factory=lambda: "pg-" + secrets.token_hex(12))
    port: int = 0
    root: Path = field(init=False)
    running: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
        self.root.chmod(0o700)
        password_file = self.root / "password"
        password_file.write_text(self.password)
        self._own(self.root, password_file)
        self._as_owner(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                USER,
                "--auth",
                "scram-sha-256",
                "--pwfile",
                str(password_file),
                "--encoding",
                "UTF8",
                "--no-sync",
            ]
        )
        password_file.unlink()
        self.port = self.port or _free_port()

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{USER}:{secret}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        """Start the server and wait until it takes connections.

        Through `pg_ctl`, which leaves the server running on its own (not a child of
        the tests, whose checks for leftover children it would otherwise fail)."""
        options = " ".join(
            [
                "-h 127.0.0.1",
                f"-p {self.port}",
                f"-k {self.root}",
                # A test server: durability is not what is tested.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._ctl("start", "-o", options, "-l", str(self.root / "server.log"))
        self.running = True
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    log = (self.root / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the server exits."""
        if self.running:
            self.running = False
            self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the cluster."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def database(self) -> str:
        """A new empty database; its URL."""
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())

    def _ctl(self, action: str, *options: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), action, "-D", str(self.data), "-w", *options]
        self._as_owner(command)

    def _as_owner(self, command: list[str]) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=120, **self._owner())

    def _owner(self) -> dict[str, Any]:
        """Under root, the `postgres` user (and only its group), as PostgreSQL demands."""
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": self.root}

    def _own(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        owner = pwd.getpwnam("postgres")
        for path in paths:
            os.chown(path, owner.pw_uid, owner.pw_gid)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
