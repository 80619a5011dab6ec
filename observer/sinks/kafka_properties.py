"""Java Kafka producer properties (``bootstrap.servers``, ``linger.ms`` …) -> aiokafka producer arguments.

Supported: bootstrap.servers (required), client.id, acks, linger.ms, batch.size, compression.type
(none|gzip|snappy|lz4|zstd, if the codec library is installed), max.request.size, request.timeout.ms,
retry.backoff.ms, metadata.max.age.ms, connections.max.idle.ms, enable.idempotence, security.protocol,
sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), sasl.jaas.config (username="…" password="…"),
ssl.truststore.location / ssl.keystore.location (PEM files; ssl.*.type must be PEM when given),
ssl.key.password, ssl.endpoint.identification.algorithm ("" turns host name checking off).
Every other property is one the Python producer has no equivalent for (serializers, buffer.memory,
delivery.timeout.ms, …): it is ignored, and reported so the sink can log it, as the Java client logs
"supplied but isn't a known config".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import codec

from observer.sinks.settings import SinkConfigError

_INT_PROPERTIES = {
    "linger.ms": "linger_ms",
    "batch.size": "max_batch_size",
    "max.request.size": "max_request_size",
    "request.timeout.ms": "request_timeout_ms",
    "retry.backoff.ms": "retry_backoff_ms",
    "metadata.max.age.ms": "metadata_max_age_ms",
    "connections.max.idle.ms": "connections_max_idle_ms",
}
_CODECS: dict[str, Callable[[], bool] | None] = {
    "none": None, "gzip": codec.has_gzip, "snappy": codec.has_snappy, "lz4": codec.has_lz4,
    "zstd": codec.has_zstd,
}
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')
_SSL_PROPERTIES = ("ssl.truststore.location", "ssl.truststore.type", "ssl.keystore.location",
                   "ssl.keystore.type",
                   "ssl.key.password", "ssl.endpoint.identification.algorithm")


def flatten(properties: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{bootstrap: {servers: x}}`` -> ``{"bootstrap.servers": x}``."""
    flat: dict[str, Any] = {}
    for key, value in properties.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def producer_kwargs(properties: Mapping[str, Any], path: str) -> tuple[dict[str, Any], list[str]]:
    """aiokafka ``AIOKafkaProducer`` keyword arguments and the names of the ignored properties.
    ``path`` is the config path of the properties map, for error messages."""
    props = flatten(properties)

    def fail(key: str, message: str) -> SinkConfigError:
        return SinkConfigError(f"{path}.{key}", message)

    def integer(key: str) -> int:
        value = props[key]
        try:
            if isinstance(value, bool):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            raise fail(key, f"expected an integer, got {value!r}") from None
        if number < 0:
            raise fail(key, "must be >= 0")
        return number

    kwargs: dict[str, Any] = {}
    servers = str(props.get("bootstrap.servers") or "").strip()
    if not servers:
        raise fail("bootstrap.servers", "is required")
    kwargs["bootstrap_servers"] = [s.strip() for s in servers.split(",") if s.strip()]
    if "client.id" in props:
        kwargs["client_id"] = str(props["client.id"])
    for key, arg in _INT_PROPERTIES.items():
        if key in props:
            kwargs[arg] = integer(key)
    if "acks" in props:
        acks = str(props["acks"]).strip().lower()
        if acks not in ("all", "-1", "0", "1"):
            raise fail("acks", f"expected all, -1, 0 or 1, got {props['acks']!r}")
        kwargs["acks"] = "all" if acks in ("all", "-1") else int(acks)
    if "compression.type" in props:
        name = str(props["compression.type"]).strip().lower()
        if name not in _CODECS:
            raise fail("compression.type", f"expected one of {', '.join(_CODECS)}, got {name!r}")
        available = _CODECS[name]
        if available is not None and not available():
            raise fail("compression.type", f"the {name} codec library is not installed")
        kwargs["compression_type"] = None if name == "none" else name
    if "enable.idempotence" in props:
        value = str(props["enable.idempotence"]).strip().lower()
        if value not in ("true", "false"):
            raise fail("enable.idempotence", f"expected true or false, got {props['enable.idempotence']!r}")
        kwargs["enable_idempotence"] = value == "true"
    protocol = str(props.get("security.protocol", "PLAINTEXT")).strip().upper()
    if protocol not in _SECURITY_PROTOCOLS:
        raise fail("security.protocol", f"expected one of {', '.join(_SECURITY_PROTOCOLS)}, got {protocol!r}")
    kwargs["security_protocol"] = protocol
    if protocol.startswith("SASL"):
        kwargs.update(_sasl(props, fail))
    if protocol.endswith("SSL"):
        kwargs["ssl_context"] = _ssl_context(props, fail)
    handled = {"bootstrap.servers", "client.id", "acks", "compression.type", "enable.idempotence",
               "security.protocol", "sasl.mechanism", "sasl.jaas.config", *_INT_PROPERTIES, *_SSL_PROPERTIES}
    ignored = sorted(k for k in props if k not in handled)
    return kwargs, ignored


def _sasl(props: Mapping[str, Any], fail: Callable[[str, str], SinkConfigError]) -> dict[str, Any]:
    mechanism = str(props.get("sasl.mechanism", "PLAIN")).strip().upper()
    if mechanism not in _SASL_MECHANISMS:
        raise fail("sasl.mechanism", f"expected one of {', '.join(_SASL_MECHANISMS)}, got {mechanism!r}")
    jaas = props.get("sasl.jaas.config")
    if not isinstance(jaas, str):
        raise fail("sasl.jaas.config", 'is required for SASL (… required username="u" password="p";)')
    options = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _JAAS_OPTION.findall(jaas)}
    if "username" not in options or "password" not in options:
        raise fail("sasl.jaas.config", "must set username and password")
    return {"sasl_mechanism": mechanism, "sasl_plain_username": options["username"],
            "sasl_plain_password": options["password"]}


def _ssl_context(props: Mapping[str, Any], fail: Callable[[str, str], SinkConfigError]) -> Any:
    from aiokafka.helpers import create_ssl_context

    for key in ("ssl.truststore.type", "ssl.keystore.type"):
        if key in props and str(props[key]).upper() != "PEM":
            raise fail(key, "only PEM files are supported (JKS/PKCS12 stores are Java-only)")
    try:
        context = create_ssl_context(
            cafile=props.get("ssl.truststore.location"),
            certfile=props.get("ssl.keystore.location"),
            password=props.get("ssl.key.password"),
        )
    except OSError as exc:
        raise fail("ssl.truststore.location", f"cannot load the PEM files: {exc}") from None
    if str(props.get("ssl.endpoint.identification.algorithm", "https")) == "":
        context.check_hostname = False
    return context
