"""A small Kubernetes API stub (pods only) for the discovery tests.

Serves what K8sPodsDiscovery and kubernetes_asyncio use:

- ``GET /api/v1/pods`` and ``GET /api/v1/namespaces/{ns}/pods``: a PodList with
  ``metadata.resourceVersion``, filtered by ``labelSelector`` (``k=v``, ``k==v``, ``k!=v``,
  ``k``, ``!k``, comma-separated). With ``watch=true`` (kubernetes_asyncio sends ``True``)
  the answer is an NDJSON stream of ``{"type", "object"}`` lines: the events after
  ``resourceVersion`` (or ADDED for every current pod without one), then live events,
  until ``timeoutSeconds``. A ``resourceVersion`` older than the retained history gets
  one ERROR event with a 410 Status, as a real apiserver does after compaction.
- ``GET/PUT/DELETE /api/v1/namespaces/{ns}/pods/{name}`` and ``POST .../pods``.

Tests drive it in-process (``K8sStub().start()``, ``create_pod``/``update_pod``/``delete_pod``,
``compact()``, ``fail_requests()``, ``live_events``); ``python tests/k8s_stub.py PORT`` runs it
standalone.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

_STOP = None


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _error(code: int, reason: str, message: str) -> web.Response:
    body = orjson.dumps(_status(code, reason, message))
    return web.Response(body=body, status=code, content_type="application/json")


class SelectorError(ValueError):
    pass


def parse_selector(text: str | None) -> list[tuple[str, str, str | None]]:
    """``a=b,c!=d,e,!f`` -> [(op, key, value)]; op in =, !=, exists, !exists."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in term:
            key, value = term.replace("==", "=", 1).split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif term.startswith("!"):
            terms.append(("!exists", term[1:].strip(), None))
        elif " " in term or "(" in term:
            raise SelectorError(f"unsupported selector term {term!r} (the stub knows =, ==, !=, k, !k)")
        else:
            terms.append(("exists", term, None))
    return terms


def matches(labels: Mapping[str, str], selector: list[tuple[str, str, str | None]]) -> bool:
    for op, key, value in selector:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
    return True


