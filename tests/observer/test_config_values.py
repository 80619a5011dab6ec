"""Values: placeholders, key spellings, validation errors, sinks and their filters, redaction."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import yaml

from observer.config import ConfigError, ObserverConfig, ReportFilter, hashlib_name, load_config
from observer.config.keys import canonical
from observer.config.placeholders import PlaceholderError, expand
from observer.config.redact import MASK
from observer.reports.model import FILTER_FLAG, ReportType


def observer(**blocks: Any) -> dict[str, Any]:
    return {"observer": blocks}


def problems(overrides: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(env=env or {}, overrides=overrides)
    return list(info.value.problems)


# ---- placeholders ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${PORT}", "9000"),
        ("${PORT:7080}", "9000"),
        ("${MISSING:7080}", "7080"),
        ("${MISSING}", ""),
        ("${MISSING:}", ""),
        ("${MISSING:`classpath:hazelcast.yaml`}", "classpath:hazelcast.yaml"),
        ("${MISSING:`a}b`}", "a}b"),
        ("${MISSING:localhost:9092}", "localhost:9092"),
        ("http://${HOST:h}:${PORT}/x", "http://h:9000/x"),
        ("${MISSING:${PORT:1}}", "9000"),
        ("${MISSING:${ALSO_MISSING:1}}", "1"),
        ("no placeholder $ { }", "no placeholder $ { }"),
    ],
)
def test_placeholder_expansion(text: str, expected: str) -> None:
    assert expand(text, {"PORT": "9000"}) == expected


def test_unterminated_placeholder_is_an_error_naming_the_key() -> None:
    with pytest.raises(PlaceholderError):
        expand("${PORT", {})
    found = problems(observer(security={"obfuscations": {"hashSalt": "${SALT"}}))
    assert found == ["observer.security.obfuscations.hashSalt: unterminated placeholder in '${SALT'"]


def test_placeholders_are_typed_after_expansion() -> None:
    env = {"IDLE": "30", "BACKUPS": "true", "MODE": "SLAVE"}
    c = load_config(
        env=env,
        overrides=observer(
            repository={
                "callMaxIdleTimeInS": "${IDLE}",
                "useBackups": "${BACKUPS:false}",
                "clientsMaxIdle": "${CLIENTS_IDLE:45}",
            },
            evaluators={"callUpdater": {"callIdAssignMode": "${MODE:master}"}},
            sources={"allowedServiceIds": "${SERVICES:a, b}"},
        ),
    )
    assert c.repository.call_max_idle_time_in_s == 30
    assert c.repository.clients_max_idle == 45
    assert c.repository.use_backups is True
    assert c.evaluators.call_updater.call_id_assign_mode.value == "slave"
    assert c.sources.allowed_service_ids == ("a", "b")


def test_placeholders_expand_inside_free_form_sink_config() -> None:
    c = load_config(
        env={"BROKERS": "k1:9092"},
        overrides=observer(
            sinks={
                "k": {
                    "type": "KafkaSink",
                    "config": {"properties": {"bootstrap.servers": "${BROKERS}"}, "topic": "${T:reports}"},
                }
            }
        ),
    )
    assert c.sink("k").config == {"properties": {"bootstrap.servers": "k1:9092"}, "topic": "reports"}


def test_missing_placeholder_makes_optional_values_unset_and_numbers_invalid() -> None:
    c = load_config(env={}, overrides=observer(hamok={"secret": "${HAMOK_SECRET}"}))
    assert c.hamok.secret is None
    assert problems(observer(repository={"callMaxIdleTimeInS": "${IDLE}"})) == [
        "observer.repository.callMaxIdleTimeInS: must be an integer, got ''"
    ]


# ---- key spellings -----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["callMaxIdleTimeInS", "call-max-idle-time-in-s", "CALL_MAX_IDLE_TIME_IN_S"])
def test_canonical_key_forms(key: str) -> None:
    assert canonical(key) == "call-max-idle-time-in-s"


def test_kebab_case_keys_everywhere() -> None:
    c = load_config(
        env={},
        overrides={
            "micronaut": {"server": {"max-request-size": "10MB"}},
            "observer": {
                "sources": {"accept-sfu-samples": False, "websocket": {"min-remote-peers": 2}},
                "buffers": {"samples-collector": {"max-items": 5, "max-time-in-ms": 6}},
                "evaluators": {"call-updater": {"call-id-assign-mode": "slave"}},
                "hamok": {
                    "storage-grid": {"heartbeat-in-ms": 100},
                    "endpoint": {"type": "WebsocketEndpoint", "config": {"server-port": 6001}},
                },
                "metrics": {"repository-metrics": {"expose-period-in-min": 9}},
            },
        },
    )
    assert c.http.max_request_size == 10 * 1024 * 1024
    assert c.sources.accept_sfu_samples is False and c.sources.websocket.min_remote_peers == 2
    assert (c.buffers.samples_collector.max_items, c.buffers.samples_collector.max_time_in_ms) == (5, 6)
    assert c.evaluators.call_updater.call_id_assign_mode.value == "slave"
    assert c.hamok.storage_grid.heartbeat_in_ms == 100
    assert c.hamok.endpoint is not None and c.hamok.endpoint.server_port == 6001
    assert c.metrics.repository_metrics.expose_period_in_min == 9


def test_two_spellings_of_one_key_is_an_error() -> None:
    assert problems(observer(repository={"callMaxIdleTimeInS": 10, "call-max-idle-time-in-s": 20})) == [
        "observer.repository.call-max-idle-time-in-s: duplicate key (also given as callMaxIdleTimeInS)"
    ]


def test_sink_config_keys_are_kept_as_written() -> None:
    c = load_config(
        env={},
        overrides=observer(
            sinks={
                "k": {
                    "type": "KafkaSink",
                    "config": {
                        "try-reconnect-on-failure": False,
                        "properties": {"bootstrap.servers": "b:1", "max-in-flight": 1},
                    },
                }
            }
        ),
    )
    assert c.sink("k").config == {
        "try-reconnect-on-failure": False,
        "properties": {"bootstrap.servers": "b:1", "max-in-flight": 1},
    }


# ---- unknown keys and invalid values -----------------------------------------------------------
def test_unknown_key_names_its_path_and_suggests() -> None:
    assert problems(observer(repository={"callMaxIdleTimeInSec": 10})) == [
        "observer.repository.callMaxIdleTimeInSec: unknown key (did you mean callMaxIdleTimeInS?)"
    ]
    assert problems(observer(hamok={"endpoint": {"type": "WebsocketEndpoint", "config": {"port": 1}}})) == [
        "observer.hamok.endpoint.config.port: unknown key"
    ]


def test_unknown_top_level_and_observer_keys() -> None:
    found = problems({"sources": {}, "observer": {"hazelcast": {}}})
    assert found == ["sources: unknown key", "observer.hazelcast: unknown key"]


def test_other_micronaut_and_endpoints_keys_are_ignored() -> None:
    c = load_config(
        env={},
        overrides={
            "micronaut": {
                "server": {"idle-timeout": "20m", "cors": {"enabled": True}},
                "security": {"enabled": False},
                "application": {"name": "x"},
            },
            "endpoints": {
                "health": {"enabled": True, "sensitive": False},
                "all": {"port": 9, "sensitive": False},
            },
        },
    )
    assert (c.http.port, c.management.port) == (7080, 9)


def test_logger_block_loads_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        load_config(env={}, overrides={"logger": {"levels": {"org.observertc": "DEBUG"}}})
    assert any("--log-level" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            observer(repository={"callMaxIdleTimeInS": 1}),
            "observer.repository.callMaxIdleTimeInS: must be >= 3, got 1",
        ),
        (
            observer(buffers={"reportsCollector": {"maxItems": 0}}),
            "observer.buffers.reportsCollector.maxItems: must be >= 1, got 0",
        ),
        (
            observer(buffers={"debouncers": {"maxTimeInMs": -5}}),
            "observer.buffers.debouncers.maxTimeInMs: must be >= 0, got -5",
        ),
        (
            observer(sources={"websocket": {"enabled": "maybe"}}),
            "observer.sources.websocket.enabled: must be a boolean (true or false), got 'maybe'",
        ),
        (
            observer(repository={"clientsMaxIdle": "ten"}),
            "observer.repository.clientsMaxIdle: must be an integer, got 'ten'",
        ),
        (
            observer(repository={"clientsMaxIdle": True}),
            "observer.repository.clientsMaxIdle: must be an integer, got True",
        ),
        (
            observer(evaluators={"callUpdater": {"callIdAssignMode": "boss"}}),
            "observer.evaluators.callUpdater.callIdAssignMode: must be one of master, slave, got 'boss'",
        ),
        (
            observer(evaluators={"obfuscator": {"userId": "hash"}}),
            "observer.evaluators.obfuscator.userId: must be one of none, anonymization, got 'hash'",
        ),
        (observer(sources=[1, 2]), "observer.sources: must be a mapping, got a list"),
        (
            observer(sources={"allowedServiceIds": {"a": 1}}),
            "observer.sources.allowedServiceIds: must be a list of strings, got a mapping",
        ),
        (
            {"micronaut": {"server": {"port": 70000}}},
            "micronaut.server.port: must be a port number 0..65535 (0 or -1: any free port), got 70000",
        ),
        (
            {"micronaut": {"server": {"max-request-size": "lots"}}},
            "micronaut.server.max-request-size: must be a size in bytes (e.g. 104857600 or 100MB),"
            " got 'lots'",
        ),
        ({"endpoints": {"all": {"port": "x"}}}, "endpoints.all.port: must be an integer, got 'x'"),
        (
            observer(security={"obfuscations": {"hashAlgorithm": "ROT13"}}),
            "observer.security.obfuscations.hashAlgorithm: unsupported hash algorithm 'ROT13'",
        ),
        (
            observer(metrics={"prefix": "my-prefix"}),
            "observer.metrics.prefix: must be a Prometheus metric name prefix, got 'my-prefix'",
        ),
        (
            observer(hamok={"storageGrid": {"heartbeatInMs": 500, "followerMaxIdleInMs": 400}}),
            "observer.hamok.storageGrid.followerMaxIdleInMs: must be greater than heartbeatInMs (500),"
            " got 400 (followers would start elections between heartbeats)",
        ),
        (
            observer(hamok={"endpoint": {"type": "TcpEndpoint"}}),
            "observer.hamok.endpoint.type: must be one of WebsocketEndpoint, got 'TcpEndpoint'",
        ),
        (
            observer(hamok={"endpoint": {"config": {"serverPort": 1}}}),
            "observer.hamok.endpoint.type: is required (one of WebsocketEndpoint)",
        ),
        (
            observer(hamok={"discovery": {"type": "KubernetesDiscovery"}}),
            "observer.hamok.discovery.type: must be one of StaticDiscovery, K8sPodsDiscovery,"
            " got 'KubernetesDiscovery'",
        ),
        (
            observer(
                hamok={
                    "discovery": {
                        "type": "StaticDiscovery",
                        "config": {"peers": {"p": {"host": "h", "port": 80}}},
                    }
                }
            ),
            "observer.hamok.discovery.config.peers.p.port: must be >= 1024, got 80",
        ),
        (
            observer(
                hamok={"discovery": {"type": "StaticDiscovery", "config": {"peers": {"p": {"port": 5601}}}}}
            ),
            "observer.hamok.discovery.config.peers.p.host: is required",
        ),
        (
            observer(hamok={"discovery": {"type": "K8sPodsDiscovery", "config": {"namespace": "x"}}}),
            "observer.hamok.discovery.config.prefix: is required (or set labelSelector),"
            " else every pod of the namespace is a peer",
        ),
    ],
)
def test_invalid_values_name_the_full_path(overrides: dict[str, Any], expected: str) -> None:
    assert problems(overrides) == [expected]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(observer(repository={"callMaxIdleTimeInS": 1, "sfuMaxIdleTimeInS": 2}, bogus=1))
    assert found == [
        "observer.repository.callMaxIdleTimeInS: must be >= 3, got 1",
        "observer.repository.sfuMaxIdleTimeInS: must be >= 3, got 2",
        "observer.bogus: unknown key",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=observer(repository={"callMaxIdleTimeInS": 1, "sfuMaxIdleTimeInS": 2}))
    assert str(info.value).splitlines() == list(info.value.problems)


def test_allowed_service_ids_forms() -> None:
    def allowed(value: Any) -> Any:
        return load_config(
            env={}, overrides=observer(sources={"allowedServiceIds": value})
        ).sources.allowed_service_ids

    assert allowed(["a", "b"]) == ("a", "b")
    assert allowed("a, b,") == ("a", "b")
    assert allowed([]) == ()
    assert allowed(None) is None
    assert allowed("") is None


def test_random_port_spellings() -> None:
    c = load_config(
        env={}, overrides={"micronaut": {"server": {"port": -1}}, "endpoints": {"all": {"port": 0}}}
    )
    assert (c.http.port, c.management.port) == (0, 0)


@pytest.mark.parametrize(
    ("java", "python"),
    [
        ("SHA-256", "sha256"),
        ("SHA-512", "sha512"),
        ("MD5", "md5"),
        ("SHA3-256", "sha3_256"),
        ("SHA-512/256", "sha512_256"),
    ],
)
def test_hash_algorithm_names(java: str, python: str) -> None:
    assert hashlib_name(java) == python


def test_overload_limit_is_raised_to_max_items() -> None:
    c = load_config(
        env={},
        overrides=observer(
            buffers={
                "samplesCollector": {"maxItems": 100, "overloadThreshold": 10},
                "reportsCollector": {
                    "maxItems": 100,
                    "overloadThreshold": 500,
                    "maxConsecutiveOverloaded": 5,
                },
            }
        ),
    )
    assert c.buffers.samples_collector.overload_limit == 100
    assert c.buffers.reports_collector.overload_limit == 500
    assert c.buffers.reports_collector.max_consecutive_overloaded == 5


# ---- sinks -------------------------------------------------------------------------------------
def test_report_filter_absent_passes_everything_present_only_true_flags() -> None:
    c = load_config(
        env={},
        overrides=observer(
            sinks={
                "all": {"type": "LoggerSink"},
                "some": {
                    "type": "LoggerSink",
                    "reports": {"sendCallEvents": True, "sendSfuEvents": "true", "sendCallMeta": False},
                },
                "none": {"type": "LoggerSink", "reports": {}},
                "nullBlock": {"type": "LoggerSink", "reports": None},
            }
        ),
    )
    assert all(c.sink("all").reports.passes(t) for t in ReportType)
    assert c.sink("some").reports.allowed == {ReportType.CALL_EVENT, ReportType.SFU_EVENT}
    assert not c.sink("some").reports.passes(ReportType.CALL_META_DATA)
    assert c.sink("none").reports.allowed == frozenset()
    assert c.sink("nullBlock").reports.passes_all


def test_every_filter_flag_selects_its_report_type() -> None:
    sinks = {
        f"s{i}": {"type": "LoggerSink", "reports": {flag: True}}
        for i, flag in enumerate(FILTER_FLAG.values())
    }
    c = load_config(env={}, overrides=observer(sinks=sinks))
    assert [next(iter(s.reports.allowed)) for s in c.sinks] == list(FILTER_FLAG)


def test_sink_errors_name_the_sink() -> None:
    assert problems(observer(sinks={"MyQueue": {"type": "RabbitSink"}})) == [
        "observer.sinks.MyQueue.type: sink 'MyQueue' has unknown type 'RabbitSink' (one of LoggerSink,"
        " FileSink, KafkaSink, MongoSink, FirehoseSink, AwsS3Sink, WebsocketSink, SocketSink)"
    ]
    assert problems(observer(sinks={"x": {"config": {}}}))[0].startswith(
        "observer.sinks.x.type: sink 'x' has no type"
    )
    assert problems(observer(sinks={"x": {"type": "LoggerSink", "configs": {}}})) == [
        "observer.sinks.x.configs: unknown key (did you mean config?)"
    ]
    assert problems(observer(sinks={"x": {"type": "LoggerSink", "reports": {"sendEverything": True}}})) == [
        "observer.sinks.x.reports.sendEverything: unknown key"
    ]
    assert problems(observer(sinks={"x": {"type": "LoggerSink", "config": ["a"]}})) == [
        "observer.sinks.x.config: must be a mapping, got a list"
    ]


def test_sink_type_is_matched_case_insensitively() -> None:
    assert (
        load_config(env={}, overrides=observer(sinks={"k": {"type": "kafkasink"}})).sink("k").type
        == "KafkaSink"
    )


def test_default_logger_is_added_only_when_no_sink_is_enabled() -> None:
    only_disabled = load_config(
        env={}, overrides=observer(sinks={"k": {"type": "KafkaSink", "enabled": False}})
    )
    assert [(s.name, s.enabled) for s in only_disabled.sinks] == [("k", False), ("defaultLogger", True)]
    enabled = load_config(
        env={}, overrides=observer(sinks={"k": {"type": "FileSink", "config": {"path": "/tmp/x"}}})
    )
    assert [s.name for s in enabled.sinks] == ["k"]
    assert [s.name for s in load_config(env={}, overrides=observer(sinks=None)).sinks] == ["defaultLogger"]


# ---- redaction and round trip ------------------------------------------------------------------
SECRETS = observer(
    security={"obfuscations": {"hashSalt": "pepper"}},
    hamok={"secret": "a-very-long-shared-secret-value"},
    sinks={
        "mongo": {
            "type": "MongoSink",
            "config": {
                "uri": "mongodb://root:hunter2@db:27017/?authSource=admin",
                "connection": {"username": "u", "password": "pw"},
            },
        },
        "kafka": {
            "type": "KafkaSink",
            "config": {
                "properties": {
                    "bootstrap.servers": "k:9092",
                    "sasl.jaas.config": 'x required username="u" password="pw";',
                    "ssl.key.password": "kp",
                }
            },
        },
        "s3": {
            "type": "AwsS3Sink",
            "config": {
                "bucketName": "b",
                "credentials": {
                    "type": "AwsStatic",
                    "config": {"accessKeyId": "AKIA1", "secretAccessKey": "sk", "sessionToken": "tk"},
                },
            },
        },
        "ws": {"type": "WebsocketSink", "config": {"uri": "wss://user:pass@host/path"}},
    },
)


def test_redacted_masks_every_secret_and_keeps_the_rest() -> None:
    c = load_config(env={}, overrides=SECRETS)
    text = yaml.safe_dump(c.redacted())
    for secret in (
        "pepper",
        "a-very-long-shared-secret-value",
        "hunter2",
        "pw",
        "kp",
        "AKIA1",
        "sk",
        "tk",
        "pass@",
    ):
        assert secret not in text, secret
    red = c.redacted()["observer"]
    assert red["security"]["obfuscations"]["hashSalt"] == MASK
    assert red["hamok"]["secret"] == MASK
    assert red["sinks"]["mongo"]["config"]["uri"] == f"mongodb://root:{MASK}@db:27017/?authSource=admin"
    assert red["sinks"]["mongo"]["config"]["connection"] == {"username": "u", "password": MASK}
    assert red["sinks"]["kafka"]["config"]["properties"]["bootstrap.servers"] == "k:9092"
    assert red["sinks"]["s3"]["config"]["credentials"]["type"] == "AwsStatic"
    assert red["sinks"]["s3"]["config"]["bucketName"] == "b"
    assert red["sinks"]["ws"]["config"]["uri"] == f"wss://user:{MASK}@host/path"
    # the config itself is untouched
    assert c.hamok.secret == "a-very-long-shared-secret-value"


def test_unset_secret_stays_visibly_unset() -> None:
    assert ObserverConfig().redacted()["observer"]["hamok"]["secret"] is None


def test_to_dict_loads_back_to_the_same_config() -> None:
    c = load_config(env={}, overrides={**SECRETS, "micronaut": {"server": {"port": 1234}}})
    c = load_config(
        env={},
        overrides={
            **c.to_dict(),
            "observer": {
                **c.to_dict()["observer"],
                "hamok": {
                    "endpoint": {"type": "WebsocketEndpoint", "config": {"serverHost": "0.0.0.0"}},
                    "discovery": {"type": "K8sPodsDiscovery", "config": {"prefix": "obs"}},
                },
                "sinks": {
                    **c.to_dict()["observer"]["sinks"],
                    "f": {"type": "LoggerSink", "reports": {"sendCallMeta": True}},
                },
            },
        },
    )
    assert load_config(env={}, overrides=c.to_dict()) == c
    assert ObserverConfig().to_dict() == load_config(env={}, overrides=ObserverConfig().to_dict()).to_dict()


def test_short_secret_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        load_config(env={}, overrides=observer(hamok={"secret": "short"}))
    assert any("observer.hamok.secret" in r.getMessage() for r in caplog.records)


def test_discovery_without_endpoint_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        c = load_config(env={}, overrides=observer(hamok={"discovery": {"type": "StaticDiscovery"}}))
    assert c.hamok.endpoint is None
    assert any("single-node" in r.getMessage() for r in caplog.records)


def test_report_filter_default_is_all_types() -> None:
    assert ReportFilter().allowed == frozenset(ReportType)


def test_reports_collector_overload_threshold_warns_that_it_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        load_config(env={}, overrides=observer(buffers={"samplesCollector": {"overloadThreshold": 500}}))
    assert not any("overloadThreshold" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        load_config(env={}, overrides=observer(buffers={"reportsCollector": {"overloadThreshold": 500}}))
    assert any("observer.buffers.reportsCollector.overloadThreshold" in r.getMessage() for r in caplog.records)
