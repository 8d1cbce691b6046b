"""The command line. Its commands, options, output prefixes and exit codes are a contract:
operators' scripts depend on them (see the README).

    gatehold serve --config FILE [--port N]      run a configured gateway (HTTP)
    gatehold stdio --config FILE                 serve one local client over stdio
    gatehold demo [--port N]                     the bundled demo, in the foreground
    gatehold check FILE                          0 valid, 2 invalid (errors on stderr)
    gatehold audit verify [--config F | --db P | --jsonl P]   0 intact, 1 not
    gatehold audit tail [--config F | --db P | --jsonl P] [-n N]
    gatehold key new ID                          a new API key and the hash for the config
    gatehold revoke --config F KIND VALUE        revoke a credential (jti, sub, client, apikey, cert, principal)
    gatehold revoke --config F --list | --undo KIND VALUE
    gatehold schema                              the configuration's JSON Schema
    gatehold approvals list|show ID|approve ID|deny ID --config F   (operator key in GATEHOLD_OPERATOR_KEY)
    gatehold kill|revive --config F (--principal P | --tool T | --server S | --all)
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import click
import orjson

from gatehold.errors import ConfigError


def _setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load(path: str) -> Any:
    from gatehold.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="gatehold")
def main() -> None:
    """Gatehold: a fail-closed security gateway for MCP tool servers."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a configuration file: exit 0 when valid, 2 when not."""
    loaded = _load(file)
    config = loaded.config
    click.echo(f"ok: {file}: {len(config.upstreams)} upstream(s), {len(config.roles)} role(s), "
               f"policy version {loaded.policy_version}")


@main.command()
def schema() -> None:
    """Print the JSON Schema of the configuration format."""
    from gatehold.config import config_json_schema

    click.echo(json.dumps(config_json_schema(), indent=2, sort_keys=True))


@main.group()
def key() -> None:
    """API keys."""


@key.command("new")
@click.argument("key_id")
def key_new(key_id: str) -> None:
    """Print a new API key (give it to the client) and its hash (put it in the config)."""
    from gatehold.auth.apikeys import new_api_key
    from gatehold.config import NAME

    if not NAME.match(key_id):
        raise click.BadParameter("use letters, digits, '_' and '-'", param_hint="KEY_ID")
    value, hashed = new_api_key(key_id)
    click.echo(f"API key: {value}")
    click.echo(f'config:  - {{id: {key_id}, hash: "{hashed}", principal: {key_id}, roles: []}}')


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--list", "list_all", is_flag=True, help="list the revocations in force")
@click.option("--undo", is_flag=True, help="lift the revocation of KIND VALUE")
@click.option("--reason", default="", help="why (recorded with the revocation)")
@click.option("--for", "ttl", type=float, default=None, help="seconds until the revocation lapses (default never)")
@click.argument("kind", required=False)
@click.argument("value", required=False)
def revoke(config_path: str, list_all: bool, undo: bool, reason: str, ttl: float | None,
           kind: str | None, value: str | None) -> None:
    """Revoke a credential: effective on its next request, open sessions included.

    KIND is jti, sub, client, apikey, cert or principal. Exit 0 done, 1 store unavailable, 2 usage.
    """
    import getpass
    import time

    from gatehold.errors import GateholdError
    from gatehold.state.revocations import CREDENTIAL_KINDS, Revocation, open_revocations

    loaded = _load(config_path)
    if not list_all and (kind not in CREDENTIAL_KINDS or not value):
        raise click.UsageError(f"give KIND VALUE, KIND one of {', '.join(CREDENTIAL_KINDS)} (or --list)")
    kind, value = kind or "", value or ""

    async def run() -> None:
        store = open_revocations(loaded.config.state, loaded.path(loaded.config.auth.revocations))
        try:
            if list_all:
                for item in await store.list():
                    until = "" if item.expires_at is None else f" until {_iso(item.expires_at)}"
                    click.echo(f"{item.kind} {item.value} since {_iso(item.created_at)}{until} "
                               f"by {item.created_by} {item.reason}".rstrip())
            elif undo:
                found = await store.restore(kind, value)
                click.echo(f"restored: {kind} {value}" if found else f"not revoked: {kind} {value}")
            else:
                now = time.time()
                await store.revoke(Revocation(kind, value, reason, now, getpass.getuser(),
                                              None if ttl is None else now + ttl))
                click.echo(f"revoked: {kind} {value}")
        finally:
            await store.aclose()

    try:
        asyncio.run(run())
    except GateholdError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)


