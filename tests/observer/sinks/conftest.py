"""Fixtures for the sink tests: the shared real servers, private server processes, test reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from prometheus_client import CollectorRegistry

from tests.observer.sinks.servers import free_port, port_open

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "scripts" / "services.sh"


@attrs.frozen
class Servers:
    kafka_port: int
    mongo_port: int
    moto_port: int
    owned: bool  # started by this fixture (so resetting their state disturbs nobody else)

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """The shared Tansu, SecantusDB and moto servers (scripts/services.sh). When they are not running,
    this starts a private set on free ports and stops it after the session."""
    ports = (int(os.environ.get("OBSERVER_TEST_KAFKA_PORT", 19092)),
             int(os.environ.get("OBSERVER_TEST_MONGO_PORT", 27017)),
             int(os.environ.get("OBSERVER_TEST_MOTO_PORT", 5055)))
    if all(port_open(p) for p in ports):
        yield Servers(*ports, owned=False)
        return
    services_dir = tempfile.mkdtemp(prefix="observer-sink-services-")
    chosen = (free_port(), free_port(), free_port())
    env = {**os.environ, "SERVICES_DIR": services_dir, "PYTHON": sys.executable,
           "OBSERVER_TEST_KAFKA_PORT": str(chosen[0]), "OBSERVER_TEST_MONGO_PORT": str(chosen[1]),
           "OBSERVER_TEST_MOTO_PORT": str(chosen[2])}
    subprocess.run(["bash", str(SERVICES), "start"], env=env, check=True, timeout=90)
    try:
        yield Servers(*chosen, owned=True)
    finally:
        subprocess.run(["bash", str(SERVICES), "stop"], env=env, check=False, timeout=30)
        shutil.rmtree(services_dir, ignore_errors=True)


@pytest.fixture
def moto(servers: Servers) -> Iterator[str]:
    """The moto URL, with its state reset before the test when this session owns the server (a shared
    server may serve other test runs, so there the tests rely on unique bucket and stream names)."""
    if servers.owned:
        urllib.request.urlopen(urllib.request.Request(f"{servers.moto_url}/moto-api/reset", method="POST"),
                               timeout=5).close()
    yield servers.moto_url


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def unique() -> str:
    """A name no other test (or test run) uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, no profile files from the machine, no endpoint variables."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

