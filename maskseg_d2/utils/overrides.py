"""Hydra command-line overrides that our error messages print, in the exact form a shell user types.

Hydra's override grammar cannot write every string: a dict key cannot be quoted and takes ASCII letters,
digits, a few symbols and backslash escapes only, and ``3`` or ``true`` as a key is a number or a bool.
So each builder checks its result with Hydra's own parser and returns ``None`` when the text would not
come back as the same strings; the message then shows the YAML form (:func:`yaml_flow`) for a config file.
"""
from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence

__all__ = ["dict_override", "list_override", "shell", "yaml_flow"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")  # Hydra's unquoted ID token
_KEYWORDS = {"null", "true", "false", "nan", "inf"}  # plain-looking words Hydra reads as null/bool/float
_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-/+.$%*@?|()\[\]{}:=, ]+\Z")
_KEY_ESCAPED = set("()[]{}:=,")  # backslash-escaped in a dict key (Hydra's ESC token)


def _value(text: str) -> str:
    """One string as an override element: bare when Hydra reads it back as that string, else quoted."""
    if _PLAIN.match(text) and text.lower() not in _KEYWORDS:
        return text
    return f"'{text}'" if '"' in text else f'"{text}"'


def _key(text: str) -> str | None:
    """One string as a dict key (keys cannot be quoted: special characters are escaped), or None.

    Inner spaces stay as typed (``Sign Board``); Hydra would strip the outer ones, so those are escaped.
    """
    if not _KEY_CHARS.match(text):
        return None
    inner = text.strip(" ")
    head, tail = "\\ " * (len(text) - len(text.lstrip(" "))), "\\ " * (len(text) - len(text.rstrip(" ")))
    return head + "".join(f"\\{c}" if c in _KEY_ESCAPED else c for c in inner) + tail


def _parses_to(override: str, expected: object) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser  # Hydra's own grammar

    try:
        return OverridesParser.create().parse_override(override).value() == expected
    except Exception:  # any parse error: this text cannot be typed as an override
        return False


def dict_override(key: str, mapping: Mapping[str, str | None]) -> str | None:
    """``key={a: b, ...}`` that Hydra parses back to ``mapping``, or None when a key cannot be typed.

    Args:
        key (str): the config key, e.g. ``dataset.class_map``.
        mapping (dict[str, str or None]): string keys -> string values (None: ``null``).

    Returns:
        str or None: the override (not shell-quoted: see :func:`shell`).
    """
    keys = {k: _key(k) for k in mapping}
    if None in keys.values():
        return None
    body = ", ".join(f"{keys[k]}: {'null' if v is None else _value(v)}" for k, v in mapping.items())
    override = f"{key}={{{body}}}"
    return override if _parses_to(override, dict(mapping)) else None


def list_override(key: str, items: Sequence[str]) -> str | None:
    """``key=[a,"b c"]`` that Hydra parses back to ``items``, or None when it cannot be typed."""
    override = f"{key}=[{','.join(_value(i) for i in items)}]"
    return override if _parses_to(override, list(items)) else None


def shell(*args: str) -> str:
    """The arguments as typed in a POSIX shell (quoted where the shell would split or expand them)."""
    return shlex.join(args)


def yaml_flow(value: Mapping[str, str | None] | Sequence[str]) -> str:
    """``{"a": "b"}`` or ``["a", "b"]``: JSON, which YAML reads too (any Unicode key, unlike an override)."""
    return json.dumps(dict(value) if isinstance(value, Mapping) else list(value), ensure_ascii=False,
                      separators=(", ", ": "))
