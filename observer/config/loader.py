"""Reading the configuration: layers of YAML merged in order, placeholders expanded, then typed.

Layers, later ones winning key by key:
1. the embedded defaults: the seed's port/metrics placeholders (``${APPLICATION_SERVER_PORT:7080}``,
   ``${APPLICATION_MANAGEMENT_PORT:7081}``, ``${METRICS_ENABLED:True}``); everything else defaults
   to the values of :mod:`observer.config.schema`;
2. the files in ``MICRONAUT_CONFIG_FILES`` (comma-separated), as Micronaut did;
3. the given file, else the file in ``OBSERVER_CONFIG_FILE``;
4. ``overrides`` (a nested dict shaped like the file).
A file is a seed-style ``application.yaml`` (top-level ``micronaut``, ``endpoints``, ``observer``);
several YAML documents (``---``) in one file are merged in order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from observer.config.binding import Binder, Invalid, join
from observer.config.errors import ConfigError
from observer.config.keys import canonical
from observer.config.placeholders import PlaceholderError, expand
from observer.config.schema import (
    SERVER_FIELDS,
    HttpServerConfig,
    ManagementConfig,
    ObserverConfig,
    build_port,
)

log = logging.getLogger("observer.config")

EMBEDDED_DEFAULTS: Mapping[str, Any] = {
    "micronaut": {
        "server": {"port": "${APPLICATION_SERVER_PORT:7080}"},
        "metrics": {"enabled": "${METRICS_ENABLED:True}"},
    },
    "endpoints": {"all": {"port": "${APPLICATION_MANAGEMENT_PORT:7081}"}},
}

_TOP_LEVEL = {"micronaut": "micronaut", "endpoints": "endpoints", "observer": "observer", "logger": "logger"}
# keys of observer 0.x/1.0 test configs that no longer mean anything; loaded with a warning
_STALE_OBSERVER_KEYS = {
    "reports": "is no longer used (ignored); filter reports per sink with observer.sinks.<name>.reports",
}


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
) -> ObserverConfig:
    """Load, merge, expand and validate. Raises :class:`ConfigError` listing every problem."""
    tree: dict[str, Any] = merge({}, EMBEDDED_DEFAULTS)
    for file in (part.strip() for part in env.get("MICRONAUT_CONFIG_FILES", "").split(",")):
        if file:
            tree = merge(tree, read_yaml(file))
    source = os.fspath(path) if path is not None else env.get("OBSERVER_CONFIG_FILE", "").strip()
    if source:
        tree = merge(tree, read_yaml(source))
    if overrides:
        tree = merge(tree, overrides)
    binder = Binder()
    expanded = expand_tree(tree, env, "", binder)
    config = _build(expanded, binder)
    if binder.errors:
        raise ConfigError(binder.errors)
    return config


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: invalid YAML: {exc}") from exc
    tree: dict[str, Any] = {}
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not isinstance(document, Mapping):
            where = f" (document {number})" if len(documents) > 1 else ""
            raise ConfigError(
                f"{os.fspath(path)}{where}: the top level must be a mapping, got {type(document).__name__}"
            )
        tree = merge(tree, document)
    return tree


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge; keys match in their canonical spelling (``max-items`` overrides ``maxItems``).
    Lists and scalars are replaced, not merged."""
    out: dict[str, Any] = dict(base)
    # matched against the base only: two spellings inside one mapping stay for the binder to report
    base_spelling = {canonical(str(key)): key for key in base}
    for raw_key, value in overlay.items():
        key = str(raw_key)
        old_key = base_spelling.pop(canonical(key), None)
        old = out.pop(old_key) if old_key is not None else None
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = merge(old, value)
        elif isinstance(value, Mapping):
            out[key] = merge({}, value)
        else:
            out[key] = value
    return out


def expand_tree(value: Any, env: Mapping[str, str], path: str, binder: Binder) -> Any:
    """Every string value with its ``${ENV:default}`` placeholders expanded (keys are left alone)."""
    if isinstance(value, Mapping):
        return {key: expand_tree(item, env, join(path, str(key)), binder) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [expand_tree(item, env, f"{path}[{index}]", binder) for index, item in enumerate(value)]
    if isinstance(value, str):
        try:
            return expand(value, env)
        except PlaceholderError as exc:
            binder.error(path, str(exc))
    return value


def _children(binder: Binder, raw: Any, path: str, *keys: str) -> dict[str, tuple[str, Any]]:
    """{key: (path, value)} for the wanted keys of a Micronaut block, in any spelling. The seed's
    other Micronaut keys mean nothing here: they are ignored (debug log)."""
    mapping = binder.mapping(raw, path) or {}
    matched, rest = binder.match_keys(mapping, path, {canonical(key): key for key in keys})
    for raw_key in rest:
        log.debug("config: %s is not used by this implementation (ignored)", join(path, raw_key))
    found = {key: (join(path, raw_key), value) for key, (raw_key, value) in matched.items()}
    return {key: found.get(key, (join(path, key), None)) for key in keys}


def _build_management(binder: Binder, metrics: tuple[str, Any], endpoints: Any) -> ManagementConfig:
    defaults = ManagementConfig()
    metrics_path, metrics_raw = metrics
    enabled_path, enabled_raw = _children(binder, metrics_raw, metrics_path, "enabled")["enabled"]
    metrics_enabled = binder.value(enabled_raw, bool, enabled_path, defaults.metrics_enabled)
    all_path, all_raw = _children(binder, endpoints, "endpoints", "all")["all"]
    port_path, port_raw = _children(binder, all_raw, all_path, "port")["port"]
    port = defaults.port
    if port_raw is not None:
        try:
            port = build_port(binder, port_raw, port_path)
        except Invalid as exc:
            binder.error(port_path, str(exc))
    return ManagementConfig(port=port, metrics_enabled=metrics_enabled)


def _build(tree: Mapping[str, Any], binder: Binder) -> ObserverConfig:
    top, rest = binder.match_keys(tree, "", _TOP_LEVEL)
    for raw_key in rest:
        binder.unknown("", raw_key, ["micronaut", "endpoints", "observer"])
    if "logger" in top:
        binder.warn(top["logger"][0], "is ignored; set the log level with --log-level")
    micronaut = top.get("micronaut", ("micronaut", None))[1]
    endpoints = top.get("endpoints", ("endpoints", None))[1]

    micronaut_blocks = _children(binder, micronaut, "micronaut", "server", "metrics")
    server_path, server_raw = micronaut_blocks["server"]
    http = binder.bind(HttpServerConfig, server_raw, server_path, strict=False)
    management = _build_management(binder, micronaut_blocks["metrics"], endpoints)

    observer_path, observer_raw = top.get("observer", ("observer", None))
    observer = binder.mapping(observer_raw, observer_path) or {}
    stale, current = binder.match_keys(
        observer, observer_path, {canonical(k): k for k in _STALE_OBSERVER_KEYS}
    )
    for name, (raw_key, _) in stale.items():
        binder.warn(join(observer_path, raw_key), _STALE_OBSERVER_KEYS[name])
    base = ObserverConfig(http=http, management=management)
    config: ObserverConfig = binder.bind(
        ObserverConfig, current, observer_path, base=base, exclude=SERVER_FIELDS
    )
    return config
