"""Deployment artefacts (docker/, examples/config, examples/cluster) checked without a Docker
engine or a Kubernetes cluster: the manifests parse and agree with each other, the configs they
carry load with the environment they provide, the image's install step and its CMD/HEALTHCHECK
work in a fresh venv, and the local 3-daemon cluster forms one grid under the load generator."""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
import yaml
from packaging.requirements import Requirement

from observer.app import ObserverApp
from observer.config import K8sPodsDiscoveryConfig, StaticDiscoveryConfig, load_config
from tests.observer.replay import event_counts, read_reports
from tests.shared_paths import FIXTURES, REPO

DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
EXAMPLES = REPO / "examples" / "config"
CLUSTER = REPO / "examples" / "cluster"
SECRET = "s3cr3t-" * 6  # what the tests put where a deployment puts its own secret


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cluster_run = _load_module("examples_cluster_run", CLUSTER / "run.py")
loadgen = _load_module("examples_cluster_loadgen", CLUSTER / "loadgen.py")


def free_ports(count: int) -> list[int]:
    return list(cluster_run.free_ports(count))


# ---------------------------------------------------------------------------- parsing helpers
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DOCKER / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def healthcheck_command() -> list[str]:
    (args,) = instructions("HEALTHCHECK")
    _, _, command = args.partition(" CMD ")
    return list(orjson.loads(command))


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= doc.keys(), path
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def one_of(objects: Mapping[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [o for (k, _), o in objects.items() if k == kind]
    return obj


def container(statefulset: Mapping[str, Any]) -> dict[str, Any]:
    (first,) = statefulset["spec"]["template"]["spec"]["containers"]
    return dict(first)


def container_port(spec: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in spec["ports"] if p["name"] == port]
    return int(number)


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors ("a=b,c=d"), the only form the manifests use."""
    terms = [term.strip() for term in selector.split(",") if term.strip()]
    assert terms and all(re.fullmatch(r"[\w./-]+==?[\w./-]+", term) for term in terms), selector
    return all(labels.get(key) == value for key, value in (re.split(r"==?", term) for term in terms))


def pod_env(objects: Mapping[tuple[str, str], dict[str, Any]], pod_ip: str = "10.244.1.7") -> dict[str, str]:
    """The environment a pod of the StatefulSet gets, with the Secret template's value filled in."""
    statefulset = one_of(objects, "StatefulSet")
    env: dict[str, str] = {"HOSTNAME": f"{statefulset['metadata']['name']}-0"}
    for item in container(statefulset)["env"]:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            env[item["name"]] = {"status.podIP": pod_ip,
                                 "metadata.namespace": statefulset["metadata"]["namespace"]}[field]
        else:
            ref = source["secretKeyRef"]
            assert ref.get("optional") is not True  # no pod may start without the grid secret
            secret = objects[("Secret", ref["name"])]
            assert ref["key"] in secret["stringData"]
            env[item["name"]] = SECRET
    return env


_COMPOSE_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def compose_interpolate(value: str, env: Mapping[str, str]) -> str:
    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise ValueError(f"compose: {name} is required: {arg}")
        return arg if op else ""
    return _COMPOSE_VAR.sub(resolve, value)


def compose_services(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = doc["services"]
    for service in services.values():
        service["environment"] = {k: compose_interpolate(str(v), env) for k, v in service["environment"].items()}
    return dict(services)


def compose_config_path(service: Mapping[str, Any]) -> Path:
    """The host file behind the service's OBSERVER_CONFIG_FILE (through its bind mounts)."""
    inside = service["environment"]["OBSERVER_CONFIG_FILE"]
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if inside.startswith(target.rstrip("/") + "/"):
            return (DOCKER / source).resolve() / inside[len(target.rstrip("/")) + 1:]
    raise AssertionError(f"{inside} is not inside a mounted volume")


def published(service: Mapping[str, Any]) -> dict[int, int]:
    """container port -> host port"""
    out = {}
    for mapping in service["ports"]:
        host, container_side = str(mapping).rsplit(":", 1)
        out[int(container_side)] = int(host.rsplit(":", 1)[-1])
    return out


# ---------------------------------------------------------------------------- every file parses
def test_every_yaml_file_parses_and_every_manifest_is_namespaced() -> None:
    files = [DOCKER / "compose.yaml", *K8S.glob("*.yaml"), *EXAMPLES.glob("*.yaml")]
    assert len(files) >= 12
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(doc, dict) for doc in docs), path
    objects = k8s_objects()
    kinds = collections.Counter(kind for kind, _ in objects)
    assert kinds == {"Namespace": 1, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "ConfigMap": 1, "Secret": 1,
                     "StatefulSet": 1, "Service": 2, "PodDisruptionBudget": 1}
    namespace = one_of(objects, "Namespace")["metadata"]["name"]
    for (kind, name), obj in objects.items():
        if kind != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, (kind, name)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == namespace
    listed = set(kustomization["resources"])
    # the Secret is a template: applying it as it is would give every cluster the same grid secret
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}
    assert "REPLACE" in one_of(objects, "Secret")["stringData"]["secret"]


# ---------------------------------------------------------------------------- kubernetes
def test_k8s_config_map_is_the_k8s_example_and_loads_with_the_pod_environment(tmp_path: Path) -> None:
    objects = k8s_objects()
    statefulset = one_of(objects, "StatefulSet")
    spec = container(statefulset)
    env = pod_env(objects)
    # OBSERVER_CONFIG_FILE points at the ConfigMap's key through the volume mount
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in spec["volumeMounts"] if env["OBSERVER_CONFIG_FILE"].startswith(m["mountPath"] + "/")]
    config_map = objects[("ConfigMap", volumes[mount["name"]]["configMap"]["name"])]
    key = env["OBSERVER_CONFIG_FILE"][len(mount["mountPath"]) + 1:]
    embedded = config_map["data"][key]
    assert yaml.safe_load(embedded) == yaml.safe_load((EXAMPLES / "k8s.yaml").read_text())

    path = tmp_path / key
    path.write_text(embedded)
    config = load_config(path, env=env)
    assert config.http.port == container_port(spec, "samples") == 7080
    assert config.management.port == container_port(spec, "management") == 7081
    assert config.hamok.secret == SECRET
    assert config.hamok.endpoint is not None and config.hamok.endpoint.server_port == container_port(spec, "hamok")
    discovery = config.hamok.discovery
    assert isinstance(discovery, K8sPodsDiscoveryConfig)
    assert discovery.namespace == statefulset["metadata"]["namespace"]
    assert discovery.port == container_port(spec, "hamok") == 5601
    assert discovery.prefix and env["HOSTNAME"].startswith(discovery.prefix)
    assert discovery.label_selector and selector_matches(
        discovery.label_selector, statefulset["spec"]["template"]["metadata"]["labels"])
    assert not selector_matches(discovery.label_selector, {"app.kubernetes.io/name": "something-else"})
    assert discovery.watch
    # the same file outside a pod (no POD_NAMESPACE) looks in "default", and without the secret runs unauthenticated
    bare = load_config(EXAMPLES / "k8s.yaml", env={})
    assert isinstance(bare.hamok.discovery, K8sPodsDiscoveryConfig) and bare.hamok.discovery.namespace == "default"
    assert bare.hamok.secret is None


