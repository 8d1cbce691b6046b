"""``gatehold scan``: audit MCP servers and client configurations; text, JSON or SARIF; CI exit codes.

    gatehold scan TARGET... [--tools-json FILE]... [--format text|json|sarif] [--output FILE]
                  [--fail-on SEVERITY|none] [--baseline FILE] [--write-baseline FILE --reason TEXT]
                  [--lockfile FILE] [--update-lockfile] [--discover] [--yes] [--offline]
                  [--bearer-env NAME] [--name NAME] [--timeout SECONDS] [-- COMMAND ARGS...]

A TARGET is a configuration file (an MCP client's, or a ``gatehold.yaml``: told apart by its keys)
or an ``http(s)://`` URL; ``--tools-json`` names a saved listing; everything after ``--`` is a stdio
server's command; ``--discover`` adds the client configurations found in their usual places.

Consent: the servers a configuration declares are checked statically. A stdio server declared in
a file is started (to list its tools) only with ``--yes`` or when the lockfile pins exactly its
command; otherwise ``would start <server>: <command>`` is printed to stderr and it is not run. The
command after ``--`` was typed by the user and runs without ``--yes``. A remote server a
configuration declares is contacted (without any credential: ``--bearer-env`` goes only to the URLs
named on the command line). ``--offline`` starts and contacts nothing; a live target named on the
command line is then an error.

Started servers get a minimal environment (see :mod:`gatehold.scan.targets.live`): a configured
``env`` of a client configuration is passed as written; a ``gatehold.yaml`` upstream's secrets are
references the scanner does not resolve, so it starts without them. A relative ``cwd`` is taken
from the configuration file's folder.

Exit codes: 0 nothing at or above ``--fail-on`` (default ``high``; ``none`` never fails on findings),
1 a finding at or above it, 2 a usage error or a target or check that could not be scanned (the
other targets are still scanned and reported). ``--write-baseline`` exits 0 once the baseline is
written (2 when the scan was incomplete; the baseline is written all the same).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

import click

from gatehold.scan.checks import transport
from gatehold.scan.model import SEVERITIES, ConfigText, Lockfile, ScanInput, ServerSnapshot, Severity
from gatehold.scan.targets import client_config, gatehold_config, live, tools_json
from gatehold.scan.targets.discover import discover as discover_configs
from gatehold.scan.targets.errors import TargetError

if TYPE_CHECKING:
    from gatehold.scan.baseline import Baseline
    from gatehold.scan.report.render import Format

COMMAND_KEY = "gatehold.scan.command"
COMMAND_LINE_AGENT = "command-line"
URL = re.compile(r"^https?://", re.IGNORECASE)
FAIL_ON: dict[str, Severity | None] = {**{severity: severity for severity in SEVERITIES}, "none": None}
FORMATS: dict[str, Format] = {"text": "text", "json": "json", "sarif": "sarif"}


class ScanCommand(click.Command):
    """Splits the arguments at the first ``--``: what follows is the stdio server's command, verbatim."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[COMMAND_KEY] = tuple(args[at + 1:])
            args = args[:at]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND ARGS...]"]


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for, checked."""

    files: tuple[str, ...]
    urls: tuple[str, ...]
    tools_json: tuple[str, ...]
    command: tuple[str, ...]
    discover: bool
    yes: bool
    offline: bool
    bearer: str | None
    name: str | None
    timeout: float
    lock: Lockfile | None


@dataclass
class Gathered:
    """Everything the targets produced, in the order the user named them."""

    targets: list[str] = field(default_factory=list)
    servers: list[ServerSnapshot] = field(default_factory=list)
    configs: list[ConfigText] = field(default_factory=list)
    agents: list[tuple[str, tuple[str | None, ...]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_started: int = 0
    command_line: list[ServerSnapshot] = field(default_factory=list)

    def error(self, message: str) -> None:
        message = "".join(ch if ch.isprintable() else "?" for ch in message)  # a config may carry escapes
        self.errors.append(message)
        click.echo(f"error: {message}", err=True)


@click.command("scan", cls=ScanCommand)
@click.argument("targets", nargs=-1)
@click.option("--tools-json", "tools_json_files", multiple=True, metavar="FILE",
              help="a saved tools/list result (repeatable)")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text", show_default=True)
@click.option("--output", metavar="FILE", help="write the report here instead of stdout")
@click.option("--fail-on", type=click.Choice(list(FAIL_ON)), default="high", show_default=True,
              help="exit 1 when a finding is at least this severe (none: never)")
@click.option("--baseline", "baseline_path", metavar="FILE", help="accepted findings to suppress")
@click.option("--write-baseline", metavar="FILE", help="accept every finding of this scan into FILE (needs --reason)")
@click.option("--reason", metavar="TEXT", help="why the findings written by --write-baseline are accepted")
@click.option("--lockfile", "lockfile_path", metavar="FILE", help="pinned commands, URLs and definitions")
@click.option("--update-lockfile", is_flag=True, help="pin every named server this scan listed into --lockfile")
@click.option("--discover", is_flag=True, help="also scan the MCP client configurations found on this machine")
@click.option("--yes", is_flag=True, help="start the stdio servers that configuration files declare")
@click.option("--offline", is_flag=True, help="start and contact nothing: static checks only")
@click.option("--bearer-env", metavar="NAME", help="environment variable holding a bearer token for URL targets")
@click.option("--name", metavar="NAME", help="the server name of the one URL target or the command after --")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
              help="seconds allowed per live server")
@click.pass_context
def scan(ctx: click.Context, targets: tuple[str, ...], tools_json_files: tuple[str, ...], fmt: str,
         output: str | None, fail_on: str, baseline_path: str | None, write_baseline: str | None,
         reason: str | None, lockfile_path: str | None, update_lockfile: bool, discover: bool, yes: bool,
         offline: bool, bearer_env: str | None, name: str | None, timeout: float) -> None:
    """Scan MCP servers and client configurations: poisoning, secrets, over-broad tools, missing auth, drift.

    TARGETS are configuration files (an MCP client's, or a gatehold.yaml) and http(s):// URLs; a stdio
    server's command goes after --. Servers a configuration file declares are started only with --yes
    (or when the lockfile pins their exact command); remote ones are contacted unless --offline.

    Exit codes: 0 nothing at or above --fail-on, 1 a finding at or above it, 2 a usage error or a
    target or check that could not be scanned.
    """
    from gatehold.scan import baseline as baselines
    from gatehold.scan import lockfile as lockfiles
    from gatehold.scan import runner
    from gatehold.scan.checks import ALL
    from gatehold.scan.report.render import render

    command: tuple[str, ...] = ctx.meta.get(COMMAND_KEY, ())
    if COMMAND_KEY in ctx.meta and not command:
        raise click.UsageError("nothing follows --: give the stdio server's command after it")
    if not (targets or tools_json_files or command or discover):
        raise click.UsageError("nothing to scan: name a configuration file, an http(s):// URL, --tools-json FILE, "
                               "--discover, or a server command after --")
    if write_baseline and not (reason and reason.strip()):
        raise click.UsageError("--write-baseline needs --reason TEXT: why the findings are accepted")
    if reason is not None and not write_baseline:
        raise click.UsageError("--reason goes with --write-baseline FILE")
    if update_lockfile and not lockfile_path:
        raise click.UsageError("--update-lockfile needs --lockfile FILE")
    urls = tuple(t for t in targets if URL.match(t))
    if name is not None and len(urls) + (1 if command else 0) != 1:
        raise click.UsageError("--name names one server: use it with exactly one URL target or a command after --")
    bearer = None
    if bearer_env is not None:
        bearer = os.environ.get(bearer_env)
        if not bearer:
            raise click.UsageError(f"--bearer-env {bearer_env}: the variable is not set or is empty")

    lock = None
    if lockfile_path is not None and not (update_lockfile and not Path(lockfile_path).exists()):
        try:
            lock = lockfiles.load(lockfile_path)
        except lockfiles.LockfileError as exc:
            _fatal(str(exc))
    accepted: Baseline | None = None
    if baseline_path is not None:
        try:
            accepted = baselines.load(baseline_path)
        except baselines.BaselineError as exc:
            _fatal(str(exc))

    options = Options(files=tuple(t for t in targets if not URL.match(t)), urls=urls, tools_json=tools_json_files,
                      command=command, discover=discover, yes=yes, offline=offline, bearer=bearer, name=name,
                      timeout=timeout, lock=lock)
    gathered = gather(options)
    agents = list(gathered.agents)
    if gathered.command_line:
        agents.append((COMMAND_LINE_AGENT, tuple(s.name for s in gathered.command_line)))
    scan_input = ScanInput(servers=tuple(gathered.servers), configs=tuple(gathered.configs), lockfile=lock,
                           agents=tuple(agents))
    report = runner.run(scan_input, ALL, targets=gathered.targets, errors=gathered.errors, baseline=accepted)

    problems: list[str] = []
    if write_baseline:
        findings = [*report.findings, *(s.finding for s in report.suppressed)]
        try:
            baselines.write(write_baseline, findings, reason or "", keep=accepted)
            click.echo(f"baseline: accepted {len(findings)} finding(s) in {write_baseline}", err=True)
        except (baselines.BaselineError, OSError) as exc:
            problems.append(f"cannot write the baseline: {exc}")
    if update_lockfile and lockfile_path is not None:
        try:
            lockfiles.write(lockfile_path, gathered.servers, keep=lock)
            pinned = sum(1 for s in gathered.servers if s.name)
            click.echo(f"lockfile: pinned {pinned} named server(s) in {lockfile_path}", err=True)
        except (lockfiles.LockfileError, OSError) as exc:
            problems.append(f"cannot write the lockfile: {exc}")

    to_terminal = output is None and sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if to_terminal else 100
    text = render(report, FORMATS[fmt], color=to_terminal, width=width)
    if output is not None:
        try:
            Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            problems.append(f"cannot write the report to {output}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=not text.endswith("\n"))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(2)
    if write_baseline:
        sys.exit(2 if report.errors else 0)
    sys.exit(runner.exit_code(report, FAIL_ON[fail_on]))


def _fatal(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


# -- gathering the targets ----------------------------------------------------------------------


def gather(options: Options) -> Gathered:
    """Load, start or contact every target; each failure is one error, the rest carry on."""
    gathered = Gathered()
    seen: set[Path] = set()
    for path in options.files:
        _guarded(gathered, path, partial(_config, gathered, options, path, discovered=False, seen=seen))
    for url in options.urls:
        _guarded(gathered, url, partial(_url, gathered, options, url))
    for path in options.tools_json:
        _guarded(gathered, path, partial(_saved, gathered, path))
    if options.discover:
        found = discover_configs(Path.home(), Path.cwd(), sys.platform)
        if not found:
            message = "--discover found no MCP client configuration in the usual places"
            if options.files or options.urls or options.tools_json or options.command:
                click.echo(f"note: {message}", err=True)
            else:
                gathered.error(message)
        for candidate in found:
            _guarded(gathered, str(candidate),
                     partial(_config, gathered, options, str(candidate), discovered=True, seen=seen))
    if options.command:
        shown = live.shown_command(options.command)
        _guarded(gathered, shown, partial(_command, gathered, options, shown))
    if gathered.not_started:
        click.echo(f"not started: {gathered.not_started} server(s) above; pass --yes to start them and list their "
                   "tools (add --lockfile FILE --update-lockfile to pin them, so that later scans start them "
                   "without asking)", err=True)
    return gathered


def _guarded(gathered: Gathered, target: str, work: Callable[[], None]) -> None:
    try:
        work()
    except TargetError as exc:
        gathered.error(exc.message)
    except Exception as exc:  # noqa: BLE001 - fail closed: a loader bug becomes this target's error (exit 2), not a crash
        gathered.error(f"{target}: could not be scanned ({type(exc).__name__}: {live.shown(str(exc))})")


def _config(gathered: Gathered, options: Options, path: str, *, discovered: bool, seen: set[Path]) -> None:
    real = Path(path).resolve()
    if real in seen:
        return
    seen.add(real)
    gathered.targets.append(path)
    kind: Literal["client", "gatehold"] = "client" if discovered else gatehold_config.detect_kind(path)
    if kind == "gatehold":
        servers, text = gatehold_config.load(path)
    else:
        servers, text = client_config.load(path, allow_empty=discovered)
    gathered.configs.append(text)
    reached = [_declared(gathered, options, server, kind, real.parent) for server in servers]
    gathered.servers.extend(reached)
    gathered.agents.append((path, tuple(s.name for s in reached)))


def _declared(gathered: Gathered, options: Options, server: ServerSnapshot,
              kind: Literal["client", "gatehold"], folder: Path) -> ServerSnapshot:
    """``server`` with its live listing merged in, when it may be started or contacted."""
    from gatehold.scan.lockfile import is_pinned_command

    launch = server.launch
    if launch is None or options.offline:
        return server
    who = live.shown(server.name or "")
    label = f"{who} ({server.file})"
    try:
        if launch.command:
            shown = live.shown_command(launch.command)
            pinned = is_pinned_command(options.lock, server.name, launch.command)
            if not (options.yes or pinned):
                click.echo(f"would start {who}: {shown}", err=True)
                gathered.not_started += 1
                return server
            click.echo(f"starting {who}: {shown}{'' if options.yes else ' (pinned in the lockfile)'}", err=True)
            env = {} if kind == "gatehold" else launch.env
            cwd = str(folder / Path(launch.cwd).expanduser()) if launch.cwd else None
            listed = asyncio.run(live.list_stdio(server.name, launch.command, env, cwd, options.timeout))
        elif launch.url:
            click.echo(f"contacting {who}: {transport.shown_url(launch.url, query=True)}", err=True)
            listed = asyncio.run(live.list_http(server.name, launch.url, bearer=None, timeout=options.timeout))
        else:
            return server
    except TargetError as exc:
        gathered.error(f"{label}: {exc.message}")
        return server
    for message in listed.errors:
        gathered.error(f"{label}: {message}")
    found = listed.snapshot
    return replace(server, tools=found.tools, prompts=found.prompts, resources=found.resources,
                   templates=found.templates, listed=found.listed, transport=found.transport)


def _url(gathered: Gathered, options: Options, url: str) -> None:
    gathered.targets.append(url)
    if options.offline:
        gathered.error(f"{transport.shown_url(url, query=True)}: not contacted (--offline)")
        return
    # A URL given without --name is named by itself (scheme, host, port and path; never credentials or
    # the query), so its findings, SARIF names and lockfile entry say which server they are about.
    name = options.name if options.name is not None else transport.shown_url(url)
    listed = asyncio.run(live.list_http(name, url, bearer=options.bearer, timeout=options.timeout))
    for message in listed.errors:
        gathered.error(message)
    gathered.servers.append(listed.snapshot)
    gathered.command_line.append(listed.snapshot)


def _saved(gathered: Gathered, path: str) -> None:
    gathered.targets.append(path)
    servers = tools_json.load(path)
    gathered.servers.extend(servers)
    gathered.command_line.extend(servers)


def _command(gathered: Gathered, options: Options, shown: str) -> None:
    gathered.targets.append(shown)
    if options.offline:
        gathered.error(f"{shown}: not started (--offline)")
        return
    listed = asyncio.run(live.list_stdio(options.name, options.command, {}, None, options.timeout))
    for message in listed.errors:
        gathered.error(message)
    gathered.servers.append(listed.snapshot)
    gathered.command_line.append(listed.snapshot)
