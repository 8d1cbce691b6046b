"""Operator commands: approvals and the kill switch, through the running gateway's admin API.

    gatehold approvals list|show ID|approve ID|deny ID --config F [--comment C] [--state S]
    gatehold kill   --config F (--principal P | --tool T | --server S | --all) [--reason R]
    gatehold revive --config F (--principal P | --tool T | --server S | --all)

The operator key comes from the GATEHOLD_OPERATOR_KEY environment variable (never a command-line
argument: those show in process lists). The gateway is found at ``--url``, else
``approvals.public_url``, else its listen address. Exit codes: 0 done, 1 refused or the gateway
unreachable (the message says which), 2 usage or configuration error.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import httpx
import orjson

from gatehold.config import load_config
from gatehold.errors import ConfigError

KEY_ENV = "GATEHOLD_OPERATOR_KEY"
_TIMEOUT = 10.0


def _base_url(config_path: str, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    from gatehold.gateway import default_base_url

    return (loaded.config.approvals.public_url or default_base_url(loaded.config)).rstrip("/")


def _call(method: str, base: str, path: str, ca: str | None, body: dict[str, Any] | None = None) -> Any:
    key = os.environ.get(KEY_ENV, "")
    if not key:
        click.echo(f"error: set {KEY_ENV} to an operator key (see `gatehold key new`)", err=True)
        sys.exit(2)
    try:
        with httpx.Client(timeout=_TIMEOUT, verify=ca or True, trust_env=False, follow_redirects=False) as client:
            response = client.request(method, base + path, headers={"authorization": f"Bearer {key}"},
                                      content=None if body is None else orjson.dumps(body))
    except httpx.HTTPError as exc:
        click.echo(f"error: cannot reach the gateway at {base}: {exc}", err=True)
        sys.exit(1)
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200:
        message = data.get("message") if isinstance(data, dict) else None
        click.echo(f"error: {response.status_code} {message or response.reason_phrase}", err=True)
        sys.exit(1)
    return data


_url = click.option("--url", default=None, help="the gateway's base URL (default: from the config)")
_config = click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
_ca = click.option("--ca", default=None, type=click.Path(dir_okay=False), help="CA bundle for an https gateway")


@click.command()
@_config
@_url
@_ca
@click.option("--comment", default="", help="recorded with the decision")
@click.option("--state", default=None, type=click.Choice(["pending", "approved", "denied", "expired", "used"]))
@click.argument("action", type=click.Choice(["list", "show", "approve", "deny"]))
@click.argument("approval_id", required=False)
def approvals(config_path: str, url: str | None, ca: str | None, comment: str, state: str | None, action: str,
              approval_id: str | None) -> None:
    """Pending approvals: list them, show one, approve or deny it (as the operator whose key is set)."""
    base = _base_url(config_path, url)
    if action == "list":
        data = _call("GET", base, "/admin/approvals" + (f"?state={state}" if state else ""), ca)
        for item in data["approvals"]:
            click.echo(f"{item['id']}  {item['state']:<8}  {item['principal']}  {item['tool']}  {item['reason']}")
        return
    if not approval_id:
        raise click.UsageError(f"`approvals {action}` needs an approval id")
    if action == "show":
        click.echo(orjson.dumps(_call("GET", base, f"/admin/approvals/{approval_id}", ca),
                                option=orjson.OPT_INDENT_2).decode())
        return
    decided = _call("POST", base, f"/admin/approvals/{approval_id}/{action}", ca, {"comment": comment})
    click.echo(f"{decided['state']}: {approval_id} ({decided['principal']} {decided['tool']})")


def _target(principal: str | None, tool: str | None, server: str | None, everything: bool) -> tuple[str, str]:
    given = [(k, v) for k, v in (("principal", principal), ("tool", tool), ("server", server)) if v]
    if everything:
        given.append(("all", "*"))
    if len(given) != 1:
        raise click.UsageError("give exactly one of --principal, --tool, --server, --all")
    return given[0]


_targets = [
    click.option("--principal", default=None), click.option("--tool", default=None, help="exposed tool name"),
    click.option("--server", default=None, help="upstream name"),
    click.option("--all", "everything", is_flag=True, help="every call through this gateway"),
]


def _with_targets(command: Any) -> Any:
    for option in reversed(_targets):
        command = option(command)
    return command


@click.command()
@_config
@_url
@_ca
@_with_targets
@click.option("--reason", default="", help="recorded with the kill")
def kill(config_path: str, url: str | None, ca: str | None, principal: str | None, tool: str | None,
         server: str | None, everything: bool, reason: str) -> None:
    """Stop a principal, a tool, a server or everything: new calls refused, in-flight calls cancelled."""
    kind, value = _target(principal, tool, server, everything)
    _call("POST", _base_url(config_path, url), "/admin/kill", ca, {"kind": kind, "value": value, "reason": reason})
    click.echo(f"killed: {kind} {value}")


@click.command()
@_config
@_url
@_ca
@_with_targets
def revive(config_path: str, url: str | None, ca: str | None, principal: str | None, tool: str | None,
           server: str | None, everything: bool) -> None:
    """Undo a kill."""
    kind, value = _target(principal, tool, server, everything)
    data = _call("POST", _base_url(config_path, url), "/admin/revive", ca, {"kind": kind, "value": value})
    click.echo(f"revived: {kind} {value}" if data["revived"] else f"not killed: {kind} {value}")
