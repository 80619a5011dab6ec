"""Reading a sink's free-form ``config:`` mapping with errors that name the offending key.

Keys are accepted in camelCase and kebab-case (``maxBytes`` / ``max-bytes``). Every key a sink does not
read is an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from observer.reports.model import ReportType

T = TypeVar("T")

_MISSING: Any = object()
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class SinkConfigError(ValueError):
    """A sink config value is missing, malformed or unknown. ``path`` is the full dotted key path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def camel_key(key: str) -> str:
    """``max-bytes`` -> ``maxBytes``; camelCase keys stay as they are."""
    if "-" not in key:
        return key
    head, *rest = key.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def report_type_key(key: str) -> ReportType | None:
    """A ``streams``/``prefixes`` key (``observer-event``, ``observerEvent``, ``OBSERVER_EVENT``) -> type."""
    if "-" in key or "_" in key:
        snake = key.replace("-", "_").upper()
    else:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()
    try:
        return ReportType(snake)
    except ValueError:
        return None


class ConfigReader:
    """Typed access to one mapping at ``path``; call :meth:`finish` after reading to reject unknown keys."""

    def __init__(self, config: Mapping[str, Any] | None, path: str) -> None:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise SinkConfigError(path, f"expected a mapping, got {type(config).__name__}")
        self.path = path
        self._values: dict[str, Any] = {}
        self._spelling: dict[str, str] = {}
        for raw_key, value in config.items():
            if not isinstance(raw_key, str):
                raise SinkConfigError(f"{path}.{raw_key}", "keys must be strings")
            key = camel_key(raw_key)
            if key in self._values:
                raise SinkConfigError(
                    self.key_path(raw_key), f"given twice (as {self._spelling[key]!r} and {raw_key!r})"
                )
            self._values[key] = value
            self._spelling[key] = raw_key
        self._read: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.path}.{self._spelling.get(key, key)}"

    def has(self, key: str) -> bool:
        return self._values.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        value = self._values.get(key)
        return default if value is None else value

    def error(self, key: str, message: str) -> SinkConfigError:
        return SinkConfigError(self.key_path(key), message)

    def _get(self, key: str, default: Any, convert: Callable[[Any], T], what: str) -> T:
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        try:
            return convert(value)
        except (TypeError, ValueError) as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise self.error(key, f"expected {what}, got {value!r}{detail}") from None

    def string(self, key: str, default: Any = _MISSING, *, allow_empty: bool = True) -> str:
        def convert(value: Any) -> str:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise TypeError
            text = str(value)
            if not allow_empty and not text.strip():
                raise ValueError("must not be empty")
            return text

        return self._get(key, default, convert, "a string")

    def secret(self, key: str, default: Any = _MISSING) -> str:
        """Like :meth:`string`, but the value never appears in the error message."""
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got a {type(value).__name__}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        def convert(value: Any) -> bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise TypeError

        return self._get(key, default, convert, "true or false")

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        def convert(value: Any) -> int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            number = int(value)
            if minimum is not None and number < minimum:
                raise ValueError(f"must be >= {minimum}")
            if maximum is not None and number > maximum:
                raise ValueError(f"must be <= {maximum}")
            return number

        return self._get(key, default, convert, "an integer")

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None) -> float:
        def convert(value: Any) -> float:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            if minimum is not None and number < minimum:
                raise ValueError(f"must be >= {minimum}")
            return number

        return self._get(key, default, convert, "a number")

    def choice(self, key: str, choices: Iterable[str], default: Any = _MISSING) -> str:
        allowed = {c.upper(): c for c in choices}

        def convert(value: Any) -> str:
            if not isinstance(value, str) or value.strip().upper() not in allowed:
                raise ValueError
            return allowed[value.strip().upper()]

        return self._get(key, default, convert, f"one of {', '.join(allowed.values())}")

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def section(self, key: str) -> ConfigReader | None:
        """A nested mapping read with the same rules (its unknown keys are errors too)."""
        value = self.mapping(key)
        return None if value is None else ConfigReader(value, self.key_path(key))

    def string_list(self, key: str, default: Any = _MISSING) -> list[str]:
        def convert(value: Any) -> list[str]:
            if isinstance(value, str):
                items = [part.strip() for part in value.split(",")]
            elif isinstance(value, list | tuple):
                items = [str(part).strip() for part in value]
            else:
                raise TypeError
            if not all(items):
                raise ValueError("empty item")
            return items

        return self._get(key, default, convert, "a list of strings")

    def report_type_map(self, key: str) -> dict[ReportType, str]:
        """``{observer-event: x, callEvent: y}`` -> ``{OBSERVER_EVENT: x, CALL_EVENT: y}``."""
        section = self.mapping(key)
        result: dict[ReportType, str] = {}
        for raw_key, value in (section or {}).items():
            path = f"{self.key_path(key)}.{raw_key}"
            report_type = report_type_key(str(raw_key))
            if report_type is None:
                raise SinkConfigError(path, "is not a report type (e.g. call-event, inboundAudioTrack)")
            if report_type in result:
                raise SinkConfigError(path, f"{report_type.value} is given twice")
            if not isinstance(value, str) or not value.strip():
                raise SinkConfigError(path, f"expected a non-empty string, got {value!r}")
            result[report_type] = value.strip()
        return result

    def unknown_keys(self) -> list[str]:
        return [self._spelling[k] for k in sorted(set(self._values) - self._read)]

    def finish(self) -> None:
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            key = unknown[0]
            others = ", ".join(self._spelling[k] for k in unknown[1:])
            others = f" (also: {others})" if others else ""
            raise self.error(key, f"unknown key{others}")
