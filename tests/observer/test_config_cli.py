"""The ``observer`` command line: exit codes, --check-config output, and handing over to observer.app."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from observer.__main__ import main
from observer.config import ObserverConfig, load_config

GOOD = """
micronaut:
  server:
    port: ${TEST_SAMPLES_PORT:7999}
observer:
  hamok:
    secret: this-is-the-shared-secret-of-the-grid
  sinks:
    mongo:
      type: MongoSink
      config:
        uri: mongodb://admin:topsecret@localhost:27017
        database: reports
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "OBSERVER_CONFIG_FILE",
        "MICRONAUT_CONFIG_FILES",
        "INITIAL_WAITING_TIME_IN_S",
        "TEST_SAMPLES_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)  # main() configures the root logger


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


def test_check_config_prints_the_redacted_effective_config(
    good_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SAMPLES_PORT", "7123")
    assert main(["--config", str(good_file), "--check-config"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["micronaut"]["server"]["port"] == 7123
    assert printed["observer"]["sinks"]["mongo"]["config"]["database"] == "reports"
    assert "topsecret" not in out and "this-is-the-shared-secret" not in out and "MySalt" not in out
    assert printed["observer"]["hamok"]["secret"] == "<redacted>"


def test_check_config_without_file_prints_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == ObserverConfig().redacted()


def test_check_config_uses_observer_config_file_env(
    good_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSERVER_CONFIG_FILE", str(good_file))
    assert main(["--check-config"]) == 0
    assert "mongo" in yaml.safe_load(capsys.readouterr().out)["observer"]["sinks"]


def test_bad_config_exits_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("observer:\n  repository:\n    callMaxIdleTimeInS: 1\n", encoding="utf-8")
    assert main(["--config", str(path), "--check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "config error: observer.repository.callMaxIdleTimeInS: must be >= 3, got 1"


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "absent.yaml")]) == 2
    assert capsys.readouterr().err.startswith("config error: ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "LOUD"]) == 2
    assert main(["--no-such-flag"]) == 2
    assert "usage: observer" in capsys.readouterr().err
    assert main(["--help"]) == 0


def _fake_app(monkeypatch: pytest.MonkeyPatch, run: types.FunctionType) -> None:
    module = types.ModuleType("observer.app")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "observer.app", module)
    import observer

    monkeypatch.setattr(observer, "app", module, raising=False)


def test_run_hands_the_loaded_config_to_observer_app(
    good_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[ObserverConfig] = []

    async def run(config: ObserverConfig) -> None:
        received.append(config)

    _fake_app(monkeypatch, run)  # type: ignore[arg-type]
    assert main(["--config", str(good_file), "--log-level", "warning"]) == 0
    assert received == [load_config(good_file, env={})]
    assert logging.getLogger().level == logging.WARNING


def test_run_logs_the_redacted_config_when_print_configs_is_on(
    good_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def run(config: ObserverConfig) -> None:
        return None

    _fake_app(monkeypatch, run)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO):
        assert main(["--config", str(good_file)]) == 0
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "observer")
    assert "effective configuration" in logged and "mongodb://admin:<redacted>@localhost" in logged
    assert "topsecret" not in caplog.text


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run(config: ObserverConfig) -> None:
        raise KeyboardInterrupt

    _fake_app(monkeypatch, run)  # type: ignore[arg-type]
    assert main([]) == 130


@pytest.mark.processes
def test_python_dash_m_observer(good_file: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "observer", "--check-config", "--config", str(good_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["observer"]["sinks"]["mongo"]["type"] == "MongoSink"
    bad = tmp_path / "bad.yaml"
    bad.write_text("observer:\n  sinks:\n    q:\n      type: RabbitSink\n", encoding="utf-8")
    failed = subprocess.run(
        [sys.executable, "-m", "observer", "--check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith(
        "config error: observer.sinks.q.type: sink 'q' has unknown type 'RabbitSink'"
    )
