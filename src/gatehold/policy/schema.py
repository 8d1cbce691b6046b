"""Tool input schemas: compiled once per distinct content, validated without coercion.

Schemas come from upstream servers and are validated as JSON Schema draft 2020-12 with format
checking off. Everything here fails closed: a schema that cannot be used makes its tool
uncallable (``ArgumentsInvalid`` at compile time), and a validator that crashes reports an
error rather than a pass.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from itertools import islice
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry

from gatehold.errors import ArgumentsInvalid

MAX_ERRORS = 10
_MAX_LINE = 200
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
_OPEN_KEYWORDS = ("additionalProperties", "unevaluatedProperties", "patternProperties")


class CompiledSchema:
    """A validator for one schema. ``key`` identifies the schema content and strictness."""

    __slots__ = ("_validator", "key", "strict")

    def __init__(self, key: str, schema: dict[str, Any], *, strict: bool) -> None:
        self.key = key
        self.strict = strict
        # An empty registry cannot retrieve anything: jsonschema's default registry would fetch
        # remote $refs over the network. Remote refs are refused at compile time as well.
        self._validator = Draft202012Validator(schema, registry=Registry())

    def errors(self, arguments: Any) -> list[str]:
        """Up to ``MAX_ERRORS`` lines like ``/path: 5 is not of type 'string'``; empty means valid.

        ``None`` (arguments missing) is validated as ``{}``.
        """
        instance = {} if arguments is None else arguments
        try:
            return [_describe(e) for e in islice(self._validator.iter_errors(instance), MAX_ERRORS)]
        except Exception as exc:  # noqa: BLE001 - deliberate: fail closed
            # Fail closed: a validator that crashes (recursion, unresolvable $ref, bad regex)
            # is a failed validation, never a pass.
            return [f"(root): arguments could not be validated ({type(exc).__name__})"]


class SchemaCache:
    """Compiles each distinct (schema content, strict) pair once; least recently used evicted."""

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._entries: OrderedDict[str, CompiledSchema] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def compile(self, schema: dict[str, Any], *, strict: bool) -> CompiledSchema:
        """Raises ``ArgumentsInvalid`` when the schema is unusable (invalid, remote ``$ref``)."""
        if not isinstance(schema, dict):
            raise ArgumentsInvalid(f"input schema must be a JSON object, not {type(schema).__name__}")
        try:
            canonical = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise ArgumentsInvalid(f"input schema is not serialisable JSON: {exc}") from None
        key = hashlib.sha256(canonical).hexdigest() + (":strict" if strict else ":lax")
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
            compiled = _build(canonical, key, strict=strict)
            self._entries[key] = compiled
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
            return compiled


def _build(canonical: bytes, key: str, *, strict: bool) -> CompiledSchema:
    # Parsing the canonical bytes gives a private deep copy: the caller's dict is never mutated
    # and later changes to it cannot alter a cached validator.
    schema: dict[str, Any] = orjson.loads(canonical)
    problem = _unsupported(schema)
    if problem:
        raise ArgumentsInvalid(f"input schema unusable: {problem}")
    # Always draft 2020-12: a root $schema naming another draft would make jsonschema switch
    # dialect on recursive $refs (and ignore unevaluatedProperties there).
    schema.pop("$schema", None)
    try:
        Draft202012Validator.check_schema(schema)
        if strict:
            _close(schema)
        return CompiledSchema(key, schema, strict=strict)
    except SchemaError as exc:
        raise ArgumentsInvalid(f"input schema invalid: {_clip(exc.message)}") from None
    except Exception as exc:  # noqa: BLE001 - deliberate: fail closed
        # Fail closed: any other failure (e.g. recursion on a pathological schema) makes the
        # tool uncallable rather than unchecked.
        raise ArgumentsInvalid(f"input schema unusable ({type(exc).__name__})") from None


def _unsupported(schema: dict[str, Any]) -> str | None:
    """Remote references, or a nested ``$schema`` naming another draft.

    Deliberately schema-unaware: a "$ref" string anywhere (even inside ``const``) counts, so the
    scan can over-reject a strange schema but never miss a reference.
    """
    stack: list[tuple[Any, bool]] = [(schema, True)]
    while stack:
        node, is_root = stack.pop()
        if isinstance(node, list):
            stack.extend((item, False) for item in node)
        elif isinstance(node, dict):
            for keyword in _REF_KEYWORDS:
                ref = node.get(keyword)
                if isinstance(ref, str) and not ref.startswith("#"):
                    return f"{keyword} to {_clip(repr(ref))} (only local '#...' references are allowed)"
            dialect = node.get("$schema")
            if not is_root and isinstance(dialect, str) and dialect.rstrip("#") != _DIALECT:
                return f"nested $schema {_clip(repr(dialect))} (only draft 2020-12 is supported)"
            stack.extend((value, False) for value in node.values())
    return None


def _close(schema: Any) -> None:
    """Strict mode, in place on the private copy: undeclared properties become errors.

    Applied to the root and to schemas reached via properties/items/prefixItems, never inside
    allOf/anyOf/oneOf/not/if/then/else, where closing a branch would break composition.
    ``unevaluatedProperties`` (not ``additionalProperties``) so that properties declared by a
    sibling ``allOf``/``$ref`` still count as declared.
    """
    if not isinstance(schema, dict):
        return
    properties = schema.get("properties")
    if isinstance(properties, dict):
        if not any(keyword in schema for keyword in _OPEN_KEYWORDS):
            schema["unevaluatedProperties"] = False
        _close_all(properties.values())
    items = schema.get("items")
    if isinstance(items, list):
        _close_all(items)
    else:
        _close(items)
    prefix_items = schema.get("prefixItems")
    if isinstance(prefix_items, list):
        _close_all(prefix_items)


def _close_all(schemas: Iterable[Any]) -> None:
    for sub in schemas:
        _close(sub)


def _describe(error: ValidationError) -> str:
    path = error.absolute_path
    where = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "(root)"
    return _clip(f"{where}: {error.message}")


def _clip(text: str) -> str:
    """One short printable line: control characters escaped, length capped."""
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text[: _MAX_LINE + 1])
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 3] + "..."
