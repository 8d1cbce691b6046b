"""A gatehold.yaml as a scan target: its upstreams, their launch, policy labels; telling it from a client config."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatehold.scan.model import Launch
from gatehold.scan.targets.errors import TargetError
from gatehold.scan.targets.gatehold_config import detect_kind, load

CONFIG = """\
# a gateway in front of two servers
gateway:
  listen: 127.0.0.1:8765
secrets:
  crm_token: env:CRM_TOKEN
  files_key: file:/run/secrets/files
upstreams:
  files:
    command: [python, -m, files_server, --root, /srv/docs]
    env: {API_TOKEN: files_key}
    cwd: work
  "crm":
    url: https://crm.internal/mcp
    headers: {X-Tenant: acme}
    credential: {bearer: crm_token}
  web:
    prefix: internet
    url: https://web.example.com/mcp
roles: {}
labels:
  files.read_*: [private]
  files.read_file: [untrusted]
  crm.delete_*: [destructive]
  "*.send": [external_sink]
  internet.fetch: [untrusted]
  "*": [private]
  web.fetch: [external_sink]
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_each_upstream_is_a_server(tmp_path: Path) -> None:
    path = write(tmp_path, "gatehold.yaml", CONFIG)
    servers, config = load(path)
    assert [s.name for s in servers] == ["files", "crm", "web"]
    files, crm, web = servers
    assert files.launch == Launch(command=("python", "-m", "files_server", "--root", "/srv/docs"),
                                  env={"API_TOKEN": "file:/run/secrets/files"}, cwd="work")
    assert crm.launch == Launch(url="https://crm.internal/mcp", headers={"X-Tenant": "acme"})
    assert web.launch == Launch(url="https://web.example.com/mcp")
    assert all(s.source == "gatehold-config" and not s.listed and s.file == path for s in servers)
    assert [s.line for s in servers] == [8, 12, 16]
    assert (config.kind, config.path, config.text) == ("gatehold", path, CONFIG)


def test_env_holds_secret_references_never_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "sk-live-value-that-must-not-appear")
    servers, _ = load(write(tmp_path, "gatehold.yaml", CONFIG))
    assert "sk-live-value" not in repr(servers)
    launch = servers[0].launch
    assert launch is not None
    assert dict(launch.env) == {"API_TOKEN": "file:/run/secrets/files"}


def test_labels_are_the_policy_globs_for_each_upstream_keyed_by_tool(tmp_path: Path) -> None:
    files, crm, web = load(write(tmp_path, "gatehold.yaml", CONFIG))[0]
    assert files.labels == {"read_*": ("private",), "read_file": ("untrusted",), "send": ("external_sink",),
                            "*": ("private",)}
    assert crm.labels == {"delete_*": ("destructive",), "send": ("external_sink",), "*": ("private",)}
    # web's tools are exposed as internet.<tool>: labels written for "web.fetch" name no tool of it
    assert web.labels == {"send": ("external_sink",), "fetch": ("untrusted",), "*": ("private",)}


def test_an_invalid_gatehold_config_is_a_target_error_with_the_loaders_messages(tmp_path: Path) -> None:
    text = "upstreams:\n  files: {command: [x], env: {TOKEN: missing}}\n  bad: {}\n"
    path = write(tmp_path, "gatehold.yaml", text)
    with pytest.raises(TargetError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid gatehold configuration: ")
    assert "upstreams.bad" in message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "text", "kind"), [
    ("gatehold.yaml", CONFIG, "gatehold"),
    ("gw.yml", "upstreams: {}\n", "gatehold"),
    ("config.yaml", "mcpServers:\n  - name: a\n    command: x\n", "client"),
    ("claude_desktop_config.json", '{"mcpServers": {}}', "client"),
    ("settings.json", '{"editor.fontSize": 14}', "client"),  # the client loader says what is missing
    ("config.toml", "[mcp_servers.a]\ncommand = 'x'\n", "client"),
    ("mcp-config", '{"servers": {}}', "client"),
    ("gatehold.conf", "upstreams:\n  a: {command: [x]}\n", "gatehold"),
])
def test_detect_kind(tmp_path: Path, name: str, text: str, kind: str) -> None:
    assert detect_kind(write(tmp_path, name, text)) == kind


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("notes.yaml", "title: hello\n", "not a configuration the scanner reads"),
    ("notes.yaml", "- a\n", "found a list"),
    ("broken.yaml", "a: [\n", "not valid YAML"),
    ("README", "just some text\n", "found a string"),
])
def test_detect_kind_refuses_what_is_neither(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(TargetError) as caught:
        detect_kind(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_detect_kind_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file"):
        detect_kind(str(tmp_path / "missing.yaml"))
