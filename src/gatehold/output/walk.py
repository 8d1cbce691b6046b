"""Where the readable text of an MCP result lives, and a way to rewrite each piece of it.

Tool results carry text in ``content[].text`` (also inside embedded resources) and anything in
``structuredContent``; ``resources/read`` in ``contents[].text``; ``prompts/get`` in
``messages[].content`` (one item or a list). Binary ``blob`` and ``data`` fields are left alone.
Rewriting never mutates the input: changed containers are copied, unchanged ones shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rewrite = Callable[[str], str]
_MAX_DEPTH = 64
TOO_DEEP = "[gatehold: nested too deep]"


def rewrite_result(result: dict[str, Any], fn: Rewrite, *, structured: bool = True) -> dict[str, Any]:
    """``result`` with ``fn`` applied to every readable text (``structured``: also structuredContent)."""
    out = result
    for key in ("content", "contents", "messages"):
        items = result.get(key)
        if isinstance(items, list):
            new = [_item(item, fn) for item in items]
            if any(a is not b for a, b in zip(new, items, strict=True)):
                out = {**out, key: new}
    if structured and "structuredContent" in result:
        value = result["structuredContent"]
        new_value = rewrite_json(value, fn)
        if new_value is not value:
            out = {**out, "structuredContent": new_value}
    return out


def _item(item: Any, fn: Rewrite) -> Any:
    if not isinstance(item, dict):
        return item
    out = item
    text = item.get("text")
    if isinstance(text, str):
        new = fn(text)
        if new != text:
            out = {**out, "text": new}
    for key in ("resource", "content"):
        inner = item.get(key)
        if isinstance(inner, dict):
            new_inner = _item(inner, fn)
            if new_inner is not inner:
                out = {**out, key: new_inner}
        elif isinstance(inner, list):
            new_list = [_item(sub, fn) for sub in inner]
            if any(a is not b for a, b in zip(new_list, inner, strict=True)):
                out = {**out, key: new_list}
    return out


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
            new_item = rewrite_json(item, fn, depth + 1)
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
    """Every readable text of ``result``, in order (what ``rewrite_result`` would visit)."""
    found: list[str] = []

    def collect(text: str) -> str:
        found.append(text)
        return text

    rewrite_result(result, collect)
    return found
