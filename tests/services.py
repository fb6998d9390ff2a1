"""Starts the real local stand-ins the tests talk to, each on a free port, and stops them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STANDINS = Path(__file__).parent / "standins"
NODE_BIN = STANDINS / "node_modules" / ".bin"
COSMOS_KEY = (  # the public, documented emulator key: not a secret
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
AZURITE_ACCOUNT_KEY = (  # Azurite's public development account key
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout} s")


def ensure_node_standins() -> None:
    if (NODE_BIN / "cosmosdb-server").exists() and (NODE_BIN / "azurite-blob").exists():
        return
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to install the Cosmos DB and Azurite stand-ins")
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=STANDINS, check=True,
    )


@contextmanager
def _process(cmd: list[str], port: int, name: str, cwd: Path | None = None) -> Iterator[None]:
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, name)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def redis_server(port: int | None = None) -> Iterator[int]:
    """A private redis-server (not daemonised, so it dies with the test run)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    port = port or free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with _process(cmd, port, "redis-server"):
        yield port


@contextmanager
def cosmos_server() -> Iterator[str]:
    ensure_node_standins()
    port = free_port()
    cmd = [str(NODE_BIN / "cosmosdb-server"), "-p", str(port), "--host", "127.0.0.1", "--no-ssl"]
    with _process(cmd, port, "cosmosdb-server"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def azurite_blob(workdir: Path) -> Iterator[str]:
    ensure_node_standins()
    port = free_port()
    cmd = [
        str(NODE_BIN / "azurite-blob"), "--silent", "--inMemoryPersistence",
        "--disableTelemetry", "--skipApiVersionCheck", "--loose",
        "--blobHost", "127.0.0.1", "--blobPort", str(port),
    ]
    with _process(cmd, port, "azurite", cwd=workdir):  # its debug/lock files land in workdir
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
