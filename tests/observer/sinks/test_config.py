"""Sink config reading: key spellings, and a clear error naming the key for every bad config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from observer.reports.model import ReportType
from observer.sinks import SinkConfigError, build_sink
from observer.sinks.settings import ConfigReader, camel_key, report_type_key


def test_key_spellings() -> None:
    assert camel_key("max-bytes") == "maxBytes"
    assert camel_key("add-sfu-or-call-id-prefix") == "addSfuOrCallIdPrefix"
    assert camel_key("logLevel") == "logLevel"
    assert report_type_key("observer-event") is ReportType.OBSERVER_EVENT
    assert report_type_key("inboundAudioTrack") is ReportType.INBOUND_AUDIO_TRACK
    assert report_type_key("SFU_INBOUND_RTP_PAD") is ReportType.SFU_INBOUND_RTP_PAD
    assert report_type_key("outbound-autio-track") is None


def test_reader_types_and_unknown_keys() -> None:
    reader = ConfigReader({"max-bytes": "1024", "enabled": "true", "level": "info", "extra": 1, "other": 2},
                          "observer.sinks.x.config")
    assert reader.integer("maxBytes", 0) == 1024
    assert reader.boolean("enabled") is True
    assert reader.choice("level", ("INFO", "WARN")) == "INFO"
    with pytest.raises(SinkConfigError) as info:
        reader.finish()
    assert info.value.path == "observer.sinks.x.config.extra"
    assert "also: other" in str(info.value)


def test_same_key_in_two_spellings_is_an_error() -> None:
    with pytest.raises(SinkConfigError, match="given twice"):
        ConfigReader({"maxBytes": 1, "max-bytes": 2}, "p")


def _profile(tmp_path: Path) -> str:
    path = tmp_path / "credentials"
    path.write_text("[other]\naws_access_key_id = a\naws_secret_access_key = b\n")
    return str(path)


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("LoggerSink", {"logLevel": "LOUD"}, "logLevel"),
    ("LoggerSink", {"printReport": True}, "printReport"),
    ("LoggerSink", {"queueSize": 0}, "queueSize"),
    ("FileSink", {}, "path"),
    ("FileSink", {"path": "/tmp/x", "maxBytes": -1}, "maxBytes"),
    ("FileSink", {"path": "/tmp/x", "maxBatchDelayMs": 5000}, "maxBatchDelayMs"),
    ("KafkaSink", {"topic": "t"}, "properties"),
    ("KafkaSink", {"properties": {"acks": "1"}}, "properties.bootstrap.servers"),
    ("KafkaSink", {"properties": {"bootstrap.servers": "h:1", "acks": "some"}}, "properties.acks"),
    ("KafkaSink", {"properties": {"bootstrap": {"servers": "h:1"}, "linger": {"ms": "x"}}}, "properties.linger.ms"),
    ("KafkaSink", {"properties": {"bootstrap.servers": "h:1", "compression.type": "brotli"}},
     "properties.compression.type"),
    ("KafkaSink", {"properties": {"bootstrap.servers": "h:1", "security.protocol": "SASL_PLAINTEXT"}},
     "properties.sasl.jaas.config"),
    ("KafkaSink", {"properties": {"bootstrap.servers": "h:1"}, "keyAssignmentStrategy": "BY_CALL"},
     "keyAssignmentStrategy"),
    ("KafkaSink", {"properties": {"bootstrap.servers": "h:1"}, "encoder": "NONE"}, "encoder"),
    ("MongoSink", {"database": "d"}, "uri"),
    ("MongoSink", {"uri": "mongodb://h", "connection": {"servers": ["h"]}, "database": "d"}, "uri"),
    ("MongoSink", {"uri": "http://h", "database": "d"}, "uri"),
    ("MongoSink", {"uri": "mongodb://h:notaport", "database": "d"}, "uri"),
    ("MongoSink", {"uri": "mongodb://h"}, "database"),
    ("MongoSink", {"uri": "mongodb://h", "database": "a.b"}, "database"),
    ("MongoSink", {"uri": "mongodb://h", "database": "d", "savingStrategy": "BY_ROOM"}, "savingStrategy"),
    ("MongoSink", {"connection": {"servers": ["h"], "user": "u"}, "database": "d"}, "connection.user"),
    ("MongoSink", {"uri": "mongodb://h", "database": "d", "collectionNames": {"callEvents": "x"}},
     "collectionNames.callEvents"),
    ("FirehoseSink", {"defaultDeliveryStreamId": "s"}, "regionId"),
    ("FirehoseSink", {"regionId": "Frankfurt", "defaultDeliveryStreamId": "s"}, "regionId"),
    ("FirehoseSink", {"regionId": "eu-west-1"}, "defaultDeliveryStreamId"),
    ("FirehoseSink", {"regionId": "eu-west-1", "streams": {"outbound-autio-track": "s"}},
     "streams.outbound-autio-track"),
    ("FirehoseSink", {"regionId": "eu-west-1", "defaultDeliveryStreamId": "s", "encodingType": "AVRO"},
     "encodingType"),
    ("FirehoseSink", {"regionId": "eu-west-1", "defaultDeliveryStreamId": "s", "csvFormat": "LIBRE"}, "csvFormat"),
    ("FirehoseSink", {"regionId": "eu-west-1", "defaultDeliveryStreamId": "s", "csvChunkSize": 0}, "csvChunkSize"),
    ("FirehoseSink", {"regionId": "eu-west-1", "defaultDeliveryStreamId": "s", "endpointOverride": "localhost"},
     "endpointOverride"),
    ("AwsS3Sink", {"regionId": "eu-west-1", "defaultPrefix": "p"}, "bucketName"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1"}, "defaultPrefix"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p", "createIndexes": True},
     "createIndexes"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "prefixes": {"callEvent": ""}}, "prefixes.callEvent"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                   "credentials": {"type": "AwsMagic"}}, "credentials.type"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                   "credentials": {"type": "AwsStatic", "config": {"accessKeyId": "a"}}},
     "credentials.config.secretAccessKey"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                   "credentials": {"type": "AwsStatic", "config": {"accessKeyId": "a", "secretAccessKey": "s",
                                                                    "region": "x"}}},
     "credentials.config.region"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                   "credentials": {"type": "AwsStsAssumeRoleSession", "config": {"roleSessionName": "x"}}},
     "credentials.config.roleArn"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                   "credentials": {"type": "AwsStsAssumeRoleSession",
                                   "config": {"roleArn": "arn:aws:iam::1:role/r", "serialNumber": "m"}}},
     "credentials.config.serialNumber"),
    ("AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                   "credentials": {"type": "AwsWebIdentityTokenFile",
                                   "config": {"roleArn": "arn:aws:iam::1:role/r", "webIdentityTokenFile": "/nope"}}},
     "credentials.config.webIdentityTokenFile"),
    ("WebsocketSink", {"uri": "http://h"}, "uri"),
    ("WebsocketSink", {"uri": "ws://h", "maxRetry": 2, "maxRetries": 3}, "maxRetry"),
    ("SocketSink", {"host": "h", "port": 70000}, "port"),
]


@pytest.mark.parametrize(("sink_type", "config", "key"), BAD_CONFIGS,
                         ids=[f"{t}-{k}" for t, _, k in BAD_CONFIGS])
def test_bad_config_names_the_key(sink_type: str, config: dict[str, Any], key: str) -> None:
    with pytest.raises(SinkConfigError) as info:
        build_sink("mysink", sink_type, config)
    assert info.value.path == f"observer.sinks.mysink.config.{key}", str(info.value)


def test_unknown_sink_type() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_sink("mysink", "FaxSink", {})
    assert info.value.path == "observer.sinks.mysink.type"
    assert "KafkaSink" in str(info.value)


def test_profile_errors_name_the_profile(tmp_path: Path) -> None:
    config = {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
              "credentials": {"type": "AwsProfile",
                              "config": {"profileFilePath": _profile(tmp_path), "profileName": "missing"}}}
    with pytest.raises(SinkConfigError) as info:
        build_sink("s3", "AwsS3Sink", config)
    assert info.value.path == "observer.sinks.s3.config.credentials.config.profileName"


def test_environment_credentials_need_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    config = {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
              "credentials": {"type": "AwsEnvironmentVariable"}}
    with pytest.raises(SinkConfigError, match="AWS_ACCESS_KEY_ID") as info:
        build_sink("s3", "AwsS3Sink", config)
    assert info.value.path == "observer.sinks.s3.config.credentials.type"


def test_secrets_never_appear_in_errors() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_sink("m", "MongoSink", {"uri": "mongodb://user:S3cr3t@h:port", "database": "d"})
    assert "S3cr3t" not in str(info.value)
    with pytest.raises(SinkConfigError) as info:
        build_sink("s3", "AwsS3Sink", {"bucketName": "b", "regionId": "eu-west-1", "defaultPrefix": "p",
                                       "credentials": {"type": "AwsStatic",
                                                       "config": {"accessKeyId": "AKIA1", "secretAccessKey": 7}}})
    assert "AKIA1" not in str(info.value)
    assert info.value.path.endswith("secretAccessKey")


def test_kebab_case_config_builds(tmp_path: Path) -> None:
    sink = build_sink("f", "FileSink", {"path": str(tmp_path / "r.jsonl"), "max-bytes": 100, "backup-count": 2,
                                         "max-batch-size": 7})
    assert (sink.max_bytes, sink.backup_count, sink.batch.max_batch_size) == (100, 2, 7)  # type: ignore[attr-defined]


def test_mongo_sink_ignores_unknown_keys_like_the_reference(caplog: pytest.LogCaptureFixture) -> None:
    """The reference's MongoSink config ignored unknown keys: existing configs must keep loading."""
    sink = build_sink("m", "MongoSink", {"uri": "mongodb://h", "database": "d", "savingStrategey": "X"})
    assert sink.strategy == "ONE_COLLECTION"
    assert "observer.sinks.m.config.savingStrategey" in caplog.text
