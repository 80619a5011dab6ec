"""``${NAME}`` / ``${NAME:default}`` expansion in string values (the seed's Micronaut semantics):
the value of environment variable NAME, else the default, else "". A default wrapped in backticks
is taken literally without them (so it may contain ``:`` or ``}``); other defaults may themselves
hold placeholders (``${A:${B:x}}``). Several placeholders may appear in one string."""

from __future__ import annotations

from collections.abc import Mapping


class PlaceholderError(ValueError):
    pass


def expand(text: str, env: Mapping[str, str]) -> str:
    if "${" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:start])
        end = _closing_brace(text, start + 2)
        out.append(_resolve(text[start + 2 : end], env))
        pos = end + 1


def _closing_brace(text: str, pos: int) -> int:
    depth = 0
    in_backticks = False
    while pos < len(text):
        char = text[pos]
        if char == "`":
            in_backticks = not in_backticks
        elif in_backticks:
            pass
        elif text.startswith("${", pos):
            depth += 1
            pos += 1
        elif char == "}":
            if depth == 0:
                return pos
            depth -= 1
        pos += 1
    raise PlaceholderError(f"unterminated placeholder in {text!r}")


def _resolve(body: str, env: Mapping[str, str]) -> str:
    name, sep, default = body.partition(":")
    name = name.strip()
    if not name:
        raise PlaceholderError(f"placeholder without a name: '${{{body}}}'")
    value = env.get(name)
    if value is not None:
        return value
    if not sep:
        return ""
    stripped = default.strip()
    if len(stripped) >= 2 and stripped.startswith("`") and stripped.endswith("`"):
        return stripped[1:-1]
    return expand(default, env)
