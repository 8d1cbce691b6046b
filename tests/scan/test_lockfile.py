from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gatehold.output.screen import definition_digest
from gatehold.scan import lockfile
from gatehold.scan.lockfile import LockfileError
from gatehold.scan.model import Launch, Lockfile, PinnedServer, ServerSnapshot, TransportProbe

READ_FILE = {"name": "read_file", "description": "Read a file", "inputSchema": {"type": "object"}}
SUMMARY = {"name": "summary", "description": "Summarise"}
RESOURCE = {"uri": "file:///a", "name": "a"}
TEMPLATE = {"uriTemplate": "file:///{path}", "name": "files"}

FILES = ServerSnapshot(name="files", source="client-config", listed=True, tools=(READ_FILE,), prompts=(SUMMARY,),
                       resources=(RESOURCE,), templates=(TEMPLATE,),
                       launch=Launch(command=("npx", "-y", "@x/server@1.2.3"), env={"API_KEY": "not pinned"}))
REMOTE = ServerSnapshot(name="crm", source="http", listed=True, tools=({"name": "get_invoice"},),
                        transport=TransportProbe(url="https://crm.example.com/mcp", tls=True, loopback=False))


def sha256(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def test_pin_document() -> None:
    document = lockfile.pin([REMOTE, FILES, ServerSnapshot(name=None, source="tools-json", listed=True,
                                                           tools=({"name": "anonymous"},))])
    assert document == {"version": 1, "servers": {
        "crm": {"command": None, "url": "https://crm.example.com/mcp",
                "definitions": {"tool:get_invoice": sha256({"name": "get_invoice"})}},
        "files": {"command": ["npx", "-y", "@x/server@1.2.3"], "url": None, "definitions": {
            "tool:read_file": sha256(READ_FILE), "prompt:summary": sha256(SUMMARY),
            "resource:file:///a": sha256(RESOURCE), "template:file:///{path}": sha256(TEMPLATE)}},
    }}
    # the same digest the gateway pins
    assert document["servers"]["files"]["definitions"]["tool:read_file"] == definition_digest(READ_FILE)
    assert list(document["servers"]) == ["crm", "files"]


def test_launch_url_wins_over_the_probe() -> None:
    server = ServerSnapshot(name="r", source="client-config", listed=True, tools=(),
                            launch=Launch(url="https://a.example.com/mcp"),
                            transport=TransportProbe(url="https://b.example.com/mcp", tls=True, loopback=False))
    assert lockfile.pin([server])["servers"]["r"] == {"command": None, "url": "https://a.example.com/mcp",
                                                      "definitions": {}}


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "gatehold.lock.json"
    lockfile.write(path, [FILES, REMOTE])
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    raw = json.loads(text)
    assert list(raw) == ["servers", "version"]  # keys sorted
    assert list(raw["servers"]["files"]["definitions"]) == sorted(raw["servers"]["files"]["definitions"])
    loaded = lockfile.load(path)
    assert loaded.path == str(path)
    assert loaded.servers["files"] == PinnedServer(command=("npx", "-y", "@x/server@1.2.3"), url=None,
                                                   definitions=lockfile.definitions_of(FILES))
    assert loaded.servers["crm"].url == "https://crm.example.com/mcp"
    assert not list(tmp_path.glob(".gatehold.lock.json.*"))


def test_keep_preserves_servers_not_in_this_scan(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    lockfile.write(path, [FILES, REMOTE])
    existing = lockfile.load(path)
    changed = ServerSnapshot(name="files", source="client-config", listed=True, tools=({"name": "write_file"},),
                             launch=Launch(command=("npx", "-y", "@x/server@2.0.0")))
    lockfile.write(path, [changed], keep=existing)
    again = lockfile.load(path)
    assert again.servers["crm"] == existing.servers["crm"]
    assert again.servers["files"].command == ("npx", "-y", "@x/server@2.0.0")
    assert set(again.servers["files"].definitions) == {"tool:write_file"}
    # without keep, only the scanned servers are written
    lockfile.write(path, [changed])
    assert set(lockfile.load(path).servers) == {"files"}


def test_a_server_the_scan_did_not_list_is_never_pinned_nor_repinned() -> None:
    # Not started (no --yes), not contacted (--offline) or failed: its new command is not pinned, since a
    # pinned command is started without asking next time; its old entry stays exactly as it was.
    existing = Lockfile(path="l", servers={"files": PinnedServer(command=("old",), url=None,
                                                                  definitions={"tool:a": definition_digest({})})})
    unlisted = ServerSnapshot(name="files", source="client-config", listed=False, launch=Launch(command=("new",)),
                              tools=({"name": "ignored"},))
    assert lockfile.pin([unlisted], keep=existing)["servers"]["files"] == {
        "command": ["old"], "url": None, "definitions": {"tool:a": definition_digest({})}}
    assert lockfile.pin([unlisted])["servers"] == {}


def test_conflicts_are_refused() -> None:
    twin = ServerSnapshot(name="files", source="client-config", listed=True, launch=Launch(command=("other",)))
    with pytest.raises(LockfileError, match="two servers named 'files' differ"):
        lockfile.pin([FILES, twin])
    assert lockfile.pin([FILES, FILES])["servers"]["files"]["command"] == list(FILES.launch.command)  # type: ignore[union-attr]
    ambiguous = ServerSnapshot(name="s", source="stdio", listed=True, tools=({"name": "a"}, {"name": "a", "x": 1}))
    with pytest.raises(LockfileError, match="two different definitions as 'tool:a'"):
        lockfile.pin([ambiguous])


def test_a_command_or_url_carrying_a_secret_is_not_written(tmp_path: Path) -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    leaky = ServerSnapshot(name="gh", source="client-config", listed=True,
                           launch=Launch(command=("gh-mcp", "--token", token)))
    with pytest.raises(LockfileError, match="'gh': argument 2 looks like it carries a secret") as caught:
        lockfile.write(tmp_path / "lock.json", [leaky])
    assert token not in str(caught.value)
    assert not (tmp_path / "lock.json").exists()
    url = ServerSnapshot(name="db", source="client-config", listed=True,
                         launch=Launch(url="https://user:hunter2pass@h.example/mcp"))
    with pytest.raises(LockfileError, match="'db': its URL looks like it carries a secret"):
        lockfile.pin([url])


def test_is_pinned_command(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    lockfile.write(path, [FILES, REMOTE])
    lock = lockfile.load(path)
    assert lockfile.is_pinned_command(lock, "files", ["npx", "-y", "@x/server@1.2.3"])
    assert lockfile.is_pinned_command(lock, "files", ("npx", "-y", "@x/server@1.2.3"))
    assert not lockfile.is_pinned_command(lock, "files", ["npx", "-y", "@x/server@1.2.4"])
    assert not lockfile.is_pinned_command(lock, "files", ["npx", "-y", "@x/server@1.2.3", "--extra"])
    assert not lockfile.is_pinned_command(lock, "crm", ["npx"])  # pinned by URL, no command
    assert not lockfile.is_pinned_command(lock, "unknown", ["npx", "-y", "@x/server@1.2.3"])
    assert not lockfile.is_pinned_command(lock, None, ["npx", "-y", "@x/server@1.2.3"])
    assert not lockfile.is_pinned_command(None, "files", ["npx", "-y", "@x/server@1.2.3"])
    assert not lockfile.is_pinned_command(lock, "files", [])


DIGEST = "sha256:" + "0" * 64


def valid_document() -> dict[str, Any]:
    return {"version": 1, "servers": {"files": {"command": ["npx"], "url": None, "definitions": {"tool:a": DIGEST}}}}


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d.update(version=2), "unsupported version 2; expected 1"),
    (lambda d: d.update(version=True), "unsupported version True"),
    (lambda d: d.pop("version"), "unsupported version None"),
    (lambda d: d.update(extra=1), "unknown key(s) extra"),
    (lambda d: d.update(servers=[]), "'servers' must be an object"),
    (lambda d: d["servers"].update(files=[]), "servers.files: expected an object"),
    (lambda d: d["servers"].update({"": d["servers"]["files"]}), "a server name must not be empty"),
    (lambda d: d["servers"]["files"].update(env={}), "servers.files: unknown key(s) env"),
    (lambda d: d["servers"]["files"].pop("url"), "servers.files: missing key(s) url"),
    (lambda d: d["servers"]["files"].update(command="npx -y x"), "servers.files.command: expected null or a non-empty"),
    (lambda d: d["servers"]["files"].update(command=[]), "servers.files.command: expected null or a non-empty"),
    (lambda d: d["servers"]["files"].update(command=["npx", 3]), "servers.files.command"),
    (lambda d: d["servers"]["files"].update(url=5), "servers.files.url: expected null or a URL string"),
    (lambda d: d["servers"]["files"].update(definitions=[]), "servers.files.definitions: expected an object"),
    (lambda d: d["servers"]["files"]["definitions"].update({"widget:a": DIGEST}), "key 'widget:a' must start with"),
    (lambda d: d["servers"]["files"]["definitions"].update({"tool:a": "md5:00"}),
     "definitions['tool:a']: expected 'sha256:' and 64 hex digits, got 'md5:00'"),
])
def test_malformed_lockfiles_are_clear_errors(tmp_path: Path, edit: Any, expected: str) -> None:
    document = valid_document()
    edit(document)
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(LockfileError) as caught:
        lockfile.load(path)
    assert str(caught.value).startswith(f"lockfile {path}: ")
    assert expected in str(caught.value)


def test_unreadable_and_non_json_lockfiles(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(valid_document()), encoding="utf-8")
    assert lockfile.load(path).servers["files"].definitions == {"tool:a": DIGEST}
    with pytest.raises(LockfileError, match="cannot read: FileNotFoundError"):
        lockfile.load(tmp_path / "absent.json")
    path.write_text('{"version": 1, "servers": {', encoding="utf-8")
    with pytest.raises(LockfileError, match="not valid JSON"):
        lockfile.load(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(LockfileError, match="expected a JSON object with 'version' and 'servers'"):
        lockfile.load(path)
    path.write_bytes(b'{"version": 1, "servers": {"\xff": {}}}')
    with pytest.raises(LockfileError, match="not valid JSON"):
        lockfile.load(path)