def _iso(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio only turns Nagle off (TCP_NODELAY) on sockets that say so,
    # and without it every response waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # listening before the URL is printed: early clients wait in the backlog
    return sock


def _run_http(loaded: Any, port: int | None, on_ready: Callable[[int], None],
              on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
    import uvicorn

    from gatehold.front.http import build_app
    from gatehold.front.tls import ssl_options, uvicorn_protocol_kwargs
    from gatehold.runtime import build_authenticator, build_gateway

    settings = loaded.config.gateway
    try:
        tls = ssl_options(settings.tls, loaded.path) if settings.tls is not None else {}
        gateway = build_gateway(loaded)
        authenticator = build_authenticator(loaded, gateway)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    if on_record is not None:
        gateway.auditor.log.subscribe(on_record)
    sock = _bind(settings.host, settings.port if port is None else port)
    actual = sock.getsockname()[1]
    if loaded.config.approvals.public_url is None:
        # Approval links name the port actually bound (--port may have changed it).
        scheme = "https" if settings.tls is not None else "http"
        gateway.approvals.base_url = f"{scheme}://{_url_host(settings.host)}:{actual}"

    async def startup() -> None:
        await gateway.start()
        on_ready(actual)

    async def shutdown() -> None:
        await gateway.stop()
        gateway.auditor.log.close()

    app = build_app(gateway, authenticator, loaded.config, on_startup=[startup], on_shutdown=[shutdown])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=5, **tls, **uvicorn_protocol_kwargs()))
    server.run(sockets=[sock])


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--port", type=int, default=None, help="override gateway.listen's port (0: any free port)")
@click.option("--log-level", default="warning", show_default=True)
def serve(config_path: str, port: int | None, log_level: str) -> None:
    """Run a configured gateway over Streamable HTTP."""
    _setup_logging(log_level)
    loaded = _load(config_path)
    scheme = "https" if loaded.config.gateway.tls is not None else "http"
    if not loaded.config.gateway.is_loopback and scheme == "http":
        click.echo(f"warning: listening on {loaded.config.gateway.host}, not loopback, without TLS: "
                   "set gateway.tls or terminate TLS in front", err=True)

    def ready(actual: int) -> None:
        click.echo(f"URL: {scheme}://{_url_host(loaded.config.gateway.host)}:{actual}/mcp", nl=True)
        sys.stdout.flush()

    _run_http(loaded, port, ready)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--log-level", default="warning", show_default=True)
def stdio(config_path: str, log_level: str) -> None:
    """Serve one local MCP client over stdin/stdout (the principal is auth.stdio's)."""
    _setup_logging(log_level)
    loaded = _load(config_path)
    from gatehold.front.stdio import StdioFront, open_stdin
    from gatehold.runtime import build_gateway

    async def run() -> None:
        gateway = build_gateway(loaded)
        try:
            front = StdioFront(gateway)
            await gateway.start()
            await front.serve(await open_stdin())
        finally:
            await gateway.stop()
            gateway.auditor.log.close()

    try:
        asyncio.run(run())
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)


def _decision_line(record: dict[str, Any]) -> None:
    if record.get("kind") == "lifecycle":
        return
    target = record.get("tool") or ""
    why = record.get("code") or record.get("rule_id") or record.get("reason") or ""
    click.echo(f"{record.get('time', '')[11:23]} {record.get('decision', '?').upper():5} "
               f"{record.get('method') or '-'} {target} principal={record.get('principal') or '-'} {why}".rstrip())
    sys.stdout.flush()


