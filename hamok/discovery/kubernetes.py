"""Peers are the running pods of a namespace (by name prefix and/or label selector).

Lists the pods once, then watches from the list's resourceVersion; a 410 (history
compacted) or any error leads to a fresh list, so a missed event is repaired by the
next reconciliation. Poll mode (``watch=False``) lists every ``poll_interval_s``.
API errors are counted, logged once per outage, and retried with capped backoff; the
loop never ends on its own, so discovery cannot take the grid down.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import ClosedError, HamokError
from ..transport.backoff import Backoff
from ..transport.base import Endpoint
from .base import Discovery

if TYPE_CHECKING:
    from kubernetes_asyncio import client

_LOG = logging.getLogger(__name__)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class K8sPodsDiscovery(Discovery):
    """Adds every running pod (with an IP, not this pod) as ``podIP:port``; removes it when it stops.

    ``local_pod_ip`` / ``local_pod_name`` default to the ``POD_IP`` and ``HOSTNAME``
    environment variables (set ``POD_IP`` from ``status.podIP`` with the downward API).
    ``api_host`` points at a specific API server without credentials (tests, a local
    ``kubectl proxy``); without it the in-cluster service account is used.
    """

    def __init__(
        self,
        *,
        port: int,
        namespace: str = "default",
        prefix: str | None = None,
        label_selector: str | None = None,
        watch: bool = True,
        poll_interval_s: float = 5.0,
        watch_timeout_s: int = 60,
        request_timeout_s: float = 10.0,
        min_request_interval_s: float = 0.5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        local_pod_ip: str | None = None,
        local_pod_name: str | None = None,
        api_host: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
        if poll_interval_s <= 0 or watch_timeout_s < 1 or request_timeout_s <= 0:
            raise ValueError("poll_interval_s, request_timeout_s must be > 0 and watch_timeout_s >= 1")
        self._port = port
        self._namespace = namespace
        self._prefix = prefix or None
        self._label_selector = label_selector or None
        self._watch = watch
        self._poll_interval = poll_interval_s
        self._watch_timeout = int(watch_timeout_s)
        self._request_timeout = request_timeout_s
        self._min_interval = min_request_interval_s
        self._backoff = Backoff(backoff_base_s, backoff_max_s)
        if local_pod_ip is None:
            local_pod_ip = os.environ.get("POD_IP") or None
        if local_pod_name is None:
            local_pod_name = os.environ.get("HOSTNAME") or None
        self._local_ip = local_pod_ip
        self._local_name = local_pod_name
        self._api_host = api_host
        reg = registry if registry is not None else CollectorRegistry()
        self._peers_gauge = Gauge(
            "hamok_discovery_peers", "Pod addresses handed to the endpoint", registry=reg
        )
        self._api_errors = Counter(
            "hamok_discovery_api_errors", "Failed Kubernetes API list/watch calls", registry=reg
        )
        self._lists = Counter(
            "hamok_discovery_pod_lists", "Full pod lists (initial, poll, re-list)", registry=reg
        )
        self._known: dict[str, str] = {}  # address id -> pod IP handed to the endpoint
        self._last_request: dict[str, float] = {}
        self._endpoint: Endpoint | None = None
        self._api: client.ApiClient | None = None
        self._core: client.CoreV1Api | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def known_addresses(self) -> dict[str, tuple[str, int]]:
        """Address id -> (pod IP, port) currently handed to the endpoint."""
        return {address_id: (ip, self._port) for address_id, ip in self._known.items()}

    async def start(self, endpoint: Endpoint) -> None:
        if self._task is not None:
            return
        # imported here: kubernetes_asyncio takes ~0.5 s to import, a cost only pod discovery should pay
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        if self._api_host:
            configuration.host = self._api_host
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as exc:
                raise HamokError(
                    f"K8sPodsDiscovery: not running inside Kubernetes ({exc}); "
                    "run in a pod with a service account allowed to list pods, or set api_host"
                ) from exc
        self._endpoint = endpoint
        self._api = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._api)
        self._task = asyncio.get_running_loop().create_task(self._run())
        _LOG.info(
            "discovering pods in namespace %s (prefix=%s, labelSelector=%s, port=%d, %s)",
            self._namespace, self._prefix, self._label_selector, self._port,
            "watch" if self._watch else f"poll every {self._poll_interval:g} s",
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._api is not None:
            await self._api.close()
            self._api = None

    # ------------------------------------------------------------------ loop

    async def _run(self) -> None:
        failing = False
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._relist()
                if self._watch:
                    resource_version = await self._watch_from(resource_version)
                else:
                    await asyncio.sleep(self._poll_interval)
                    resource_version = None
                if failing:
                    _LOG.info("Kubernetes API reachable again")
                failing = False
                self._backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any API/network/decoding failure: retry, never end the loop
                self._api_errors.inc()
                delay = self._backoff.next_delay()
                if failing:
                    _LOG.debug("pod discovery still failing: %s; retrying in %.2f s", _describe(exc), delay)
                else:
                    _LOG.warning("pod discovery failed: %s; retrying in %.2f s", _describe(exc), delay)
                failing = True
                resource_version = None
                await asyncio.sleep(delay)

    async def _pace(self, kind: str) -> None:
        """At most one request of a kind per min_request_interval_s, whatever the server does."""
        wait = self._last_request.get(kind, -1e9) + self._min_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_request[kind] = time.monotonic()

    @property
    def _started_endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise ClosedError("K8sPodsDiscovery was not started")
        return self._endpoint

    @property
    def _started_api(self) -> client.CoreV1Api:
        if self._core is None:
            raise ClosedError("K8sPodsDiscovery was not started")
        return self._core

    def _selector(self) -> dict[str, Any]:
        return {"label_selector": self._label_selector} if self._label_selector else {}

    async def _relist(self) -> str | None:
        await self._pace("list")
        pods = await self._started_api.list_namespaced_pod(
            self._namespace, _request_timeout=self._request_timeout, **self._selector()
        )
        self._lists.inc()
        wanted: dict[str, str] = {}
        for pod in pods.items or ():
            target = self._target(pod)
            if target is not None:
                wanted[target[0]] = target[1]
        for address_id in set(self._known) - set(wanted):
            self._remove(address_id)
        for address_id, ip in wanted.items():
            self._add(address_id, ip)
        return pods.metadata.resource_version if pods.metadata is not None else None

    async def _watch_from(self, resource_version: str | None) -> str | None:
        """Apply watch events until the server ends the stream; None means a re-list is needed."""
        if resource_version is None:
            return None
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        await self._pace("watch")
        stream = watch.Watch()
        try:
            async with stream.stream(
                self._started_api.list_namespaced_pod,
                self._namespace,
                resource_version=resource_version,
                timeout_seconds=self._watch_timeout,
                _request_timeout=self._watch_timeout + self._request_timeout,
                **self._selector(),
            ) as events:
                async for event in events:
                    kind = event["type"]
                    if kind in ("ADDED", "MODIFIED"):
                        self._apply(event["object"])
                    elif kind == "DELETED":
                        target = self._address_id(event["object"])
                        if target in self._known:
                            self._remove(target)
        except ApiException as exc:
            if exc.status == 410:
                _LOG.info("pod watch expired (410); re-listing")
                return None
            raise
        return stream.resource_version or resource_version

    # ------------------------------------------------------------------ pods -> addresses

    def _address_id(self, pod: Any) -> str:
        meta = pod.metadata
        return f"pod/{meta.namespace or self._namespace}/{meta.name}/{meta.uid or ''}"

    def _target(self, pod: Any) -> tuple[str, str] | None:
        """(address id, pod IP) when the pod is a peer to dial, else None."""
        meta, status = pod.metadata, pod.status
        if meta is None or not meta.name or status is None:
            return None
        if self._prefix and not meta.name.startswith(self._prefix):
            return None
        ip = status.pod_ip
        if status.phase != "Running" or not ip:
            return None
        if meta.name == self._local_name or ip == self._local_ip or _is_loopback(ip):
            return None
        return self._address_id(pod), ip

    def _apply(self, pod: Any) -> None:
        target = self._target(pod)
        if target is not None:
            self._add(*target)
            return
        if pod.metadata is not None and pod.metadata.name:
            address_id = self._address_id(pod)
            if address_id in self._known:
                self._remove(address_id)

    def _add(self, address_id: str, ip: str) -> None:
        if self._known.get(address_id) == ip:
            return
        self._known[address_id] = ip
        self._peers_gauge.set(len(self._known))
        _LOG.info("pod peer %s at %s:%d", address_id, ip, self._port)
        self._started_endpoint.add_address(address_id, ip, self._port)

    def _remove(self, address_id: str) -> None:
        self._known.pop(address_id, None)
        self._peers_gauge.set(len(self._known))
        _LOG.info("pod peer %s gone", address_id)
        self._started_endpoint.remove_address(address_id)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)  # kubernetes_asyncio's ApiException
    if isinstance(status, int):
        return f"HTTP {status} {getattr(exc, 'reason', '')}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
