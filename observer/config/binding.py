"""Binding a parsed YAML tree onto frozen attrs classes, and back.

Every config class is an ``attrs.frozen`` class whose field names are the snake_case form of the
YAML keys (``call_max_idle_time_in_s`` <-> ``callMaxIdleTimeInS``). Per-field rules (ranges, a
pattern, deprecated spellings, a custom builder for irregular blocks) live in the field metadata,
set with :func:`setting`. The :class:`Binder` walks the tree, types the values (strings coming
from ``${ENV}`` placeholders are converted like literals), collects every problem with its full
key path and keeps going, so one run reports all mistakes of a file.
"""

from __future__ import annotations

import difflib
import enum
import logging
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union, get_args, get_origin

import attrs

from observer.config.keys import attr_canonical, camel_from_attr, canonical

log = logging.getLogger("observer.config")

_META = "observer.config"


class Omit:
    """Returned by a dump function to leave the key out of the output."""


OMIT = Omit()


@attrs.frozen
class Setting:
    minimum: int | None = None
    maximum: int | None = None
    aliases: tuple[str, ...] = ()  # older spellings real users have; accepted with a warning
    pattern: str | None = None  # for str values: the whole value must match
    pattern_hint: str = ""
    build: Callable[[Binder, Any, str], Any] | None = None  # for irregular blocks (sinks, discovery...)
    dump: Callable[[Any], Any] | None = None


def setting(default: Any = attrs.NOTHING, **rules: Any) -> Any:
    """A config field. ``default`` may be a frozen config instance; pass ``factory`` in rules to
    build it lazily."""
    factory = rules.pop("factory", None)
    meta = {_META: Setting(**rules)}
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta)
    return attrs.field(default=default, metadata=meta)


def block(cls: type, **overrides: Any) -> Any:
    """A nested block whose default is ``cls(**overrides)`` (e.g. per-buffer default sizes)."""
    return attrs.field(factory=lambda: cls(**overrides), metadata={_META: Setting()})


def _setting_of(field: attrs.Attribute) -> Setting:
    meta = field.metadata.get(_META)
    return meta if isinstance(meta, Setting) else Setting()


def yaml_key(field: attrs.Attribute) -> str:
    return camel_from_attr(field.name)


_resolved: set[type] = set()


def _fields(cls: type) -> tuple[attrs.Attribute, ...]:
    if cls not in _resolved:
        attrs.resolve_types(cls)
        _resolved.add(cls)
    return attrs.fields(cls)


class Invalid(ValueError):
    """A value that cannot be used; the message completes ``<path>: ``."""


class _UseDefault:
    pass


_USE_DEFAULT = _UseDefault()


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


class Scope:
    """What a ``_bind_finish`` hook may report, relative to the block's path."""

    def __init__(self, binder: Binder, path: str) -> None:
        self._binder = binder
        self.path = path

    def error(self, key: str, message: str) -> None:
        self._binder.error(join(self.path, key), message)

    def warn(self, key: str, message: str) -> None:
        self._binder.warn(join(self.path, key), message)