@main.command()
@click.option("--port", type=int, default=8765, show_default=True, help="0 picks any free port")
@click.option("--log-level", default="warning", show_default=True)
def demo(port: int, log_level: str) -> None:
    """Run the gateway in front of the bundled demo server, with the bundled policy."""
    from gatehold.auth.apikeys import new_api_key
    from gatehold.config import parse_config

    _setup_logging(log_level)
    workdir = Path(tempfile.mkdtemp(prefix="gatehold-demo-"))
    root = workdir / "files"
    (root / "out").mkdir(parents=True)
    (root / "README.txt").write_text("Welcome to the Gatehold demo. This file is readable.\n", encoding="utf-8")
    api_key, hashed = new_api_key("demo")
    template = resources.files("gatehold.demo").joinpath("demo.yaml").read_text(encoding="utf-8")
    text = (template.replace("HASH", hashed).replace("PYTHON", json.dumps(sys.executable))
            .replace("ROOT", json.dumps(str(root))[1:-1]))
    import yaml

    loaded = parse_config(yaml.safe_load(text), base_dir=workdir)

    def ready(actual: int) -> None:
        url = f"http://127.0.0.1:{actual}/mcp"
        click.echo("Gatehold demo: an agent-facing MCP endpoint in front of a small file/message server.")
        click.echo(f"URL: {url}")
        click.echo(f"API key: {api_key}")
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "demo.read_file", "arguments": {"path": "README.txt"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}}).decode()
        click.echo("Try: curl -s " + url + f" -H 'Authorization: Bearer {api_key}' "
                   "-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' "
                   "-H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' "
                   f"-H 'Mcp-Name: demo.read_file' -d '{body}'")
        click.echo(f"Files: {root} (reads allowed here, writes under out/); audit: {workdir}")
        click.echo("Decisions:")
        sys.stdout.flush()

    try:
        _run_http(loaded, port, ready, on_record=_decision_line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@main.group()
def audit() -> None:
    """The audit trail."""


def _audit_target(config_path: str | None, db: str | None, jsonl: str | None) -> list[tuple[str, Path]]:
    targets: list[tuple[str, Path]] = []
    if db:
        targets.append(("sqlite", Path(db)))
    if jsonl:
        targets.append(("jsonl", Path(jsonl)))
    if config_path:
        loaded = _load(config_path)
        if loaded.config.audit.sqlite:
            targets.append(("sqlite", loaded.path(loaded.config.audit.sqlite)))
        if loaded.config.audit.jsonl:
            targets.append(("jsonl", loaded.path(loaded.config.audit.jsonl)))
    if not targets:
        raise click.UsageError("name the audit store: --config FILE, --db PATH or --jsonl PATH")
    return targets


@audit.command("verify")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--db", type=click.Path(dir_okay=False))
@click.option("--jsonl", type=click.Path(dir_okay=False))
def audit_verify(config_path: str | None, db: str | None, jsonl: str | None) -> None:
    """Check the hash chain: exit 0 when intact, 1 when not (naming the first bad record)."""
    from gatehold.audit.verify import verify_jsonl, verify_sqlite

    intact = True
    for kind, path in _audit_target(config_path, db, jsonl):
        if not path.exists():
            click.echo(f"{path}: missing", err=True)
            intact = False
            continue
        result = verify_sqlite(path) if kind == "sqlite" else verify_jsonl(path)
        if result.ok:
            click.echo(f"{path}: intact, {result.count} record(s)")
        else:
            intact = False
            click.echo(f"{path}: NOT intact: {result.problem}")
    sys.exit(0 if intact else 1)


@audit.command("tail")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--db", type=click.Path(dir_okay=False))
@click.option("--jsonl", type=click.Path(dir_okay=False))
@click.option("-n", "count", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON record per line")
def audit_tail(config_path: str | None, db: str | None, jsonl: str | None, count: int, as_json: bool) -> None:
    """Show the most recent audit records."""
    from gatehold.audit.verify import tail

    _kind, path = _audit_target(config_path, db, jsonl)[0]
    for record in tail(path, count):
        if as_json:
            click.echo(orjson.dumps(record).decode())
        else:
            _decision_line(record)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--db", type=click.Path(dir_okay=False))
@click.option("--jsonl", type=click.Path(dir_okay=False))
@click.argument("correlation_id")
def explain(config_path: str | None, db: str | None, jsonl: str | None, correlation_id: str) -> None:
    """Why a call was decided as it was, with the earlier calls that tainted its session.

    Exits 0 when the call is in the audit store, 1 when it is not.
    """
    from gatehold.audit.explain import explain as explain_call

    _kind, path = _audit_target(config_path, db, jsonl)[0]
    if not path.exists():
        click.echo(f"{path}: missing", err=True)
        sys.exit(1)
    lines = explain_call(path, correlation_id)
    if not lines:
        click.echo(f"no record of call {correlation_id}", err=True)
        sys.exit(1)
    for line in lines:
        click.echo(line)


def _register_operator_commands() -> None:
    from gatehold.cli_ops import approvals, kill, revive
    from gatehold.scan.command import scan

    for command in (approvals, kill, revive, scan):
        main.add_command(command)


_register_operator_commands()
