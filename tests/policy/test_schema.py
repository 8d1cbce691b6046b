from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.errors import ArgumentsInvalid
from gatehold.policy import MAX_ERRORS, CompiledSchema, SchemaCache

OBJ: dict[str, Any] = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["path"],
}


@pytest.fixture
def cache() -> SchemaCache:
    return SchemaCache()


def errors(schema: dict[str, Any], arguments: Any, *, strict: bool = True) -> list[str]:
    return SchemaCache().compile(schema, strict=strict).errors(arguments)


# --- caching ---------------------------------------------------------------------------------


def test_same_content_compiles_once(cache: SchemaCache) -> None:
    first = cache.compile(OBJ, strict=True)
    reordered = {
        "required": ["path"],
        "properties": dict(reversed(OBJ["properties"].items())),
        "type": "object",
    }
    assert cache.compile(copy.deepcopy(OBJ), strict=True) is first
    assert cache.compile(reordered, strict=True) is first
    assert len(cache) == 1


def test_strict_flag_is_part_of_the_key(cache: SchemaCache) -> None:
    strict = cache.compile(OBJ, strict=True)
    lax = cache.compile(OBJ, strict=False)
    assert strict is not lax
    assert strict.strict
    assert not lax.strict
    assert strict.key != lax.key
    assert strict.errors({"path": "a", "extra": 1})
    assert lax.errors({"path": "a", "extra": 1}) == []


def test_input_schema_is_never_mutated(cache: SchemaCache) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {}}}},
    }
    before = copy.deepcopy(schema)
    compiled = cache.compile(schema, strict=True)
    assert schema == before
    schema["properties"]["a"] = {"type": "string"}  # later changes do not reach the cached validator
    assert compiled.errors({"a": {"b": 1}}) == []


def test_lru_is_bounded_and_evicts_least_recently_used() -> None:
    cache = SchemaCache(maxsize=2)
    a = cache.compile({"title": "a"}, strict=False)
    b = cache.compile({"title": "b"}, strict=False)
    assert cache.compile({"title": "a"}, strict=False) is a  # a is now the most recent
    cache.compile({"title": "c"}, strict=False)
    assert len(cache) == 2
    assert cache.compile({"title": "a"}, strict=False) is a
    assert cache.compile({"title": "b"}, strict=False) is not b


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SchemaCache(maxsize=0)


# --- unusable schemas fail closed ------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "nope"},
        {"type": "object", "properties": {"a": {"minimum": "zero"}}},
        {"type": "string", "pattern": "("},
        {"$ref": "https://example.com/schema.json"},
        {"$ref": "other.json#/$defs/a"},
        {"properties": {"a": {"$ref": "http://evil.example/x"}}},
        {"$dynamicRef": "https://example.com/meta#node"},
        {"properties": {"a": {"$schema": "http://json-schema.org/draft-04/schema#"}}},
    ],
)
def test_unusable_schema_raises_arguments_invalid(cache: SchemaCache, schema: dict[str, Any]) -> None:
    with pytest.raises(ArgumentsInvalid) as info:
        cache.compile(schema, strict=True)
    assert info.value.code == "args.schema"


@pytest.mark.parametrize("schema", [True, [], "object", None])
def test_non_object_schema_raises(cache: SchemaCache, schema: Any) -> None:
    with pytest.raises(ArgumentsInvalid):
        cache.compile(schema, strict=True)


@pytest.mark.parametrize("schema", [{"enum": [{1, 2}]}, {"const": 2**70}, {"x": {1: "a"}}])
def test_non_json_schema_raises(cache: SchemaCache, schema: dict[str, Any]) -> None:
    with pytest.raises(ArgumentsInvalid):
        cache.compile(schema, strict=False)


def test_local_refs_and_an_older_root_dialect_are_accepted() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://example.com/tool.json",
        "type": "object",
        "properties": {"where": {"$ref": "#/$defs/place"}},
        "$defs": {"place": {"type": "string"}},
    }
    assert errors(schema, {"where": "x"}) == []
    assert errors(schema, {"where": 1}) == ["/where: 1 is not of type 'string'"]


def test_unresolvable_local_ref_fails_closed() -> None:
    assert errors({"$ref": "#/$defs/missing"}, {}) != []


def test_infinitely_recursive_schema_fails_closed() -> None:
    schema = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    assert errors(schema, {}) != []


# --- validation ------------------------------------------------------------------------------


def test_message_format() -> None:
    assert errors(OBJ, {"path": 5}) == ["/path: 5 is not of type 'string'"]
    assert errors(OBJ, {}) == ["(root): 'path' is a required property"]


def test_nested_locations_are_json_pointers() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a/b": {"type": "array", "items": {"type": "object", "properties": {"~k": {"type": "string"}}}}
        },
    }
    assert errors(schema, {"a/b": [{"~k": "ok"}, {"~k": 1}]}) == ["/a~1b/1/~0k: 1 is not of type 'string'"]


def test_missing_arguments_are_validated_as_empty_object() -> None:
    assert errors(OBJ, None) == ["(root): 'path' is a required property"]
    assert errors({"type": "object", "properties": {"a": {}}}, None) == []


@pytest.mark.parametrize("arguments", [[], "path", 5, True, [{"path": "a"}]])
def test_non_object_arguments_rejected_when_root_is_object(arguments: Any) -> None:
    assert errors(OBJ, arguments)


