"""MCP client configurations in the shapes real clients write, and clear errors for broken ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatehold.scan.model import Launch
from gatehold.scan.targets.client_config import json_key_lines, load, strip_jsonc
from gatehold.scan.targets.errors import TargetError


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def by_name(servers: list[Any]) -> dict[str, Any]:
    return {s.name: s for s in servers}


CLAUDE_DESKTOP = """{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]
    },
    "github": {
      "command": "docker",
      "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexampleexampleexample0"},
      "disabled": true
    },
    "remote": {"url": "https://mcp.example.com/mcp", "headers": {"X-Team": "blue"}},
    "gemini-http": {"httpUrl": "https://gemini.example.com/mcp"},
    "windsurf-remote": {"serverUrl": "https://windsurf.example.com/mcp", "type": "http"}
  }
}
"""


def test_mcp_servers_json(tmp_path: Path) -> None:
    path = write(tmp_path, "claude_desktop_config.json", CLAUDE_DESKTOP)
    servers, config = load(path)
    assert [s.name for s in servers] == ["filesystem", "github", "remote", "gemini-http", "windsurf-remote"]
    found = by_name(servers)
    assert found["filesystem"].launch == Launch(
        command=("npx", "-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"))
    github = found["github"]  # disabled, but still on disk: returned like the others
    assert github.launch.command[:2] == ("docker", "run")
    assert github.launch.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_exampleexampleexampleexampleexample0"}
    assert found["remote"].launch == Launch(url="https://mcp.example.com/mcp", headers={"X-Team": "blue"})
    assert found["gemini-http"].launch.url == "https://gemini.example.com/mcp"
    assert found["windsurf-remote"].launch.url == "https://windsurf.example.com/mcp"
    assert all(s.source == "client-config" and not s.listed and s.file == path for s in servers)
    assert [s.line for s in servers] == [3, 7, 13, 14, 15]
    assert (config.path, config.kind, config.text) == (path, "client", CLAUDE_DESKTOP)


VSCODE_MCP = """// VS Code workspace servers
{
  "inputs": [{"type": "promptString", "id": "token", "password": true}],
  "servers": {
    /* the local one */
    "local": {
      "type": "stdio",
      "command": "uvx",   // runs from PyPI
      "args": ["mcp-server-time", "--local-timezone=Europe/Paris",],
      "env": {"TOKEN": "${input:token}", "NOTE": "a // is not a comment in a string"},
    },
    "web": {"type": "http", "url": "http://localhost:3000/mcp/*not-a-comment*/",},
  },
}
"""


def test_vscode_mcp_json_with_comments_and_trailing_commas(tmp_path: Path) -> None:
    path = write(tmp_path, ".vscode/mcp.json", VSCODE_MCP)
    servers, config = load(path)
    found = by_name(servers)
    assert found["local"].launch.command == ("uvx", "mcp-server-time", "--local-timezone=Europe/Paris")
    assert found["local"].launch.env == {"TOKEN": "${input:token}", "NOTE": "a // is not a comment in a string"}
    assert found["web"].launch.url == "http://localhost:3000/mcp/*not-a-comment*/"
    assert (found["local"].line, found["web"].line) == (6, 12)
    assert config.text == VSCODE_MCP  # the file as written, comments and all


def test_vscode_user_settings_mcp_servers(tmp_path: Path) -> None:
    text = ('{\n  "editor.fontSize": 14,\n  "mcp": {\n    "servers": {\n'
            '      "time": {"command": "uvx", "args": ["mcp-server-time"]}\n    }\n  }\n}\n')
    servers, _ = load(write(tmp_path, "settings.json", text))
    assert [(s.name, s.launch, s.line) for s in servers] == [("time", Launch(command=("uvx", "mcp-server-time")), 5)]


def test_zed_context_servers_in_all_three_forms(tmp_path: Path) -> None:
    text = """{
  // Zed settings
  "theme": "One Dark",
  "context_servers": {
    "old-style": {"command": {"path": "/usr/bin/node", "args": ["server.js"], "env": {"A": "1"}}, "settings": {}},
    "new-style": {"source": "custom", "command": "uvx", "args": ["mcp-server-git"], "env": {}},
    "from-extension": {"source": "extension", "settings": {"database_url": "postgres://localhost/db"}}
  }
}
"""
    servers, _ = load(write(tmp_path, "zed/settings.json", text))
    found = by_name(servers)
    assert found["old-style"].launch == Launch(command=("/usr/bin/node", "server.js"), env={"A": "1"})
    assert found["new-style"].launch == Launch(command=("uvx", "mcp-server-git"))
    assert found["from-extension"].launch is None  # how an extension starts its server is not in the file
    assert [s.line for s in servers] == [5, 6, 7]


def test_claude_code_user_and_project_servers(tmp_path: Path) -> None:
    data = {
        "numStartups": 4,
        "projects": {
            "/home/me/app": {"mcpServers": {"db": {"command": "uvx", "args": ["postgres-mcp"]}}, "history": []},
            "/home/me/other": {"allowedTools": []},
        },
        "mcpServers": {"db": {"type": "http", "url": "https://db.example.com/mcp"}},
    }
    text = json.dumps(data, indent=2)
    servers, _ = load(write(tmp_path, ".claude.json", text))
    found = by_name(servers)
    assert set(found) == {"db", "db@/home/me/app"}
    assert found["db"].launch.url == "https://db.example.com/mcp"
    assert found["db@/home/me/app"].launch.command == ("uvx", "postgres-mcp")
    lines = text.splitlines()
    assert lines[found["db"].line - 1].strip() == '"db": {'
    assert "db.example.com" in lines[found["db"].line + 1]
    assert '"command": "uvx"' in lines[found["db@/home/me/app"].line]


CODEX = """model = "o4-mini"