class K8sStub:
    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._rv = 1
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self._compacted_rv = 0
        self._watchers: set[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = set()
        self._failures: list[int] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        """Every request seen: (method, path, query)."""
        self.live_events = True
        """False: changes still enter the history but open watches miss them (a lost event)."""

    # ------------------------------------------------------------------ state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def resource_version(self) -> int:
        return self._rv

    def _record(self, kind: str, pod: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        pod["metadata"]["resourceVersion"] = str(self._rv)
        snapshot = orjson.loads(orjson.dumps(pod))
        self._history.append((self._rv, kind, snapshot))
        if self.live_events:
            for queue in self._watchers:
                queue.put_nowait((kind, snapshot))
        return snapshot

    def create_pod(
        self,
        namespace: str,
        name: str,
        *,
        ip: str | None = None,
        phase: str = "Running",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if (namespace, name) in self._pods:
            raise KeyError(f"pod {namespace}/{name} exists")
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": dict(labels or {}),
                "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "spec": {"containers": [{"name": "app", "image": "stub"}]},
            "status": {"phase": phase},
        }
        if ip:
            pod["status"]["podIP"] = ip
        self._pods[(namespace, name)] = pod
        return self._record("ADDED", pod)

    def update_pod(
        self,
        namespace: str,
        name: str,
        *,
        ip: str | None = None,
        phase: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        pod = self._pods[(namespace, name)]
        if phase is not None:
            pod["status"]["phase"] = phase
        if ip is not None:
            pod["status"]["podIP"] = ip
        if labels is not None:
            pod["metadata"]["labels"] = dict(labels)
        return self._record("MODIFIED", pod)

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self._pods.pop((namespace, name))
        return self._record("DELETED", pod)

    def compact(self) -> None:
        """Forget the event history: a watch from any earlier resourceVersion gets 410 Gone."""
        self._history.clear()
        self._compacted_rv = self._rv

    def fail_requests(self, count: int, status: int = 500) -> None:
        """The next ``count`` requests answer ``status`` with a Status body."""
        self._failures.extend([status] * count)

    def _select(self, namespace: str | None, selector: list[tuple[str, str, str | None]],
                pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        in_namespace = namespace is None or meta["namespace"] == namespace
        return in_namespace and matches(meta.get("labels") or {}, selector)

    # ------------------------------------------------------------------ http

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self._failures:
            code = self._failures.pop(0)
            return _error(code, "InternalError", "injected failure")
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v1/pods", self._list)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list)
        app.router.add_post("/api/v1/namespaces/{ns}/pods", self._create)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._get)
        app.router.add_put("/api/v1/namespaces/{ns}/pods/{name}", self._replace)
        app.router.add_delete("/api/v1/namespaces/{ns}/pods/{name}", self._delete)
        return app

    async def _list(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("ns")
        try:
            selector = parse_selector(request.query.get("labelSelector"))
        except SelectorError as exc:
            return _error(400, "BadRequest", str(exc))
        if request.query.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, namespace, selector)
        items = [p for p in self._pods.values() if self._select(namespace, selector, p)]
        body = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": str(self._rv)},
                "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, namespace: str | None,
                     selector: list[tuple[str, str, str | None]]) -> web.StreamResponse:
        try:
            timeout = float(request.query.get("timeoutSeconds", "3600"))
            since = request.query.get("resourceVersion") or ""
            since_rv = int(since) if since else 0
        except ValueError as exc:
            return _error(400, "BadRequest", f"bad watch parameter: {exc}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def emit(kind: str, obj: dict[str, Any]) -> None:
            await response.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

        if since_rv and since_rv < self._compacted_rv:
            await emit("ERROR", _status(410, "Expired", f"too old resource version: {since_rv} ({self._rv})"))
            return response
        # replay and subscription happen in one step of the loop, so no event falls between them
        if since_rv:
            backlog = [(k, p) for rv, k, p in self._history if rv > since_rv]
        else:
            backlog = [("ADDED", orjson.loads(orjson.dumps(p))) for p in self._pods.values()]
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._watchers.add(queue)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for kind, pod in backlog:
                if self._select(namespace, selector, pod):
                    await emit(kind, pod)
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item is _STOP:
                    break
                kind, pod = item
                if self._select(namespace, selector, pod):
                    await emit(kind, pod)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(queue)
        return response

    async def _get(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        pod = self._pods.get(key)
        if pod is None:
            return _error(404, "NotFound", f'pods "{key[1]}" not found')
        return web.Response(body=orjson.dumps(pod), content_type="application/json")

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            name = body["metadata"]["name"]
            status = body.get("status") or {}
            labels = body["metadata"].get("labels")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return _error(400, "BadRequest", f"pod body needs metadata.name: {exc}")
        namespace = request.match_info["ns"]
        if (namespace, name) in self._pods:
            return _error(409, "AlreadyExists", f'pods "{name}" already exists')
        pod = self.create_pod(namespace, name, ip=status.get("podIP"), phase=status.get("phase", "Running"),
                              labels=labels)
        return web.Response(status=201, body=orjson.dumps(pod), content_type="application/json")

    async def _replace(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self._pods:
            return _error(404, "NotFound", f'pods "{key[1]}" not found')
        try:
            body = orjson.loads(await request.read())
            status = body.get("status") or {}
            labels = (body.get("metadata") or {}).get("labels")
        except (orjson.JSONDecodeError, AttributeError) as exc:
            return _error(400, "BadRequest", f"bad pod body: {exc}")
        pod = self.update_pod(*key, ip=status.get("podIP"), phase=status.get("phase"), labels=labels)
        return web.Response(body=orjson.dumps(pod), content_type="application/json")

    async def _delete(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self._pods:
            return _error(404, "NotFound", f'pods "{key[1]}" not found')
        return web.Response(body=orjson.dumps(self.delete_pod(*key)), content_type="application/json")

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        for queue in self._watchers:
            queue.put_nowait(_STOP)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _serve_forever(port: int) -> None:
    stub = K8sStub()
    await stub.start("127.0.0.1", port)
    print(f"k8s stub listening on {stub.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await stub.stop()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python tests/k8s_stub.py PORT")
    try:
        asyncio.run(_serve_forever(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