def test_no_type_coercion() -> None:
    assert errors(OBJ, {"path": "a", "count": "5"})
    assert errors(OBJ, {"path": "a", "count": True})
    assert errors(OBJ, {"path": "a", "count": 1.5})
    assert errors(OBJ, {"path": "a", "count": 5}) == []


def test_format_is_not_asserted() -> None:
    schema = {"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}}
    assert errors(schema, {"mail": "not an email"}) == []


def test_at_most_ten_errors() -> None:
    schema = {"type": "object", "required": [f"p{i}" for i in range(25)]}
    assert len(errors(schema, {})) == MAX_ERRORS == 10


def test_messages_are_short_and_printable() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    (line,) = errors(schema, {"a": "x" * 10_000})
    assert len(line) <= 200
    (line,) = errors({"type": "object", "additionalProperties": {"type": "integer"}}, {"k\n\x1b": "v"})
    assert line.isprintable()


# --- strict mode -----------------------------------------------------------------------------


def test_strict_rejects_undeclared_root_property() -> None:
    (line,) = errors(OBJ, {"path": "a", "sneaky": 1})
    assert "sneaky" in line
    assert line.startswith("(root):")


def test_strict_closes_nested_properties_items_and_prefix_items() -> None:
    inner = {"type": "object", "properties": {"a": {"type": "integer"}}}
    schema = {
        "type": "object",
        "properties": {
            "obj": inner,
            "list": {"type": "array", "items": inner},
            "tuple": {"type": "array", "prefixItems": [inner]},
        },
    }
    assert errors(schema, {"obj": {"a": 1}, "list": [{"a": 1}], "tuple": [{"a": 1}]}) == []
    assert errors(schema, {"obj": {"a": 1, "x": 1}}) == [
        "/obj: Unevaluated properties are not allowed ('x' was unexpected)"
    ]
    assert errors(schema, {"list": [{"a": 1}, {"x": 1}]})[0].startswith("/list/1:")
    assert errors(schema, {"tuple": [{"x": 1}]})[0].startswith("/tuple/0:")
    assert errors(schema, {"obj": {"x": 1}}, strict=False) == []


def test_strict_respects_explicit_openness() -> None:
    assert errors({"type": "object", "properties": {"a": {}}, "additionalProperties": True}, {"b": 1}) == []
    with_pattern = {
        "type": "object",
        "properties": {"a": {}},
        "patternProperties": {"^x_": {"type": "integer"}},
    }
    assert errors(with_pattern, {"x_1": 1, "other": 1}) == []
    assert errors(with_pattern, {"x_1": "s"})


def test_strict_does_not_break_composition() -> None:
    schema = {
        "type": "object",
        "properties": {},
        "allOf": [{"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {"type": "integer"}}}],
    }
    assert errors(schema, {"a": 1, "b": 2}) == []  # branches left open; the root sees both
    assert errors(schema, {"a": 1, "c": 3})


def test_no_properties_at_all_means_no_arguments() -> None:
    assert errors({"type": "object", "properties": {}}, {"anything": 1})
    assert errors({"type": "object", "properties": {}}, {}) == []


# --- properties ------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)

SCHEMAS: list[dict[str, Any]] = [
    OBJ,
    {"type": "object", "properties": {"a": {"type": "array", "items": {"$ref": "#"}}}},
    {"type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$", "maxLength": 3}}},
    {
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
    },
    {
        "type": "object",
        "properties": {"o": {"oneOf": [{"const": 1}, {"enum": [True, "x"]}]}},
        "required": ["o"],
    },
    {"$ref": "#/$defs/missing"},
]


@settings(max_examples=200, deadline=None)
@given(schema=st.sampled_from(SCHEMAS), strict=st.booleans(), arguments=JSON)
def test_errors_never_raise(schema: dict[str, Any], strict: bool, arguments: Any) -> None:
    compiled = SchemaCache().compile(schema, strict=strict)
    assert isinstance(compiled, CompiledSchema)
    found = compiled.errors(arguments)
    assert isinstance(found, list)
    assert len(found) <= MAX_ERRORS
    assert all(isinstance(line, str) for line in found)


NAMES = st.text(min_size=1, max_size=8)
_strict_cache = SchemaCache()


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    declared=st.lists(NAMES, unique=True, max_size=5),
    nesting=st.sampled_from(["root", "obj", "items"]),
)
def test_strict_rejects_any_extra_key(data: st.DataObject, declared: list[str], nesting: str) -> None:
    extra = data.draw(NAMES.filter(lambda name: name not in declared), label="extra")
    given_args: dict[str, Any] = {
        name: data.draw(JSON)
        for name in data.draw(st.lists(st.sampled_from(declared) if declared else st.nothing(), unique=True))
    }
    leaf: dict[str, Any] = {"type": "object", "properties": {name: {} for name in declared}}
    schema: dict[str, Any]
    clean: dict[str, Any]
    if nesting == "root":
        schema, clean = leaf, given_args
    elif nesting == "obj":
        schema = {"type": "object", "properties": {"inner": leaf}}
        clean = {"inner": given_args}
    else:
        schema = {"type": "object", "properties": {"list": {"type": "array", "items": leaf}}}
        clean = {"list": [given_args]}
    compiled = _strict_cache.compile(schema, strict=True)
    assert compiled.errors(clean) == []
    dirty = copy.deepcopy(clean)
    target: dict[str, Any] = (
        dirty if nesting == "root" else dirty["inner"] if nesting == "obj" else dirty["list"][0]
    )
    target[extra] = data.draw(JSON, label="extra value")
    assert compiled.errors(dirty) != []