class Binder:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        log.warning("config: %s: %s", path, message)

    # ---- mappings -------------------------------------------------------------------------
    def mapping(self, raw: Any, path: str) -> Mapping[str, Any] | None:
        """``raw`` as a mapping with string keys; None (after recording an error) if it is not one.
        A YAML null is an empty mapping."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error(path, f"must be a mapping, got {describe(raw)}")
            return None
        return {str(key): value for key, value in raw.items()}

    def match_keys(
        self, raw: Mapping[str, Any], path: str, known: Mapping[str, str]
    ) -> tuple[dict[str, tuple[str, Any]], dict[str, Any]]:
        """Split ``raw`` into ``{name: (raw_key, value)}`` for keys whose canonical form is in
        ``known`` (canonical -> name) and the rest ``{raw_key: value}``. Two spellings of one key
        in the same block are an error."""
        matched: dict[str, tuple[str, Any]] = {}
        rest: dict[str, Any] = {}
        for raw_key, value in raw.items():
            name = known.get(canonical(raw_key))
            if name is None:
                rest[raw_key] = value
            elif name in matched:
                self.error(join(path, raw_key), f"duplicate key (also given as {matched[name][0]})")
            else:
                matched[name] = (raw_key, value)
        return matched, rest

    def unknown(self, path: str, raw_key: str, candidates: Iterable[str]) -> None:
        names = list(candidates)
        close = difflib.get_close_matches(
            canonical(raw_key), [canonical(name) for name in names], n=1, cutoff=0.75
        )
        hint = ""
        if close:
            hint = " (did you mean " + next(n for n in names if canonical(n) == close[0]) + "?)"
        self.error(join(path, raw_key), "unknown key" + hint)

    # ---- attrs classes --------------------------------------------------------------------
    def bind(
        self,
        cls: type,
        raw: Any,
        path: str,
        *,
        base: Any = None,
        strict: bool = True,
        exclude: frozenset[str] = frozenset(),
    ) -> Any:
        """Build ``cls`` from ``raw``. Keys absent from ``raw`` keep their value in ``base`` (the
        field's default block, so a partial block keeps the documented defaults), else the class
        default. Returns None if a required key is missing (the error is recorded)."""
        fields = [field for field in _fields(cls) if field.name not in exclude]
        mapping = self.mapping(raw, path)
        if mapping is None:
            return base if base is not None else _default_instance(cls)
        known: dict[str, str] = {}
        for field in fields:
            known[attr_canonical(field.name)] = field.name
            for alias in _setting_of(field).aliases:
                known[canonical(alias)] = field.name
        matched, rest = self.match_keys(mapping, path, known)
        values: dict[str, Any] = {}
        invalid: set[str] = set()
        for field in fields:
            if field.name not in matched:
                continue
            raw_key, value = matched[field.name]
            field_path = join(path, raw_key)
            rules = _setting_of(field)
            if canonical(raw_key) != attr_canonical(field.name):
                self.warn(field_path, f"deprecated spelling, use {yaml_key(field)}")
            try:
                if rules.build is not None:
                    converted = rules.build(self, value, field_path)
                else:
                    field_base = getattr(base, field.name) if base is not None else _field_default(field)
                    converted = self.convert(value, field.type, field_path, rules, base=field_base)
            except Invalid as exc:
                self.error(field_path, str(exc))
                invalid.add(field.name)
                continue
            if converted is not _USE_DEFAULT:
                values[field.name] = converted
        for raw_key in rest:
            if strict:
                self.unknown(path, raw_key, [yaml_key(field) for field in fields])
            else:
                log.debug("config: %s is not used by this implementation (ignored)", join(path, raw_key))
        if base is None:
            missing = [f for f in fields if f.name not in values and f.default is attrs.NOTHING]
            for field in missing:
                if field.name not in invalid:
                    self.error(join(path, yaml_key(field)), "is required")
            if missing:
                return None
            instance = cls(**values)
        else:
            instance = attrs.evolve(base, **values)
        finish = getattr(instance, "_bind_finish", None)
        if finish is not None:
            instance = finish(Scope(self, path))
        return instance

    # ---- scalars --------------------------------------------------------------------------
    def convert(self, raw: Any, tp: Any, path: str, rules: Setting | None = None, *, base: Any = None) -> Any:
        """Type one value. Raises :class:`Invalid`; nested blocks record their own errors."""
        rules = rules or Setting()
        origin = get_origin(tp)
        if origin in (Union, types.UnionType) and type(None) in get_args(tp):
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                return None
            (inner,) = [arg for arg in get_args(tp) if arg is not type(None)]
            return self.convert(raw, inner, path, rules, base=base)
        if raw is None:
            return _USE_DEFAULT
        if isinstance(tp, type) and attrs.has(tp):
            return self.bind(tp, raw, path, base=base)
        if tp is bool:
            return to_bool(raw)
        if tp is int:
            return _check_range(to_int(raw), rules)
        if tp is str:
            return _check_pattern(to_str(raw), rules)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return to_enum(raw, tp)
        if origin is tuple and get_args(tp) == (str, Ellipsis):
            return to_str_tuple(raw)
        raise TypeError(f"unsupported config field type {tp!r} at {path}")

    def value(self, raw: Any, tp: Any, path: str, default: Any, **rules: Any) -> Any:
        """``convert`` for custom builders: records the error and returns ``default`` on failure."""
        try:
            converted = self.convert(raw, tp, path, Setting(**rules))
        except Invalid as exc:
            self.error(path, str(exc))
            return default
        return default if converted is _USE_DEFAULT else converted


def _field_default(field: attrs.Attribute) -> Any:
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return None if default is attrs.NOTHING else default


def _default_instance(cls: type) -> Any:
    try:
        return cls()
    except TypeError:
        return None


_TRUE = frozenset({"true", "yes", "on", "y"})
_FALSE = frozenset({"false", "no", "off", "n"})


def to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Invalid(f"must be a boolean (true or false), got {describe(raw)}")


def to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise Invalid(f"must be an integer, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise Invalid(f"must be an integer, got {describe(raw)}")


def to_str(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):  # YAML 1.1 reads unquoted yes/no/on/off as booleans
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return str(raw)
    raise Invalid(f"must be a string, got {describe(raw)}")


def to_enum(raw: Any, enum_type: type[enum.Enum]) -> Any:
    text = to_str(raw).strip().lower()
    for member in enum_type:
        if text in (str(member.value).lower(), member.name.lower()):
            return member
    choices = ", ".join(str(member.value) for member in enum_type)
    raise Invalid(f"must be one of {choices}, got {raw!r}")


def to_str_tuple(raw: Any) -> tuple[str, ...]:
    """A YAML list, or a comma-separated string (Micronaut converts those to lists too)."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list | tuple):
        return tuple(to_str(item) for item in raw)
    raise Invalid(f"must be a list of strings, got {describe(raw)}")


def _check_range(number: int, rules: Setting) -> int:
    if rules.minimum is not None and number < rules.minimum:
        raise Invalid(f"must be >= {rules.minimum}, got {number}")
    if rules.maximum is not None and number > rules.maximum:
        raise Invalid(f"must be <= {rules.maximum}, got {number}")
    return number


def _check_pattern(text: str, rules: Setting) -> str:
    if rules.pattern is not None and re.fullmatch(rules.pattern, text) is None:
        raise Invalid(f"must be {rules.pattern_hint or 'of the form ' + rules.pattern}, got {text!r}")
    return text


# ---- dumping ------------------------------------------------------------------------------
def dump(instance: Any, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The YAML-shaped (camelCase) dict of a config instance; loading it gives the instance back."""
    out: dict[str, Any] = {}
    for field in _fields(type(instance)):
        if field.name in exclude:
            continue
        rules = _setting_of(field)
        value = getattr(instance, field.name)
        dumped = rules.dump(value) if rules.dump is not None else plain(value)
        if dumped is not OMIT:
            out[yaml_key(field)] = dumped
    return out


def plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return dump(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [plain(item) for item in value]
    return value
