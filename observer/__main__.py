"""``observer [--config FILE] [--check-config] [--log-level LEVEL]`` (also ``python -m observer``).

Exit codes: 0 after a clean stop or a successful ``--check-config``, 2 for a bad command line or
configuration (``config error: ...`` on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence

import yaml

from observer.config import ConfigError, ObserverConfig, load_config

log = logging.getLogger("observer")

_LEVELS = {
    "TRACE": logging.DEBUG,  # the seed's LoggerSink levels are accepted too
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
EXIT_CONFIG_ERROR = 2


def _level(text: str) -> int:
    try:
        return _LEVELS[text.strip().upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(_LEVELS)}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="observer",
        description="ObserveRTC observer: receives WebRTC samples, emits reports to sinks.",
        epilog="Without --config, the file in $OBSERVER_CONFIG_FILE is loaded, else the built-in defaults.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="a YAML configuration file (seed application.yaml style)"
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print it (secrets masked) as YAML and exit",
    )
    parser.add_argument(
        "--log-level",
        type=_level,
        default=logging.INFO,
        metavar="LEVEL",
        help="DEBUG, INFO (default), WARNING, ERROR",
    )
    return parser


def configure_logging(level: int) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def config_yaml(config: ObserverConfig) -> str:
    return yaml.safe_dump(config.redacted(), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _initial_wait_s() -> float:
    """The seed's INITIAL_WAITING_TIME_IN_S: sleep before starting (e.g. to let peers come up)."""
    raw = os.environ.get("INITIAL_WAITING_TIME_IN_S", "").strip()
    if not raw:
        return 0.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        log.warning("INITIAL_WAITING_TIME_IN_S=%r is not a number; not waiting", raw)
        return 0.0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG_ERROR
    configure_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.check_config:
        sys.stdout.write(config_yaml(config))
        return 0
    if config.security.print_configs:
        log.info("effective configuration:\n%s", config_yaml(config))
    wait_s = _initial_wait_s()
    if wait_s > 0:
        log.info("waiting %.1f s before start (INITIAL_WAITING_TIME_IN_S)", wait_s)
        time.sleep(wait_s)  # before the event loop exists: nothing else to serve yet

    import observer.app  # only when run: --check-config must not need the whole daemon

    try:
        asyncio.run(observer.app.run(config))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a port in use, an address that is not ours: say which, not a traceback
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
