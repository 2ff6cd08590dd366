"""A throwaway PostgreSQL cluster of the scenario's own (initdb + pg_ctl on a free port, in a
temporary directory, as the `postgres` user): the only PostgreSQL a scenario may restart."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/"
            f"{name}): install postgresql"
        )
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running cluster: `url` to its `postgres` database; `restart`/`stop`/`start` it."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def ctl(self, *args: str, timeout: float = 60.0) -> None:
        await _as_postgres(
            _bin("pg_ctl"), "-D", str(self.directory / "data"), *args, timeout=timeout
        )

    async def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.directory} -c shared_buffers=16MB "
            "-c max_connections=40"
        )
        await self.ctl("-w", "-l", str(self.directory / "server.log"), "-o", options, "start")

    async def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown; `immediate`: like a crash (recovery on the next start)."""
        await self.ctl("-w", "-m", mode, "stop")


async def _as_postgres(*command: str, timeout: float) -> None:
    process = await asyncio.create_subprocess_exec(
        "runuser",
        "-u",
        "postgres",
        "--",
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {out.decode()[-1500:]}")


@asynccontextmanager
async def postgres_cluster() -> AsyncIterator[PostgresCluster]:
    """initdb a cluster in a fresh directory, start it, and remove it all afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="fw-chaos-pg-"))
    os.chmod(directory, 0o755)
    shutil.chown(directory, "postgres", "postgres")
    cluster = PostgresCluster(directory, _free_port())
    try:
        await _as_postgres(
            _bin("initdb"),
            "-D",
            str(directory / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            timeout=120,
        )
        await cluster.start()
        try:
            yield cluster
        finally:
            await cluster.stop("immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
