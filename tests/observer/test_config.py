"""Loading: defaults of spec/observer.md §10, the seed's own files, README-style files, the examples,
and the order of the configuration layers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from observer.config import (
    CallIdAssignMode,
    ConfigError,
    K8sPodsDiscoveryConfig,
    ObfuscationMethod,
    ObserverConfig,
    StaticDiscoveryConfig,
    StaticPeer,
    WebsocketEndpointConfig,
    load_config,
)
from observer.reports.model import ReportType

FIXTURES = Path(__file__).parent / "config_fixtures"
EXAMPLES = Path(__file__).parents[2] / "examples" / "config"
SIMPSONS = (
    "Lisa",
    "Bart",
    "Homer",
    "Marge",
    "Maggie",
    "Barney",
    "Mo",
    "Ned",
    "Milhouse",
    "Grampa",
    "Krusty",
    "Smithers",
    "Ralph",
    "Tony",
    "Jacqueline",
    "Nelson",
)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_seed_application_yaml() -> None:
    c = load_config(env={})
    assert (c.http.port, c.http.max_request_size) == (7080, 104_857_600)
    assert (c.management.port, c.management.metrics_enabled) == (7081, True)

    s = c.sources
    assert (s.accept_sfu_samples, s.accept_client_samples, s.use_server_timestamp) == (True, True, False)
    assert s.allowed_service_ids is None
    assert s.rest.enabled and s.websocket.enabled
    assert s.websocket.min_remote_peers == 0
    assert s.websocket.max_payload_bytes == 1_000_000

    r = c.repository
    assert r.use_backups is False
    idle = [
        r.call_max_idle_time_in_s,
        r.clients_max_idle,
        r.peer_connections_max_idle,
        r.inbound_tracks_max_idle,
        r.outbound_tracks_max_idle,
        r.sfu_max_idle_time_in_s,
        r.sfu_transport_max_idle_time_in_s,
        r.sfu_inbound_rtp_pad_max_idle_time_in_s,
        r.sfu_outbound_rtp_pad_max_idle_time_in_s,
        r.sfu_sctp_channel_max_idle_time_in_s,
    ]
    assert idle == [300] * 10

    b = c.buffers
    assert (b.samples_collector.max_items, b.samples_collector.max_time_in_ms) == (100, 1000)
    assert (b.debouncers.max_items, b.debouncers.max_time_in_ms) == (10000, 1000)
    assert (b.reports_collector.max_items, b.reports_collector.max_time_in_ms) == (5000, 2000)
    for collector in (b.samples_collector, b.reports_collector):
        assert (collector.overload_threshold, collector.max_consecutive_overloaded) == (-1, 3)
        assert collector.overload_limit is None

    sec = c.security
    assert (sec.print_configs, sec.allow_expose_config) == (True, False)
    assert (sec.obfuscations.hash_algorithm, sec.obfuscations.hash_salt) == ("SHA-256", "MySalt")

    m = c.metrics
    assert (m.prefix, m.service_id_tag_name, m.media_unit_tag_name) == ("observertc", "service", "mediaUnit")
    enabled = [
        m.evaluator_metrics.enabled,
        m.report_metrics.enabled,
        m.sink_metrics.enabled,
        m.source_metrics.enabled,
        m.repository_metrics.enabled,
        m.client_samples_metric_config.enabled,
    ]
    assert enabled == [True] * 6
    assert m.repository_metrics.expose_period_in_min == 5

    e = c.evaluators
    assert (e.client_samples_analyser.drop_unmatched_reports, e.client_samples_analyser.match_tracks) == (
        False,
        True,
    )
    sfu = e.sfu_samples_analyser
    assert not (
        sfu.drop_unmatched_internal_inbound_reports
        or sfu.drop_unmatched_inbound_reports
        or sfu.drop_unmatched_outbound_reports
    )
    assert sfu.match_rtp_pads is True
    assert (e.call_updater.enabled, e.call_updater.call_id_assign_mode) == (True, CallIdAssignMode.MASTER)
    o = e.obfuscator
    assert o.enabled is False
    assert o.ice_addresses == o.room_id == o.user_id == ObfuscationMethod.NONE
    assert e.observer_reports.create_call_summary_reports is True

    assert [(sink.name, sink.type, sink.enabled) for sink in c.sinks] == [
        ("defaultLogger", "LoggerSink", True)
    ]
    assert c.sinks[0].config == {"printTypeSummary": True}
    assert c.sinks[0].reports.passes_all

    h = c.hamok
    g = h.storage_grid
    assert (
        g.raft_max_log_entries_retention_time_in_minutes,
        g.heartbeat_in_ms,
        g.follower_max_idle_in_ms,
        g.peer_max_idle_in_ms,
        g.sending_hello_timeout_in_ms,
        g.application_commit_index_sync_timeout_in_ms,
        g.request_timeout_in_ms,
    ) == (5, 150, 10000, 10000, 1500, 60000, 3000)
    assert h.member_names_pool == SIMPSONS
    assert (h.use_partial_responses, h.first_min_remote_peers) == (True, 1)
    assert h.endpoint is None and h.discovery is None and h.secret is None


def test_class_defaults_equal_loaded_defaults() -> None:
    assert ObserverConfig() == load_config(env={})


def test_collector_code_defaults_apply_only_where_no_yaml_value_exists() -> None:
    from observer.config import CollectorConfig

    assert (CollectorConfig().max_items, CollectorConfig().max_time_in_ms) == (2000, 100)
    c = load_config(env={}, overrides={"observer": {"buffers": {"samplesCollector": {"maxItems": 7}}}})
    # the untouched key keeps the application.yaml default, not the code default
    assert (c.buffers.samples_collector.max_items, c.buffers.samples_collector.max_time_in_ms) == (7, 1000)


def test_seed_application_yaml_loads_to_the_defaults() -> None:
    assert load_config(FIXTURES / "seed-application.yaml", env={}) == ObserverConfig()


def test_seed_application_yaml_ports_follow_the_environment() -> None:
    env = {
        "APPLICATION_SERVER_PORT": "9080",
        "APPLICATION_MANAGEMENT_PORT": "9081",
        "METRICS_ENABLED": "false",
    }
    c = load_config(FIXTURES / "seed-application.yaml", env=env)
    assert (c.http.port, c.management.port, c.management.metrics_enabled) == (9080, 9081, False)


def test_port_environment_applies_without_any_file() -> None:
    c = load_config(env={"APPLICATION_SERVER_PORT": "17080", "APPLICATION_MANAGEMENT_PORT": "17081"})
    assert (c.http.port, c.management.port) == (17080, 17081)


def test_seed_test_yaml_loads_and_ignores_stale_reports_block(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        c = load_config(FIXTURES / "application-test.yaml", env={})
    b = c.buffers
    assert (b.samples_collector.max_items, b.samples_collector.max_time_in_ms) == (100, 10)
    assert (b.debouncers.max_items, b.debouncers.max_time_in_ms) == (10000, 500)
    assert (b.reports_collector.max_items, b.reports_collector.max_time_in_ms) == (100, 500)
    assert c.evaluators.call_updater.call_id_assign_mode is CallIdAssignMode.SLAVE
    assert c.repository.call_max_idle_time_in_s == 10
    assert c.repository.sfu_transport_max_idle_time_in_s == 5
    assert c.repository.clients_max_idle == 300
    assert [s.name for s in c.sinks] == ["defaultLogger"]
    assert any("observer.reports" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)


def test_readme_style_file_loads(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="observer.config"):
        c = load_config(FIXTURES / "readme-observer.yaml", env={})
    # README spellings are aliases (with a warning)
    assert c.metrics.media_unit_tag_name == "mediaUnit"
    assert c.metrics.repository_metrics.expose_period_in_min == 5
    assert not c.metrics.report_metrics.enabled
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert (
        "mediaUnitIdTagName" in warned
        and "exposePeriodInMins" in warned
        and "sendIceCanddiatePairs" in warned
    )
    # README values that differ from the yaml
    assert c.repository.sfu_transport_max_idle_time_in_s == 600
    assert (c.buffers.samples_collector.max_items, c.buffers.samples_collector.max_time_in_ms) == (
        10000,
        10000,
    )
    assert c.hamok.storage_grid.follower_max_idle_in_ms == 1000
    assert c.hamok.storage_grid.peer_max_idle_in_ms == 10000  # not in the file: the yaml default

    by_name = {s.name: s for s in c.sinks}
    assert {name: s.type for name, s in by_name.items()} == {
        "MyLoggerSink": "LoggerSink",
        "MyKafkaSink": "KafkaSink",
        "MyMongoSink": "MongoSink",
        "MyFireHoseSink": "FirehoseSink",
        "MyAwsS3Sink": "AwsS3Sink",
        "MyWebsocketSink": "WebsocketSink",
        "MySocketSink": "SocketSink",
    }
    assert by_name["MySocketSink"].enabled is False
    assert "defaultLogger" not in by_name
    kafka = by_name["MyKafkaSink"]
    assert kafka.reports.allowed == {ReportType.CALL_EVENT, ReportType.ICE_CANDIDATE_PAIR}
    assert kafka.config["properties"] == {"bootstrap.servers": "localhost:9092"}
    assert by_name["MyAwsS3Sink"].reports.allowed == {ReportType.SFU_TRANSPORT}
    assert by_name["MyFireHoseSink"].reports.passes_all
    assert (
        by_name["MyFireHoseSink"].config["streams"]["observer-event"]
        == "observertc-observer-event-reports-csv"
    )

    assert c.hamok.endpoint == WebsocketEndpointConfig(server_host="localhost", server_port=5600)
    assert c.hamok.discovery == StaticDiscoveryConfig(peers=(StaticPeer("my-other-peer", "localhost", 5603),))


def test_readme_k8s_discovery_loads() -> None:
    c = load_config(FIXTURES / "readme-k8s.yaml", env={})
    assert c.hamok.discovery == K8sPodsDiscoveryConfig(namespace="default", prefix="observertc", port=5601)
    assert c.hamok.endpoint is not None and c.hamok.endpoint.server_port == 5600


def test_k8s_port_defaults_to_the_endpoint_port() -> None:
    c = load_config(
        env={},
        overrides={
            "observer": {
                "hamok": {
                    "endpoint": {"type": "WebsocketEndpoint", "config": {"serverPort": 6000}},
                    "discovery": {"type": "K8sPodsDiscovery", "config": {"labelSelector": "app=observer"}},
                }
            }
        },
    )
    assert isinstance(c.hamok.discovery, K8sPodsDiscoveryConfig)
    assert (c.hamok.discovery.port, c.hamok.discovery.prefix, c.hamok.discovery.watch) == (6000, None, False)


def test_empty_endpoint_and_discovery_blocks_mean_single_node() -> None:
    c = load_config(
        env={}, overrides={"observer": {"hamok": {"endpoint": {}, "discovery": {}, "storageGrid": {}}}}
    )
    assert c.hamok.endpoint is None and c.hamok.discovery is None


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_load(name: str) -> None:
    c = load_config(EXAMPLES / name, env={"HAMOK_SECRET": "x" * 32})
    assert c.sinks[0].name != "defaultLogger"  # every example configures its sinks
    if c.hamok.endpoint is not None:
        assert c.hamok.secret == "x" * 32 and c.hamok.discovery is not None


def test_example_full_is_the_defaults_apart_from_its_sinks() -> None:
    c = load_config(EXAMPLES / "full.yaml", env={})
    assert c.to_dict()["observer"] | {"sinks": None} == ObserverConfig().to_dict()["observer"] | {
        "sinks": None
    }
    assert [(s.name, s.enabled) for s in c.sinks] == [("logger", True), ("kafka", False)]


def test_static_cluster_examples_form_one_cluster() -> None:
    nodes = [load_config(EXAMPLES / f"static-cluster-node{n}.yaml", env={}) for n in (1, 2, 3)]
    grid_ports = [node.hamok.endpoint.server_port for node in nodes if node.hamok.endpoint]
    assert len(set(grid_ports)) == 3
    assert len({node.http.port for node in nodes} | {node.management.port for node in nodes}) == 6
    for node in nodes:
        assert isinstance(node.hamok.discovery, StaticDiscoveryConfig)
        own = node.hamok.endpoint.server_port if node.hamok.endpoint else None
        assert sorted(p.port for p in node.hamok.discovery.peers) == sorted(set(grid_ports) - {own})


def test_observer_config_file_env_is_used_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "observer:\n  repository:\n    callMaxIdleTimeInS: 42\n")
    assert load_config(env={"OBSERVER_CONFIG_FILE": str(path)}).repository.call_max_idle_time_in_s == 42
    other = write(tmp_path, "observer:\n  repository:\n    callMaxIdleTimeInS: 43\n", "other.yaml")
    # an explicit path wins over the environment variable
    assert (
        load_config(other, env={"OBSERVER_CONFIG_FILE": str(path)}).repository.call_max_idle_time_in_s == 43
    )


def test_layers_merge_key_by_key_in_order(tmp_path: Path) -> None:
    base = write(
        tmp_path, "observer:\n  buffers:\n    debouncers: {maxItems: 11, maxTimeInMs: 12}\n", "base.yaml"
    )
    user = write(tmp_path, "observer:\n  buffers:\n    debouncers:\n      max-time-in-ms: 22\n", "user.yaml")
    c = load_config(
        user,
        env={"MICRONAUT_CONFIG_FILES": f"{base}"},
        overrides={"observer": {"repository": {"useBackups": True}}},
    )
    assert (c.buffers.debouncers.max_items, c.buffers.debouncers.max_time_in_ms) == (11, 22)
    assert c.repository.use_backups is True


def test_yaml_documents_of_one_file_merge(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "observer:\n  sources: {acceptSfuSamples: false}\n---\n"
        "observer:\n  sources: {acceptClientSamples: false}\n---\n",
    )
    c = load_config(path, env={})
    assert (c.sources.accept_sfu_samples, c.sources.accept_client_samples) == (False, False)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the config file"):
        load_config(tmp_path / "nope.yaml", env={})


def test_invalid_yaml_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "observer:\n  sources: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, env={})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- observer\n"), env={})


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n"), env={}) == ObserverConfig()
