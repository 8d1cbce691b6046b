"""Every piece of text in an MCP result, and a way to rewrite each one.

The whole result is walked: ``content[].text`` (embedded resources too), ``structuredContent``,
``contents[].text`` of ``resources/read``, prompt ``messages``, and any other string an upstream
puts anywhere (``_meta``, extra fields, URIs, dictionary keys). Nothing is skipped on the ground
that a well-formed result would not carry text there. The one exception is binary payloads: a
resource's ``blob`` and the ``data`` of image and audio content, which are base64 of bytes, not
text. Rewriting never mutates the input: changed containers are copied, unchanged ones shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rewrite = Callable[[str], str]
_MAX_DEPTH = 64
TOO_DEEP = "[gatehold: nested too deep]"
_BINARY_TYPES = ("image", "audio")


def rewrite_result(result: dict[str, Any], fn: Rewrite) -> dict[str, Any]:
    """``result`` with ``fn`` applied to every string in it but binary payloads."""
    out = rewrite_json(result, fn)
    return out if isinstance(out, dict) else {"content": [{"type": "text", "text": TOO_DEEP}], "isError": True}


def _binary(container: dict[Any, Any], key: Any) -> bool:
    return key == "blob" or (key == "data" and container.get("type") in _BINARY_TYPES)


def rewrite_json(value: Any, fn: Rewrite, depth: int = 0) -> Any:
    """Every string in a JSON value (dictionary keys and values, list items) through ``fn``."""
    if isinstance(value, str):
        new = fn(value)
        return value if new == value else new
    if depth >= _MAX_DEPTH and isinstance(value, dict | list):
        # Fail closed: what is too deep to inspect is not passed on unread.
        return TOO_DEEP
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        same = True
        for key, item in value.items():
            new_key = fn(key) if isinstance(key, str) else key
            if new_key in out:  # two keys that rewrite alike stay apart
                new_key = _distinct(out, new_key)
            new_item = item if _binary(value, key) else rewrite_json(item, fn, depth + 1)
            same = same and new_key == key and new_item is item
            out[new_key] = new_item
        return value if same else out
    if isinstance(value, list):
        new_list = [rewrite_json(v, fn, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(new_list, value, strict=True)) else new_list
    return value


def _distinct(taken: dict[Any, Any], key: str) -> str:
    n = 2
    while f"{key}#{n}" in taken:
        n += 1
    return f"{key}#{n}"


def texts(result: dict[str, Any]) -> list[str]:
    """Every string of ``result`` that ``rewrite_result`` would visit, in order."""
    found: list[str] = []

    def collect(text: str) -> str:
        found.append(text)
        return text

    rewrite_result(result, collect)
    return found