[mcp_servers.docs]
command = "npx"
args = ["-y", "mcp-docs@1.2.0"]
env = { "API_KEY" = "value" }

[mcp_servers."with space"]
url = "https://remote.example.com/mcp"
http_headers = { "X-Org" = "acme" }
enabled = false
"""


def test_codex_toml(tmp_path: Path) -> None:
    servers, config = load(write(tmp_path, ".codex/config.toml", CODEX))
    found = by_name(servers)
    assert found["docs"].launch == Launch(command=("npx", "-y", "mcp-docs@1.2.0"), env={"API_KEY": "value"})
    assert found["with space"].launch == Launch(url="https://remote.example.com/mcp", headers={"X-Org": "acme"})
    assert (found["docs"].line, found["with space"].line) == (3, 8)
    assert config.text == CODEX


CONTINUE = """name: My Assistant
version: 1.0.0
schema: v1
mcpServers:
  - name: SQLite
    command: npx
    args:
      - -y
      - mcp-sqlite
      - /tmp/db.sqlite
  - name: Remote
    type: streamable-http
    url: https://continue.example.com/mcp
  - uses: someone/hub-block
"""


def test_continue_yaml(tmp_path: Path) -> None:
    servers, _ = load(write(tmp_path, ".continue/config.yaml", CONTINUE))
    assert [(s.name, s.line) for s in servers] == [("SQLite", 5), ("Remote", 11), ("someone/hub-block", 14)]
    assert servers[0].launch == Launch(command=("npx", "-y", "mcp-sqlite", "/tmp/db.sqlite"))
    assert servers[1].launch == Launch(url="https://continue.example.com/mcp")
    assert servers[2].launch is None


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("bad.json", '{\n  "mcpServers": {\n    "a": {"command": "x",}\n  ', "not valid JSON: Expecting ',' delimiter "
     "(line 4, column 3)"),
    ("bad.json", '{"mcpServers": {"a": {"command": "x"}}} /* open', "not valid JSON: unterminated /* comment (line 1"),
    ("bad.json", "[1, 2]", "expected a JSON object at the top level, found a list"),
    ("bad.json", '{"mcpServers": {"a": "npx server"}}',
     "mcpServers.a: a server entry must be an object, found a string"),
    ("bad.json", '{"mcpServers": {"a": {"command": ["npx", 1]}}}', "\"command\" must be a list of strings; item 1"),
    ("bad.json", '{"mcpServers": {"a": {"command": 42}}}',
     "mcpServers.a: \"command\" must be a string, found a number"),
    ("bad.json", '{"mcpServers": {"a": {"command": "  "}}}', "\"command\" is empty"),
    ("bad.json", '{"mcpServers": {"a": {"command": "npx", "args": "-y server"}}}',
     "\"args\" must be a list of strings, found a string"),
    ("bad.json", '{"mcpServers": {"a": {"command": "npx", "args": ["-y", null]}}}',
     "\"args\" must be a list of strings; item 1 is null"),
    ("bad.json", '{"mcpServers": {"a": {"command": "npx", "env": {"PORT": 8080}}}}',
     "\"env.PORT\" must be a string, found a number"),
    ("bad.json", '{"mcpServers": {"a": {"url": 5}}}', "'url' must be a non-empty string, found a number"),
    ("bad.json", '{"mcpServers": ["a"]}', "mcpServers[0]: must be an object, found a string"),
    ("bad.json", '{"mcpServers": "a"}', "mcpServers: must be an object of servers by name, found a string"),
    ("bad.json", '{"editor.fontSize": 14}', "no MCP servers found"),
    ("bad.toml", '[mcp_servers.a]\ncommand = "x"\nargs = [1', "not valid TOML"),
    ("bad.toml", 'model = "x"\n', "no MCP servers found: expected [mcp_servers.<name>] tables"),
    ("bad.yaml", "mcpServers:\n  - name: a\n   command: x\n", "not valid YAML"),
    ("bad.yaml", "mcpServers:\n  - command: x\n", "mcpServers[0]: needs a non-empty string \"name\""),
    ("bad.yaml", "- a\n- b\n", "expected a YAML mapping at the top level, found a list"),
])
def test_malformed_configs_are_clear_one_line_errors(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(TargetError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "mcpServers:\n  - name: a\n   command: x\n")
    with pytest.raises(TargetError, match=r"\(line 3, column 4\)"):
        load(path)


def test_a_discovered_file_without_servers_is_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "settings.json", '{"editor.fontSize": 14}')
    servers, config = load(path, allow_empty=True)
    assert servers == []
    assert config.kind == "client"


def test_an_empty_section_is_valid(tmp_path: Path) -> None:
    servers, _ = load(write(tmp_path, "mcp.json", '{"mcpServers": {}}'))
    assert servers == []


def test_a_name_defined_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    text = '{"servers": {"a": {"command": "x"}}, "mcp": {"servers": {"a": {"command": "y"}}}}'
    with pytest.raises(TargetError, match=r"server 'a' is already defined at servers\.a"):
        load(write(tmp_path, "settings.json", text))


def test_strip_jsonc_keeps_positions() -> None:
    text = '{ // note\n  "a": "x // y /* z */", /* gone\n */ "b": [1, 2,],\n}'
    cleaned = strip_jsonc(text)
    assert len(cleaned) == len(text)
    assert cleaned.count("\n") == text.count("\n")
    assert json.loads(cleaned) == {"a": "x // y /* z */", "b": [1, 2]}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('ab/*,"\\ }]\n')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_strip_jsonc_leaves_plain_json_unchanged(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=2)):
        assert strip_jsonc(text) == text


@given(st.dictionaries(st.text(alphabet=st.sampled_from('ab/*"\\ :{'), min_size=1, max_size=6),
                       st.integers(), min_size=1, max_size=5))
def test_json_key_lines_finds_every_key_of_an_indented_document(value: dict[str, int]) -> None:
    text = json.dumps({"outer": value}, indent=2)
    lines = json_key_lines(text)
    assert lines[("outer",)] == 2
    for index, key in enumerate(value):
        assert lines[("outer", key)] == 3 + index