def test_k8s_service_account_may_get_list_and_watch_pods() -> None:
    objects = k8s_objects()
    statefulset = one_of(objects, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    account = objects[("ServiceAccount", pod["serviceAccountName"])]
    assert pod.get("automountServiceAccountToken", True) and account.get("automountServiceAccountToken", True)
    binding = one_of(objects, "RoleBinding")
    assert {"kind": "ServiceAccount", "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"]} in binding["subjects"]
    assert binding["roleRef"]["kind"] == "Role"
    role = objects[("Role", binding["roleRef"]["name"])]
    granted = {verb for rule in role["rules"] if "" in rule["apiGroups"] and "pods" in rule["resources"]
               for verb in rule["verbs"]}
    assert granted == {"get", "list", "watch"}  # and nothing more


def test_k8s_statefulset_probes_services_and_security() -> None:
    objects = k8s_objects()
    statefulset = one_of(objects, "StatefulSet")
    template = statefulset["spec"]["template"]
    labels = template["metadata"]["labels"]
    spec = container(statefulset)
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    env = {item["name"]: item for item in spec["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = spec[probe]["httpGet"]
        assert (get["path"], container_port(spec, get["port"])) == (path, 7081), probe

    services = {name: obj for (kind, name), obj in objects.items() if kind == "Service"}
    headless = services.pop(statefulset["spec"]["serviceName"])
    (samples,) = services.values()
    for service in (samples, headless):
        assert service["spec"]["selector"].items() <= labels.items()
    assert [(p["port"], container_port(spec, p["targetPort"])) for p in samples["spec"]["ports"]] == [(7080, 7080)]
    assert headless["spec"]["clusterIP"] == "None"
    assert [(p["port"], container_port(spec, p["targetPort"])) for p in headless["spec"]["ports"]] == [(5601, 5601)]
    assert one_of(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # the pod runs as the image's non-root user
    (user,) = instructions("USER")
    uid = int(user.split(":")[0])
    pod_security = template["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == uid != 0
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["image"].split(":")[0] == yaml.safe_load((DOCKER / "compose.yaml").read_text())[
        "services"]["observer-1"]["image"].split(":")[0]


# ---------------------------------------------------------------------------- compose
def test_compose_three_nodes_with_distinct_ports_each_peering_with_the_other_two() -> None:
    services = compose_services({"HAMOK_SECRET": SECRET})
    assert len(services) == 3
    host_ports = [port for service in services.values() for port in published(service).values()]
    assert len(host_ports) == len(set(host_ports)) == 6
    configs = {}
    for name, service in services.items():
        assert (DOCKER / service["build"]["context"]).resolve() == REPO
        assert (REPO / service["build"]["dockerfile"]) == DOCKER / "Dockerfile"
        assert all(volume.endswith(":ro") for volume in service["volumes"])
        config = load_config(compose_config_path(service), env=service["environment"])
        assert set(published(service)) == {config.http.port, config.management.port}
        assert config.hamok.secret == SECRET
        assert config.hamok.endpoint is not None
        configs[name] = config
    for name, config in configs.items():
        discovery = config.hamok.discovery
        assert isinstance(discovery, StaticDiscoveryConfig)
        others = {other: c.hamok.endpoint.server_port for other, c in configs.items()
                  if other != name and c.hamok.endpoint is not None}
        assert {p.host: p.port for p in discovery.peers} == others, name
        assert services[name]["hostname"] == name
    # one secret for every node, and none by default: compose refuses to start without it
    raw = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert {service["environment"]["HAMOK_SECRET"] for service in raw.values()} == {
        "${HAMOK_SECRET:?set HAMOK_SECRET to a long random value, the same for every node}"}
    with pytest.raises(ValueError, match="HAMOK_SECRET is required"):
        compose_services({})


# ---------------------------------------------------------------------------- Dockerfile
def test_dockerfile_non_root_user_exposed_ports_healthcheck_and_plain_install() -> None:
    (base,) = instructions("FROM")
    assert base == "python:3.11-slim"
    (user,) = instructions("USER")
    uid = user.split(":")[0]
    assert uid not in ("root", "0")
    assert any(re.search(rf"useradd .*--uid {uid}\b", run) for run in instructions("RUN"))
    exposed = {int(port) for args in instructions("EXPOSE") for port in args.split()}
    assert exposed == {7080, 7081, 5601}
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"] and "127.0.0.1" in command[2] and "/health" in command[2]
    assert "'7081'" in command[2]
    (cmd,) = instructions("CMD")
    assert orjson.loads(cmd) == ["observer"]
    installs = [part.strip() for run in instructions("RUN") for part in run.split("&&") if "pip install" in part]
    assert installs == ["pip install ."]  # the project, no extras, no editable install
    for args in instructions("COPY"):
        *sources, _ = args.split()
        for source in sources:
            assert (REPO / source).exists() and not source.startswith(("tests", "examples")), source


async def test_healthcheck_command_passes_on_a_live_daemon_and_fails_on_a_dead_one(tmp_path: Path) -> None:
    command = healthcheck_command()
    command[0] = sys.executable
    app = ObserverApp(load_config(None, env={}, overrides={
        "micronaut": {"server": {"port": 0}}, "endpoints": {"all": {"port": 0}}}))
    await app.start()
    try:
        assert app.management is not None
        port = app.management.port
        env = dict(os.environ, APPLICATION_MANAGEMENT_PORT=str(port))
        probe = await asyncio.create_subprocess_exec(*command, env=env, stderr=asyncio.subprocess.DEVNULL)
        assert await asyncio.wait_for(probe.wait(), 30) == 0
    finally:
        await app.stop()
    probe = await asyncio.create_subprocess_exec(*command, env=env, stderr=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(probe.wait(), 30) != 0


def _copy_build_context(ctx: Path) -> None:
    """What the Dockerfile's COPY instructions put into its WORKDIR."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for args in instructions("COPY"):
        *sources, dest = args.split()
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(origin, ctx / dest, ignore=ignore, dirs_exist_ok=True)
            else:
                target = ctx / dest / origin.name if dest.endswith("/") else ctx / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def _missing_build_requirements() -> list[str]:
    """[build-system].requires of pyproject.toml that this environment does not satisfy."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    missing = []
    for text in requires:
        requirement = Requirement(text)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{text} (found {installed})")
    return missing


def _wait_http_ok(url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


@pytest.mark.processes
@pytest.mark.timeout(90)
def test_image_install_step_and_cmd_in_a_fresh_venv(tmp_path: Path) -> None:
    """The Dockerfile's COPY + `pip install .` in a new venv, then its CMD and HEALTHCHECK.

    Offline: the new venv also sees this interpreter's site-packages (a .pth file, after its own),
    so pip resolves every declared dependency against the versions installed there (--no-index)
    and builds the project with the installed setuptools (--no-build-isolation). The project
    itself is installed into the venv, not linked."""
    missing = _missing_build_requirements()
    if missing:  # the offline build uses this environment's build tools (see the docstring)
        pytest.skip(f"build requirements {', '.join(missing)} are not installed here; install them "
                    f"(they belong in the project's test extras) to run the image's install step offline")
    ctx, venv = tmp_path / "ctx", tmp_path / "venv"
    _copy_build_context(ctx)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=30)
    python, observer = venv / "bin" / "python", venv / "bin" / "observer"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    Path(purelib, "outer-site-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OBSERVER_CONFIG_FILE", "PIP_USER")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    (install,) = [part.strip() for run in instructions("RUN") for part in run.split("&&") if "pip install" in part]
    args = install.split()[2:]
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", *args],
                          cwd=ctx, env=env, capture_output=True, text=True, timeout=70)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import observer, observer.app; print(observer.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=True)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    assert observer.is_file()

    # --check-config with the compose node config and the Kubernetes ConfigMap, as the image would run them
    service = compose_services({"HAMOK_SECRET": SECRET})["observer-1"]
    objects = k8s_objects()
    k8s_config = tmp_path / "observer.yaml"
    k8s_config.write_text(objects[("ConfigMap", "observer-config")]["data"]["observer.yaml"])
    for config_file, extra, discovery in ((compose_config_path(service), service["environment"], "StaticDiscovery"),
                                          (k8s_config, pod_env(objects), "K8sPodsDiscovery")):
        check = subprocess.run([str(observer), "--check-config"], cwd=tmp_path, capture_output=True, text=True,
                               env=env | dict(extra) | {"OBSERVER_CONFIG_FILE": str(config_file)}, timeout=30)
        assert check.returncode == 0, check.stderr
        printed = yaml.safe_load(check.stdout)["observer"]["hamok"]
        assert printed["secret"] != SECRET  # masked
        assert printed["discovery"]["type"] == discovery

    # the CMD: `observer` with OBSERVER_CONFIG_FILE, probed by the HEALTHCHECK command, stopped by SIGTERM
    port, management = free_ports(2)
    run_env = env | {"OBSERVER_CONFIG_FILE": str(EXAMPLES / "minimal.yaml"), "APPLICATION_SERVER_PORT": str(port),
                     "APPLICATION_MANAGEMENT_PORT": str(management)}
    (cmd,) = instructions("CMD")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as stderr:
        daemon = subprocess.Popen([str(venv / "bin" / orjson.loads(cmd)[0])], cwd=tmp_path, env=run_env,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_http_ok(f"http://127.0.0.1:{management}/ready", 30, log)
        health = healthcheck_command()
        assert subprocess.run([str(python), *health[1:]], env=run_env, timeout=30).returncode == 0
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


# ---------------------------------------------------------------------------- examples/cluster
def test_cluster_nodes_each_peer_with_the_other_two_on_the_chosen_ports(tmp_path: Path) -> None:
    ports = free_ports(9)
    nodes = cluster_run.plan_nodes(ports[0:3], ports[3:6], ports[6:9], tmp_path)
    for node in nodes:
        config = load_config(node.config, env=cluster_run.node_env({}, nodes, node, SECRET))
        assert (config.http.port, config.management.port) == (node.samples_port, node.management_port)
        assert config.hamok.endpoint is not None and config.hamok.endpoint.server_port == node.hamok_port
        assert config.hamok.secret == SECRET
        assert isinstance(config.hamok.discovery, StaticDiscoveryConfig)
        assert {(p.host, p.port) for p in config.hamok.discovery.peers} == {
            ("127.0.0.1", other.hamok_port) for other in nodes if other is not node}
        assert config.sources.websocket.min_remote_peers == 2
        (file_sink,) = [s for s in config.sinks if s.type == "FileSink"]
        assert file_sink.enabled and file_sink.config["path"] == str(node.reports)
    with pytest.raises(ValueError, match="distinct"):
        cluster_run.plan_nodes(ports[0:3], ports[0:3], ports[6:9], tmp_path)
    with pytest.raises(ValueError, match="needs 3 ports"):
        cluster_run.plan_nodes(ports[0:2], ports[3:6], ports[6:9], tmp_path)


def _uuids(data: bytes) -> set[bytes]:
    return set(re.findall(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", data))


def test_loadgen_rewrites_ids_per_room_and_spreads_each_room_over_the_targets() -> None:
    templates = loadgen.load_templates(FIXTURES)
    assert {t.scenario for t in templates} == {"p2p-json", "sfu-json"}
    targets = ["ws://a:1", "ws://b:2", "ws://c:3"]
    plans = loadgen.plan_clients(templates, 4, targets, 0x1234)
    rooms: dict[int, list[Any]] = collections.defaultdict(list)
    for plan in plans:
        rooms[plan.room].append(plan)
    assert sorted(rooms) == [0, 1, 2, 3]
    ids_per_room = []
    for room, clients in rooms.items():
        assert sorted(p.target for p in clients) == targets  # 3 clients, one on each daemon
        ids: set[bytes] = set()
        client_ids = []
        for plan in clients:
            samples = [orjson.loads(f.data)["clientSamples"][0] for f in plan.frames]
            assert {s["roomId"] for s in samples} == {loadgen.room_name(0x1234, room)}
            (client_id,) = {s["clientId"] for s in samples}  # a client keeps its id across its frames
            client_ids.append(client_id)
            ids |= _uuids(b"".join(f.data for f in plan.frames))
        assert len(set(client_ids)) == 3
        # every id of the room carries the room's tag; the recorded ids are gone
        tag = loadgen.room_tag(0x1234, room)
        assert ids and all(i.endswith(tag) for i in ids)
        ids_per_room.append(ids)
    assert not ids_per_room[0] & ids_per_room[2]  # rooms 0 and 2 copy the same fixture room
    recorded = _uuids((FIXTURES / "p2p-json" / "001-r1-alice-json-ws.bin").read_bytes())
    assert recorded and not recorded & set().union(*ids_per_room)
    # the sample timestamp becomes the send time
    frame = rooms[0][0].frames[0]
    assert frame.timestamp_tokens
    stamped = orjson.loads(loadgen.stamped(frame.data, frame.timestamp_tokens, 1_234_567))
    assert stamped["clientSamples"][0]["timestamp"] == 1_234_567


def _file_sink_config(path: Path, **observer: Any) -> Any:
    return load_config(None, env={}, overrides={
        "micronaut": {"server": {"port": 0}}, "endpoints": {"all": {"port": 0}},
        "observer": {"sinks": {"file": {"type": "FileSink", "config": {"path": str(path)}}},
                     "buffers": {"samplesCollector": {"maxItems": 100, "maxTimeInMs": 20},
                                 "reportsCollector": {"maxItems": 500, "maxTimeInMs": 50}},
                     **observer}})


def _check_rooms(reports: list[dict[str, Any]], rooms: Mapping[str, list[str]], service_id: str) -> None:
    assert reports
    by_room: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for report in reports:
        assert report["payload"].get("serviceId") in (service_id, None)
        if report["payload"].get("roomId"):
            by_room[report["payload"]["roomId"]].append(report)
    assert set(by_room) == set(rooms)
    for room, room_reports in by_room.items():
        counts = event_counts(room_reports)
        assert (counts["CALL_STARTED"], counts["CLIENT_JOINED"]) == (1, len(rooms[room])), room
        assert len({r["payload"].get("callId") for r in room_reports}) == 1, room
        assert sum(r["type"] == "OUTBOUND_AUDIO_TRACK" for r in room_reports) > 0, room


@pytest.mark.timeout(60)
async def test_loadgen_against_one_daemon_gives_one_call_per_room(tmp_path: Path) -> None:
    out = tmp_path / "reports.jsonl"
    app = ObserverApp(_file_sink_config(out))
    await app.start()
    try:
        summary = await loadgen.run(targets=[f"127.0.0.1:{app.samples_port}"], rooms=3, rate=60, duration=1.5,
                                    fixtures=FIXTURES, seed=7)
    finally:
        await app.stop()
    assert summary.failures == 0
    (stats,) = summary.targets.values()
    assert stats.clients == stats.connected == 9
    assert 9 <= stats.frames <= 60 * 1.5 + 9  # every client sent, and the rate held
    _check_rooms(read_reports([out]), summary.rooms, "loadgen")


@pytest.mark.timeout(60)
async def test_loadgen_counts_refused_and_closed_connections(tmp_path: Path) -> None:
    app = ObserverApp(_file_sink_config(tmp_path / "r.jsonl", sources={"websocket": {"enabled": False}}))
    await app.start()
    try:
        (closed_port,) = free_ports(1)
        summary = await loadgen.run(targets=[f"127.0.0.1:{app.samples_port}", f"127.0.0.1:{closed_port}"], rooms=1,
                                    rate=20, duration=1.0, fixtures=FIXTURES, scenarios=["p2p-json"], seed=1)
    finally:
        await app.stop()
    disabled, refused = summary.targets.values()
    assert list(disabled.closed_by_server) and all(k.startswith("4229") for k in disabled.closed_by_server)
    assert refused.connected == 0 and refused.connect_errors.total() == refused.clients > 0
    assert summary.failures == 3
    assert "closed by the daemon" in loadgen.report(summary)


@pytest.mark.processes
@pytest.mark.timeout(90)
async def test_run_py_starts_three_daemons_that_act_as_one_and_stops_them(tmp_path: Path) -> None:
    ports = free_ports(9)
    samples = ports[0:3]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CLUSTER / "run.py"), "--samples-ports", ",".join(map(str, samples)),
        "--management-ports", ",".join(map(str, ports[3:6])), "--hamok-ports", ",".join(map(str, ports[6:9])),
        "--run-dir", str(tmp_path), "--stop-timeout", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=os.environ | {"HAMOK_SECRET": SECRET})
    assert proc.stdout is not None
    output: list[str] = []
    try:
        async def until(marker: str, timeout: float) -> None:
            async def read() -> None:
                assert proc.stdout is not None
                while not output or marker not in output[-1]:
                    line = await proc.stdout.readline()
                    assert line, "run.py ended early:\n" + "".join(output)
                    output.append(line.decode())
            await asyncio.wait_for(read(), timeout)

        await until(cluster_run.READY_LINE, 45)
        pids = [int(m.group(1)) for line in output if (m := re.match(r"node-\d: pid (\d+)", line))]
        assert len(pids) == 3
        summary = await loadgen.run(targets=[f"127.0.0.1:{p}" for p in samples], rooms=3, rate=45, duration=2.5,
                                    fixtures=FIXTURES, seed=11)
        assert summary.failures == 0 and summary.frames > 0
        proc.send_signal(signal.SIGTERM)
        await until("stopped:", 40)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "stopped: node-1 exit 0, node-2 exit 0, node-3 exit 0" in output[-1]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert SECRET not in "".join(output)
    _check_cluster_reports(tmp_path, summary.rooms)


def _check_cluster_reports(run_dir: Path, rooms: Mapping[str, list[str]]) -> None:
    """One call per room across the three daemons, and every daemon saw its share of the clients."""
    files = sorted(run_dir.glob("node-*.reports.jsonl"))
    assert len(files) == 3
    _check_rooms(read_reports(files), rooms, "loadgen")
    for file in files:
        assert any(r["type"] == "INBOUND_AUDIO_TRACK" for r in read_reports([file])), file

