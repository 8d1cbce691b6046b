from pathlib import Path

import pytest
from pydantic import ValidationError

from gatehold.config import Config, HttpUpstream, StdioUpstream, load_config, parse_config
from gatehold.errors import ConfigError


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=Path("."))
    return caught.value.problems


def test_empty_config_is_valid_and_loopback() -> None:
    loaded = parse_config({}, base_dir=Path("."))
    assert loaded.config.gateway.is_loopback
    assert loaded.config.audit.sqlite == "gatehold-audit.db"


def test_models_are_frozen() -> None:
    config = Config()
    with pytest.raises(ValidationError):
        config.gateway.listen = "0.0.0.0:1"  # type: ignore[misc]


def test_unknown_keys_are_errors_naming_the_field() -> None:
    assert problems({"gatway": {}})[0].startswith("gatway: unknown field")
    assert problems({"roles": {"r": {"tools": {"a.b": {"stict": True}}}}})[0].startswith(
        "roles.r.tools.a.b.stict: unknown field")


def test_upstream_kind_and_secret_references() -> None:
    loaded = parse_config({"secrets": {"t": "env:T"}, "upstreams": {
        "a": {"command": ["x"], "env": {"TOKEN": "t"}},
        "b": {"url": "https://example.com/mcp", "credential": {"bearer": "t"}}}}, base_dir=Path("."))
    assert isinstance(loaded.config.upstreams["a"], StdioUpstream)
    assert isinstance(loaded.config.upstreams["b"], HttpUpstream)
    assert "either `command" in problems({"upstreams": {"c": {"cmd": ["x"]}}})[0]
    assert "not defined in secrets" in problems({"upstreams": {"a": {"command": ["x"], "env": {"T": "nope"}}}})[0]
    # A secret value inlined where a reference belongs is refused.
    assert "secrets.t" in problems({"secrets": {"t": "sk-live-123"}})[0]
    assert "credential" in problems({"upstreams": {"b": {"url": "http://x", "headers": {"Authorization": "x"}}}})[0]


def test_field_value_and_expectation_in_each_problem() -> None:
    found = problems({"gateway": {"listen": "nowhere", "max_body_bytes": 0},
                      "roles": {"r": {"tools": {"t": {"args": {"p": {"path_within": "rel", "pattern": "("}}}}}}})
    text = "\n".join(found)
    assert "gateway.listen: expected host:port, e.g. 127.0.0.1:8765 (given: 'nowhere')" in text
    assert "gateway.max_body_bytes: Input should be greater than 0 (given: 0)" in text
    assert "path_within must be an absolute path (given: 'rel')" in text
    assert "not a valid regular expression" in text


def test_audit_needs_a_sink() -> None:
    assert "at least one audit sink" in problems({"audit": {"sqlite": None, "jsonl": None}})[0]


def test_roles_must_exist() -> None:
    found = problems({"auth": {"api_keys": [{"id": "k", "hash": "scrypt$x", "principal": "p", "roles": ["ghost"]}]}})
    assert "role 'ghost' is not defined" in found[0]


def test_load_config_reports_yaml_and_io_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_policy_version_follows_content() -> None:
    a = parse_config({"roles": {"r": {}}}, base_dir=Path("."))
    b = parse_config({"roles": {"r": {}}}, base_dir=Path("."))
    c = parse_config({"roles": {"s": {}}}, base_dir=Path("."))
    assert a.policy_version == b.policy_version != c.policy_version
