"""Key spellings. The seed (Micronaut) binds ``maxItems``, ``max-items`` and ``MAX_ITEMS`` to the
same property, so keys are compared in a canonical hyphenated form."""

from __future__ import annotations

import re

_CASE_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[-_\s]+")


def canonical(key: str) -> str:
    """``callMaxIdleTimeInS``, ``call-max-idle-time-in-s`` and ``CALL_MAX_IDLE_TIME_IN_S`` all
    give ``call-max-idle-time-in-s``."""
    hyphenated = _SEPARATORS.sub("-", _CASE_BOUNDARY.sub("-", key.strip()))
    return hyphenated.strip("-").lower()


def attr_canonical(attr_name: str) -> str:
    """The canonical form of a python attribute name (``call_max_idle_time_in_s``)."""
    return attr_name.replace("_", "-")


def camel_from_attr(attr_name: str) -> str:
    """``call_max_idle_time_in_s`` -> ``callMaxIdleTimeInS`` (the spelling used in YAML output)."""
    first, *rest = attr_name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)
