"""Static and Kubernetes-pods discovery (the latter against tests/k8s_stub.py over HTTP)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hamok.discovery import (
    DiscoveryConfigError,
    K8sPodsDiscovery,
    K8sPodsDiscoveryConfig,
    StaticDiscovery,
    StaticDiscoveryConfig,
    build_discovery,
)
from hamok.errors import HamokError
from hamok.transport.base import Endpoint
from hamok.transport.websocket import WebsocketEndpoint
from tests.k8s_stub import K8sStub

pytestmark = pytest.mark.timeout(60)

NS = "hamok"
PORT = 5600


class AddressBook(Endpoint):
    """An endpoint that only records what discovery tells it."""

    def __init__(self) -> None:
        super().__init__("book")
        self.addresses: dict[str, tuple[str, int]] = {}
        self.calls: list[tuple[str, str]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def send(self, destination: str, data: bytes) -> bool:
        return False

    @property
    def connected_peers(self) -> frozenset[str]:
        return frozenset()

    def add_address(self, address_id: str, host: str, port: int) -> None:
        self.addresses[address_id] = (host, port)
        self.calls.append(("add", address_id))

    def remove_address(self, address_id: str) -> None:
        self.addresses.pop(address_id, None)
        self.calls.append(("remove", address_id))

    def hosts(self) -> set[str]:
        return {host for host, _ in self.addresses.values()}


async def eventually(condition: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.01)


def metric(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------- static


async def test_static_discovery_adds_every_peer_but_itself() -> None:
    book = AddressBook()
    peers = {"n1": ("10.0.0.1", 5600), "n2": ("10.0.0.2", 5600), "n3": ("10.0.0.3", 5601)}
    discovery = StaticDiscovery(peers, local_address=("10.0.0.2", 5600))
    await discovery.start(book)
    assert book.addresses == {"n1": ("10.0.0.1", 5600), "n3": ("10.0.0.3", 5601)}
    await discovery.stop()
    assert book.calls == [("add", "n1"), ("add", "n3")]


async def test_static_discovery_builds_a_mesh_of_real_endpoints_from_one_shared_list() -> None:
    endpoints = [WebsocketEndpoint(name, "127.0.0.1", 0) for name in ("x", "y", "z")]
    for endpoint in endpoints:
        await endpoint.start()
    try:
        shared = {e.local_id: ("127.0.0.1", e.port) for e in endpoints}
        config = {"peers": {name: {"host": host, "port": port} for name, (host, port) in shared.items()}}
        for endpoint in endpoints:
            discovery = build_discovery("StaticDiscovery", config, local_address=("127.0.0.1", endpoint.port))
            await discovery.start(endpoint)
        await eventually(lambda: all(len(e.connected_peers) == 2 for e in endpoints), what="mesh")
    finally:
        await asyncio.gather(*(e.stop() for e in endpoints))


def test_static_config_follows_the_seed_and_names_bad_fields() -> None:
    config = StaticDiscoveryConfig.from_mapping({"peers": {"a": {"host": "h1", "port": 5601}}})
    assert config.peers["a"].host == "h1" and config.peers["a"].port == 5601
    bad = [
        ({"peers": {"a": {"host": "h", "port": 80}}},
         "discovery.config.peers.a.port: must be an integer in 1024"),
        ({"peers": {"a": {"host": "h", "port": "5600"}}}, "peers.a.port"),
        ({"peers": {"a": {"host": "", "port": 5600}}}, "peers.a.host"),
        ({"peers": {"a": {"port": 5600}}}, "peers.a: needs both"),
        ({"peers": {"a": {"host": "h", "port": 5600, "tls": True}}}, "peers.a: unknown key 'tls'"),
        ({"peers": {}}, "discovery.config.peers"),
        ({"peerz": {}}, "unknown key 'peerz'"),
        ("nope", "must be a mapping"),
    ]
    for raw, message in bad:
        with pytest.raises(DiscoveryConfigError, match=message.replace(".", r"\.")):
            StaticDiscoveryConfig.from_mapping(raw)
    with pytest.raises(ValueError, match="port"):
        StaticDiscovery({"a": ("h", 0)})


def test_k8s_config_defaults_and_errors() -> None:
    config = K8sPodsDiscoveryConfig.from_mapping({"port": 5600})
    assert config == K8sPodsDiscoveryConfig(port=5600)
    assert (config.namespace, config.prefix, config.label_selector) == ("default", None, None)
    assert config.watch is True
    full = K8sPodsDiscoveryConfig.from_mapping(
        {"namespace": "obs", "prefix": "observer-", "port": 5601, "labelSelector": "app=observer",
         "watch": False, "pollIntervalInMs": 2000}
    )
    assert full == K8sPodsDiscoveryConfig(5601, "obs", "observer-", "app=observer", False, 2000)
    bad = [
        ({}, "discovery.config.port: required"),
        ({"port": 1023}, "port: must be an integer in 1024"),
        ({"port": 5600, "namespace": ""}, "namespace"),
        ({"port": 5600, "watch": "yes"}, "watch: must be true or false"),
        ({"port": 5600, "pollIntervalInMs": 5}, "pollIntervalInMs"),
        ({"port": 5600, "labelselector": "a=b"}, "unknown key 'labelselector'"),
    ]
    for raw, message in bad:
        with pytest.raises(DiscoveryConfigError, match=message):
            K8sPodsDiscoveryConfig.from_mapping(raw)
    with pytest.raises(DiscoveryConfigError, match=r"discovery\.type: unknown discovery 'Consul'"):
        build_discovery("Consul", {})
    assert isinstance(build_discovery("K8sPodsDiscovery", {"port": 5600}), K8sPodsDiscovery)


# ---------------------------------------------------------------------------- kubernetes


@pytest.fixture
async def stub() -> AsyncIterator[K8sStub]:
    server = K8sStub()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def discover() -> AsyncIterator[Any]:
    """discover(api_host, **options) -> (discovery, address book, registry), started."""
    started: list[K8sPodsDiscovery] = []

    async def factory(
        api_host: str, **options: Any
    ) -> tuple[K8sPodsDiscovery, AddressBook, CollectorRegistry]:
        registry = CollectorRegistry()
        settings: dict[str, Any] = {
            "port": PORT, "namespace": NS, "api_host": api_host, "local_pod_name": "me",
            "local_pod_ip": "10.0.0.1", "watch_timeout_s": 2, "min_request_interval_s": 0.05,
            "backoff_base_s": 0.05, "backoff_max_s": 0.2, "poll_interval_s": 0.1, "registry": registry,
        }
        settings.update(options)
        discovery = K8sPodsDiscovery(**settings)
        book = AddressBook()
        await discovery.start(book)
        started.append(discovery)
        return discovery, book, registry

    yield factory
    for discovery in started:
        await discovery.stop()


def seed_pods(stub: K8sStub) -> None:
    stub.create_pod(NS, "me", ip="10.0.0.1")                    # ourselves, by name
    stub.create_pod(NS, "twin", ip="10.0.0.1")                  # ourselves, by IP
    stub.create_pod(NS, "obs-a", ip="10.0.0.2", labels={"app": "observer"})
    stub.create_pod(NS, "obs-b", ip="10.0.0.3", labels={"app": "observer"})
    stub.create_pod(NS, "obs-pending", phase="Pending", labels={"app": "observer"})
    stub.create_pod(NS, "obs-noip", labels={"app": "observer"})
    stub.create_pod(NS, "obs-done", ip="10.0.0.9", phase="Succeeded", labels={"app": "observer"})
    stub.create_pod(NS, "obs-loop", ip="127.0.0.1", labels={"app": "observer"})
    stub.create_pod(NS, "other", ip="10.0.0.4", labels={"app": "other"})
    stub.create_pod("elsewhere", "obs-far", ip="10.0.1.1", labels={"app": "observer"})


@pytest.mark.parametrize("watch", [True, False])
async def test_list_adds_running_pods_with_an_ip_except_our_own(
    stub: K8sStub, discover: Any, watch: bool
) -> None:
    seed_pods(stub)
    _, book, registry = await discover(stub.url, watch=watch)
    await eventually(lambda: len(book.addresses) == 3, what="running pods")
    await asyncio.sleep(0.2)
    assert book.hosts() == {"10.0.0.2", "10.0.0.3", "10.0.0.4"}
    assert all(port == PORT for _, port in book.addresses.values())
    assert all(address_id.startswith(f"pod/{NS}/") for address_id in book.addresses)
    assert metric(registry, "hamok_discovery_peers") == 3
    assert metric(registry, "hamok_discovery_api_errors_total") == 0


async def test_watch_follows_pods_coming_and_going(stub: K8sStub, discover: Any) -> None:
    stub.create_pod(NS, "obs-a", ip="10.0.0.2")
    _, book, registry = await discover(stub.url, watch=True)
    await eventually(lambda: book.hosts() == {"10.0.0.2"}, what="initial list")
    await eventually(lambda: any(q.get("watch", "").lower() == "true" for _, _, q in stub.requests),
                     what="watch request")

    stub.create_pod(NS, "obs-c", ip="10.0.0.5")
    await eventually(lambda: book.hosts() == {"10.0.0.2", "10.0.0.5"}, what="ADDED")
    stub.update_pod(NS, "obs-c", phase="Failed")
    await eventually(lambda: book.hosts() == {"10.0.0.2"}, what="MODIFIED to not running")
    stub.create_pod(NS, "obs-d", phase="Pending")
    stub.update_pod(NS, "obs-d", phase="Running", ip="10.0.0.6")
    await eventually(lambda: book.hosts() == {"10.0.0.2", "10.0.0.6"}, what="MODIFIED to running")
    stub.delete_pod(NS, "obs-a")
    await eventually(lambda: book.hosts() == {"10.0.0.6"}, what="DELETED")
    # the changes came by watch, not by re-listing
    assert metric(registry, "hamok_discovery_pod_lists_total") == 1
    watches = [q for _, _, q in stub.requests if q.get("watch", "").lower() == "true"]
    assert watches and all(q.get("resourceVersion") for q in watches)


async def test_watch_continues_after_the_server_ends_a_stream(stub: K8sStub, discover: Any) -> None:
    _, book, registry = await discover(stub.url, watch=True, watch_timeout_s=1)
    await asyncio.sleep(1.3)  # the first watch has timed out on the server by now
    stub.create_pod(NS, "late", ip="10.0.0.7")
    await eventually(lambda: book.hosts() == {"10.0.0.7"}, what="pod seen by the next watch")
    assert metric(registry, "hamok_discovery_pod_lists_total") == 1
    assert metric(registry, "hamok_discovery_api_errors_total") == 0


async def test_label_selector_and_prefix_are_honoured(stub: K8sStub, discover: Any) -> None:
    seed_pods(stub)
    stub.create_pod(NS, "x-observer", ip="10.0.0.8", labels={"app": "observer"})
    _, book, _ = await discover(stub.url, label_selector="app=observer", prefix="obs-")
    await eventually(lambda: len(book.addresses) == 2, what="selected pods")
    stub.create_pod(NS, "obs-new-other", ip="10.0.0.10", labels={"app": "other"})
    stub.create_pod(NS, "obs-new", ip="10.0.0.11", labels={"app": "observer"})
    await eventually(lambda: "10.0.0.11" in book.hosts(), what="selected pod by watch")
    await asyncio.sleep(0.1)
    assert book.hosts() == {"10.0.0.2", "10.0.0.3", "10.0.0.11"}
    assert all(q.get("labelSelector") == "app=observer" for m, p, q in stub.requests if p.endswith("/pods"))


async def test_poll_mode_reconciles_on_every_list(stub: K8sStub, discover: Any) -> None:
    stub.create_pod(NS, "obs-a", ip="10.0.0.2")
    stub.create_pod(NS, "obs-b", ip="10.0.0.3")
    _, book, registry = await discover(stub.url, watch=False, poll_interval_s=0.1)
    await eventually(lambda: book.hosts() == {"10.0.0.2", "10.0.0.3"}, what="first list")
    stub.delete_pod(NS, "obs-a")
    stub.create_pod(NS, "obs-c", ip="10.0.0.5")
    await eventually(lambda: book.hosts() == {"10.0.0.3", "10.0.0.5"}, what="next poll")
    assert not any(q.get("watch") for _, _, q in stub.requests)
    assert metric(registry, "hamok_discovery_pod_lists_total") >= 2


async def test_expired_watch_relists_and_repairs_missed_events(stub: K8sStub, discover: Any) -> None:
    stub.create_pod(NS, "obs-a", ip="10.0.0.2")
    _, book, registry = await discover(stub.url, watch=True, watch_timeout_s=1)
    await eventually(lambda: book.hosts() == {"10.0.0.2"}, what="initial list")
    await eventually(lambda: any(q.get("watch") for _, _, q in stub.requests), what="watching")
    stub.live_events = False  # the open watch misses these changes...
    stub.delete_pod(NS, "obs-a")
    stub.create_pod(NS, "obs-z", ip="10.0.0.26")
    stub.compact()            # ...and the history needed to replay them is gone: the next watch gets 410
    stub.live_events = True
    await eventually(lambda: book.hosts() == {"10.0.0.26"}, what="re-list after 410")
    assert metric(registry, "hamok_discovery_pod_lists_total") == 2
    assert metric(registry, "hamok_discovery_api_errors_total") == 0
    assert ("remove", next(a for op, a in book.calls if op == "add")) in book.calls


async def test_api_errors_are_retried_with_backoff(stub: K8sStub, discover: Any) -> None:
    stub.create_pod(NS, "obs-a", ip="10.0.0.2")
    stub.fail_requests(3, status=500)
    _, book, registry = await discover(stub.url)
    await eventually(lambda: book.hosts() == {"10.0.0.2"}, what="list after failures")
    assert metric(registry, "hamok_discovery_api_errors_total") == 3


async def test_api_down_is_retried_and_a_returning_api_is_reconciled(discover: Any) -> None:
    port = free_port()
    discovery, book, registry = await discover(f"http://127.0.0.1:{port}")
    await eventually(lambda: metric(registry, "hamok_discovery_api_errors_total") >= 3, what="errors counted")
    assert discovery._task is not None and not discovery._task.done()

    first = K8sStub()
    first.create_pod(NS, "obs-a", ip="10.0.0.2")
    first.create_pod(NS, "obs-b", ip="10.0.0.3")
    await first.start(port=port)
    await eventually(lambda: book.hosts() == {"10.0.0.2", "10.0.0.3"}, what="pods once the API is up")

    await first.stop()  # the API goes away in the middle of a watch
    errors = metric(registry, "hamok_discovery_api_errors_total")
    await eventually(lambda: metric(registry, "hamok_discovery_api_errors_total") > errors,
                     what="outage seen")
    second = K8sStub()  # comes back with other pods (obs-a gone, obs-c new)
    second.create_pod(NS, "obs-b", ip="10.0.0.3")
    second.create_pod(NS, "obs-c", ip="10.0.0.5")
    await second.start(port=port)
    try:
        await eventually(lambda: book.hosts() == {"10.0.0.3", "10.0.0.5"}, what="reconciled after the outage")
        assert not discovery._task.done()
    finally:
        await second.stop()


async def test_own_pod_comes_from_the_environment(
    stub: K8sStub, discover: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_IP", "10.0.0.3")
    monkeypatch.setenv("HOSTNAME", "obs-a")
    stub.create_pod(NS, "obs-a", ip="10.0.0.2")   # our name
    stub.create_pod(NS, "obs-b", ip="10.0.0.3")   # our IP
    stub.create_pod(NS, "obs-c", ip="10.0.0.4")
    _, book, _ = await discover(stub.url, local_pod_ip=None, local_pod_name=None)
    await eventually(lambda: book.hosts() == {"10.0.0.4"}, what="others only")


async def test_stop_ends_the_watch_and_changes_no_longer_arrive(stub: K8sStub) -> None:
    discovery = K8sPodsDiscovery(port=PORT, namespace=NS, api_host=stub.url, local_pod_name="me")
    book = AddressBook()
    await discovery.start(book)
    await eventually(lambda: any(q.get("watch") for _, _, q in stub.requests), what="watching")
    await discovery.stop()
    stub.create_pod(NS, "obs-a", ip="10.0.0.2")
    await asyncio.sleep(0.2)
    assert book.calls == []
    await discovery.stop()  # idempotent


async def test_outside_kubernetes_without_api_host_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    discovery = K8sPodsDiscovery(port=PORT)
    with pytest.raises(HamokError, match="not running inside Kubernetes"):
        await discovery.start(AddressBook())


async def test_stub_runs_as_a_standalone_process() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "tests/k8s_stub.py", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert f"127.0.0.1:{port}" in line.decode()
        book = AddressBook()
        discovery = K8sPodsDiscovery(port=PORT, namespace=NS, api_host=f"http://127.0.0.1:{port}",
                                     min_request_interval_s=0.05)
        await discovery.start(book)
        try:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                body = {"metadata": {"name": "obs-a"}, "status": {"phase": "Running", "podIP": "10.0.0.2"}}
                pods_url = f"http://127.0.0.1:{port}/api/v1/namespaces/{NS}/pods"
                async with session.post(pods_url, json=body) as r:
                    assert r.status == 201
                await eventually(lambda: book.hosts() == {"10.0.0.2"}, what="pod created over HTTP")
                async with session.delete(f"http://127.0.0.1:{port}/api/v1/namespaces/{NS}/pods/obs-a") as r:
                    assert r.status == 200
                await eventually(lambda: book.addresses == {}, what="pod deleted over HTTP")
                async with session.get(f"http://127.0.0.1:{port}/api/v1/namespaces/{NS}/pods/obs-a") as r:
                    assert r.status == 404 and (await r.json())["reason"] == "NotFound"
        finally:
            await discovery.stop()
    finally:
        process.terminate()
        await process.wait()
