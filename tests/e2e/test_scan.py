"""``gatehold scan`` end to end: the real command against real servers, read as a CI job reads it.

Every scan is ``python -m gatehold scan ...`` in a subprocess; its JSON (or SARIF) report is parsed
from stdout. The servers are real: the planted stdio server (``tests/servers/planted_server.py``),
a small HTTP MCP server with and without authentication, the gateway itself (``gatehold serve``), and
a third-party server from PyPI (``mcp-server-time``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.e2e.harness import config_data, key_pair
from tests.servers import planted_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PLANTED = REPO / "tests" / "servers" / "planted_server.py"
SARIF_SCHEMA = REPO / "tests" / "scan" / "report" / "sarif-schema-2.1.0.json"
SCAN_TIMEOUT = 180
START_TIMEOUT = 30.0
CYRILLIC_NAME = f"s{planted_server.CYRILLIC_E}arch_docs"
# A fake GitHub token of valid shape for the client configuration (built here, never a literal).
CONFIG_TOKEN = "ghp_" + "Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
SECRETS = (planted_server.FAKE_GITHUB_TOKEN, "Vx9-kR2m-Tq7w-Lp4z", CONFIG_TOKEN)

Located = tuple[str, str, str, str | None]  # (check, location kind, qualified name, field)

# What planted-a must show, scanned as server "office": each planted item at its tool and field.
PLANTED_A: frozenset[Located] = frozenset({
    ("tool-poisoning", "tool", "office.get_weather", "description"),
    ("tool-poisoning", "tool", "office.translate_text", "inputSchema.properties.text.description"),
    ("tool-poisoning", "prompt", "office.summarize_document", "description"),
    ("tool-poisoning", "resource", "office.notes://team/handbook", "description"),
    ("suspicious-parameter", "tool", "office.lookup_contact", "inputSchema.properties.system_prompt"),
    ("hidden-unicode", "tool", "office.format_date", "description"),
    ("hidden-unicode", "tool", f"office.{CYRILLIC_NAME}", "name"),
    ("metadata-secret", "tool", "office.deploy_status", "description"),
    ("metadata-secret", "tool", "office.deploy_status", "inputSchema.properties.database.default"),
    ("overbroad-tool", "tool", "office.run_shell", "inputSchema.properties.command"),
    ("overbroad-tool", "tool", "office.fetch_url", "inputSchema.properties.url"),
    ("overbroad-tool", "tool", "office.read_any_file", "inputSchema.properties.path"),
    ("unbounded-schema", "tool", "office.log_event", "inputSchema.additionalProperties"),
    ("unbounded-schema", "tool", "office.set_wallpaper", "inputSchema.properties.image_path"),
})
# What planted-b next to planted-a must show: the cross-server checks, on both sides where both are at fault.
CROSS_SERVER: frozenset[Located] = frozenset({
    ("tool-shadowing", "tool", "office.send_email", "name"),
    ("tool-shadowing", "tool", "helper.send_email", "name"),
    ("lookalike-name", "tool", "helper.read_inbox_v2", "name"),
    ("cross-tool-reference", "tool", "helper.mail_compliance", "description"),
    ("duplicate-description", "tool", "helper.notes_digest", "description"),
    ("duplicate-description", "tool", "office.read_notes", "description"),
})
TRANSPORT = frozenset({"remote-no-auth", "no-resource-metadata", "origin-not-validated"})


@dataclass(frozen=True)
class Scan:
    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @cached_property
    def report(self) -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"no JSON report from {self.shown}\nstdout: {self.stdout[:2000]}\n"
                                 f"stderr: {self.stderr[-2000:]}") from None
        return document

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.report["findings"])

    @property
    def checks(self) -> set[str]:
        return {f["check"] for f in self.findings}

    @property
    def located(self) -> set[Located]:
        return {(f["check"], f["location"]["kind"], f["location"]["qualified_name"], f["location"]["field"])
                for f in self.findings}

    def of(self, check: str) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["check"] == check]

    @property
    def shown(self) -> str:
        return shlex.join(self.argv[4:])

    def explain(self) -> str:
        """The findings and errors, one per line, for assertion messages."""
        lines = [f"{f['severity']:8} {f['check']:22} {f['location']['kind']}:{f['location']['qualified_name']}"
                 f" [{f['location']['field']}] {f['message']}" for f in self.findings]
        return "\n".join([f"$ gatehold scan {self.shown}  (exit {self.code})", *lines,
                          *(f"error: {e}" for e in self.report["errors"]), f"stderr: {self.stderr[-1500:]}"])


def scan(*args: str, env: dict[str, str] | None = None) -> Scan:
    argv = (sys.executable, "-m", "gatehold", "scan", *args)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SCAN_TIMEOUT, cwd=REPO, check=False,
                          env={**os.environ, **(env or {})})
    return Scan(argv, done.returncode, done.stdout, done.stderr)


def planted(variant: str) -> list[str]:
    return [sys.executable, str(PLANTED), variant]


def assert_no_secret(result: Scan) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout, f"a secret's value is in the report of {result.shown}"
        assert secret not in result.stderr, f"a secret's value is on stderr of {result.shown}"


# -- 1. one stdio server with every single-server problem ---------------------------------------------


def test_planted_server_shows_every_single_server_check_where_it_was_planted() -> None:
    result = scan("--format", "json", "--name", "office", "--", *planted("planted-a"))
    assert result.code == 1, result.explain()
    assert result.report["errors"] == [], result.explain()
    assert result.report["targets"] == [shlex.join(planted("planted-a"))]
    missing = PLANTED_A - result.located
    assert not missing, f"not reported: {sorted(missing)}\n{result.explain()}"
    # Each planted item triggers its own check and nothing else does; the one finding beyond them is
    # the toxic flow planted-a holds on its own (read_inbox/fetch_url, read_notes/read_any_file, send_email).
    extra = {f for f in result.located - PLANTED_A if f[0] != "toxic-flow"}
    assert not extra, f"unexpected findings: {sorted(extra)}\n{result.explain()}"
    flows = result.of("toxic-flow")
    assert len(flows) == 1, result.explain()
    assert flows[0]["location"]["server"] == "office"
    assert flows[0]["location"]["kind"] == "tool"
    for role in ("untrusted content", "private data", "an external sink"):
        assert role in flows[0]["message"]
    poisoned = next(f for f in result.of("tool-poisoning") if f["location"]["name"] == "get_weather")
    assert poisoned["severity"] in ("high", "critical")
    assert "~/.ssh" in poisoned["evidence"]
    assert_no_secret(result)
    for leak in result.of("metadata-secret"):
        assert leak["severity"] == "high"


# -- 2. client configurations: consent, static checks, cross-server checks -------------------------


@dataclass(frozen=True)
class Configs:
    servers: Path  # planted-a, planted-b and clean as stdio servers
    remote: Path  # an unpinned npx server with a literal token in its env
    marker: Path
    argv: dict[str, list[str]]


@pytest.fixture
def configs(tmp_path: Path) -> Configs:
    marker = tmp_path / "started.txt"
    argv = {"office": planted("planted-a"), "helper": planted("planted-b"), "clean": planted("clean"),
            "github": ["npx", "-y", "some-mcp-server"]}
    servers = {name: {"command": argv[name][0], "args": argv[name][1:], "env": {"PLANTED_MARKER": str(marker)}}
               for name in ("office", "helper", "clean")}
    first = tmp_path / "mcp.json"
    first.write_text(json.dumps({"mcpServers": servers}, indent=2), encoding="utf-8")
    second = tmp_path / "claude_desktop_config.json"
    second.write_text(json.dumps({"mcpServers": {"github": {
        "command": "npx", "args": ["-y", "some-mcp-server"], "env": {"GITHUB_TOKEN": CONFIG_TOKEN}}}}, indent=2),
        encoding="utf-8")
    return Configs(first, second, marker, argv)


def assert_static_config_findings(result: Scan, configs: Configs) -> None:
    secret = [f for f in result.of("config-secret") if f["location"]["field"] == "env.GITHUB_TOKEN"]
    assert len(secret) == 1, result.explain()
    assert secret[0]["location"]["kind"] == "config"
    assert secret[0]["location"]["server"] == "github"
    assert secret[0]["location"]["file"] == str(configs.remote)
    unpinned = result.of("unpinned-package")
    assert [f["location"]["server"] for f in unpinned] == ["github"], result.explain()
    assert "some-mcp-server" in unpinned[0]["message"]
    assert_no_secret(result)


def test_config_servers_are_not_started_without_consent(configs: Configs) -> None:
    result = scan("--format", "json", str(configs.servers), str(configs.remote))
    assert result.code == 1, result.explain()
    for name, argv in configs.argv.items():
        assert f"would start {name}: {shlex.join(argv)}" in result.stderr.splitlines(), result.stderr
    assert not configs.marker.exists(), f"a server was started without --yes: {configs.marker.read_text()}"
    assert_static_config_findings(result, configs)
    # Nothing was listed, so nothing about definitions can have been found.
    assert {f["location"]["kind"] for f in result.findings} <= {"config", "server"}, result.explain()
    assert not result.checks & {c for c, *_ in CROSS_SERVER}, result.explain()


def test_offline_config_scan_is_static(configs: Configs) -> None:
    result = scan("--format", "json", "--offline", str(configs.remote))
    assert result.code == 1, result.explain()
    assert "would start" not in result.stderr
    assert "starting" not in result.stderr
    assert result.report["errors"] == [], result.explain()
    assert_static_config_findings(result, configs)


def test_config_servers_started_with_yes_show_cross_server_checks(configs: Configs) -> None:
    result = scan("--format", "json", "--yes", str(configs.servers))
    assert result.code == 1, result.explain()
    assert result.report["errors"] == [], result.explain()
    assert sorted(configs.marker.read_text().split()) == ["clean", "planted-a", "planted-b"]
    missing = CROSS_SERVER - result.located
    assert not missing, f"not reported: {sorted(missing)}\n{result.explain()}"
    reference = result.of("cross-tool-reference")[0]
    assert "office.read_notes" in reference["message"], reference
    assert {f["location"]["file"] for f in result.findings} == {str(configs.servers)}
    flows = result.of("toxic-flow")
    assert len(flows) == 1, result.explain()
    assert repr(str(configs.servers)) in flows[0]["message"]  # the agent is the configuration file
    # The planted single-server problems are there too, now under their configured server name.
    assert result.located >= PLANTED_A, result.explain()
    # The clean server sits in the same agent and still has nothing against it.
    assert [f for f in result.findings if f["location"]["server"] == "clean"] == [], result.explain()


# -- 3. a clean server --------------------------------------------------------------------------


def test_clean_server_has_no_finding_at_all() -> None:
    result = scan("--format", "json", "--fail-on", "info", "--", *planted("clean"))
    assert result.findings == [], result.explain()
    assert result.report["errors"] == []
    assert result.report["suppressed"] == []
    assert result.code == 0, result.explain()


# -- 4. drift against the lockfile ------------------------------------------------------------------


def test_changed_definition_is_drift_against_the_lockfile(tmp_path: Path) -> None:
    lockfile = tmp_path / "gatehold-scan.lock.json"
    pinned = scan("--format", "json", "--name", "office", "--lockfile", str(lockfile), "--update-lockfile",
                  "--", *planted("planted-a"))
    assert pinned.code == 1, pinned.explain()
    assert pinned.report["errors"] == [], pinned.explain()
    definitions = json.loads(lockfile.read_text())["servers"]["office"]["definitions"]
    assert f"tool:{planted_server.CHANGED_TOOL}" in definitions
    assert len(definitions) == len(planted_server.PLANTED_A_TOOLS) + 2  # one prompt, one resource

    same = scan("--format", "json", "--name", "office", "--lockfile", str(lockfile), "--", *planted("planted-a"))
    drift_checks = {"definition-drift", "definition-added", "definition-removed", "server-unpinned",
                    "command-changed"}
    assert not same.checks & drift_checks, same.explain()

    changed = scan("--format", "json", "--name", "office", "--lockfile", str(lockfile), "--", *planted("changed"))
    assert changed.report["errors"] == [], changed.explain()
    drifted = {(f["location"]["kind"], f["location"]["qualified_name"]) for f in changed.of("definition-drift")}
    assert drifted == {("tool", f"office.{planted_server.CHANGED_TOOL}")}, changed.explain()
    assert not changed.checks & {"definition-added", "definition-removed", "server-unpinned"}, changed.explain()
    # The variant is chosen on the command line, so the pinned command differs too, and says so.
    commands = changed.of("command-changed")
    assert [(f["location"]["server"], f["location"]["field"]) for f in commands] == [("office", "command")]


# -- 5. transport of HTTP servers -----------------------------------------------------------------


@contextmanager
def served(argv: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server that prints ``URL: ...`` once it listens; yield the URL; stop it."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    watchdog = threading.Timer(START_TIMEOUT, proc.kill)  # a server that never prints its URL is killed
    watchdog.start()
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.startswith("URL: "):
                url = line.removeprefix("URL: ").strip()
                break
        watchdog.cancel()
        if url is None:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"{shlex.join(argv)} printed no URL: {err[-2000:]}")
        yield url
    finally:
        watchdog.cancel()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


HTTP_TOKEN = "scan-test-token-7f3a9c"


def test_http_server_without_auth_is_open_and_ignores_origin() -> None:
    with served([sys.executable, "-m", "tests.servers.auth_http_server"]) as url:
        result = scan("--format", "json", "--name", "open", url)
    assert result.report["errors"] == [], result.explain()
    assert result.checks == {"remote-no-auth", "origin-not-validated"}, result.explain()
    assert {(f["location"]["kind"], f["location"]["server"], f["location"]["field"]) for f in result.findings} == {
        ("server", "open", "url")}
    assert result.code == 1, result.explain()  # a foreign Origin with no credential is high


def test_a_probe_without_an_answer_makes_the_scan_incomplete() -> None:
    with served([sys.executable, "-m", "tests.servers.auth_http_server", "--drop-probes"]) as url:
        result = scan("--format", "json", "--name", "quiet", url)
    errors = result.report["errors"]
    assert any("metadata probe got no answer" in e for e in errors), result.explain()
    assert any("foreign-Origin probe got no answer" in e for e in errors), result.explain()
    assert "remote-no-auth" in result.checks  # what could be judged is still reported
    assert "origin-not-validated" not in result.checks
    assert result.code == 2, result.explain()


def test_a_url_without_a_name_is_named_by_its_url() -> None:
    with served([sys.executable, "-m", "tests.servers.auth_http_server"]) as url:
        result = scan("--format", "json", url)
    assert result.report["errors"] == [], result.explain()
    assert {f["location"]["qualified_name"] for f in result.findings} == {url}, result.explain()


def test_http_server_with_auth_passes_the_transport_checks() -> None:
    env = {"AUTH_HTTP_TOKEN": HTTP_TOKEN}
    with served([sys.executable, "-m", "tests.servers.auth_http_server", "--auth"], env) as url:
        result = scan("--format", "json", "--name", "guarded", "--bearer-env", "SCAN_TEST_TOKEN", url,
                      env={"SCAN_TEST_TOKEN": HTTP_TOKEN})
        anonymous = scan("--format", "json", "--name", "guarded", url)
    assert result.report["errors"] == [], result.explain()
    assert result.findings == [], result.explain()  # the clean definitions, behind auth and Origin checks
    assert result.code == 0
    assert HTTP_TOKEN not in result.stdout + result.stderr
    # Without the token its tools cannot be listed: the scan says so and fails, it does not pass silently.
    assert anonymous.code == 2, anonymous.explain()
    assert any("requires authentication" in e for e in anonymous.report["errors"]), anonymous.explain()
    assert not anonymous.checks & TRANSPORT, anonymous.explain()


@contextmanager
def gateway(tmp_path: Path, **sections: Any) -> Iterator[str]:
    """``gatehold serve`` with API keys (alice, bob) in front of the clean planted server."""
    upstreams = {"clean": {"command": planted("clean")}}
    roles: dict[str, Any] = {"reader": {"tools": {f"clean.{t['name']}": {} for t in planted_server.CLEAN_TOOLS}}}
    config = tmp_path / "gatehold.yaml"
    config.write_text(yaml.safe_dump(config_data(tmp_path, upstreams, roles, **sections)), encoding="utf-8")
    with served([sys.executable, "-m", "gatehold", "serve", "--config", str(config), "--port", "0"]) as url:
        yield url


def scan_gateway(url: str) -> Scan:
    return scan("--format", "json", "--name", "gateway", "--bearer-env", "SCAN_GATEWAY_KEY", url,
                env={"SCAN_GATEWAY_KEY": key_pair("alice")[0]})


def test_gateway_with_api_keys_only_is_authenticated_but_not_discoverable(tmp_path: Path) -> None:
    # API keys protect the gateway, but an MCP client cannot discover how to authenticate: without
    # OAuth there is no RFC 9728 metadata, which the scanner reports (low) and nothing else.
    with gateway(tmp_path) as url:
        result = scan_gateway(url)
    assert result.report["errors"] == [], result.explain()
    assert result.checks & TRANSPORT == {"no-resource-metadata"}, result.explain()


def test_gateway_with_oauth_and_api_keys_passes_the_transport_checks(tmp_path: Path) -> None:
    oauth = {"oauth": {"issuer": "https://idp.example.com", "jwks_uri": "https://idp.example.com/jwks"}}
    with gateway(tmp_path, auth=oauth, gateway={"resource": "https://mcp.example.com/mcp"},
                 scopes={"tools:read": [f"clean.{t['name']}" for t in planted_server.CLEAN_TOOLS]}) as url:
        result = scan_gateway(url)
    assert result.report["errors"] == [], result.explain()
    assert not result.checks & TRANSPORT, result.explain()
    assert result.findings == [], result.explain()


# -- 6. a real third-party server -----------------------------------------------------------------


def test_third_party_time_server_scans_cleanly(tmp_path: Path) -> None:
    lockfile = tmp_path / "lock.json"
    result = scan("--format", "json", "--name", "time", "--lockfile", str(lockfile), "--update-lockfile",
                  "--", sys.executable, "-m", "mcp_server_time")
    assert result.code in (0, 1), result.explain()
    assert result.report["errors"] == [], result.explain()
    listed = json.loads(lockfile.read_text())["servers"]["time"]["definitions"]
    assert {"tool:get_current_time", "tool:convert_time"} <= set(listed), listed
    wrong = result.checks & {"tool-poisoning", "hidden-unicode", "metadata-secret"}
    assert not wrong, result.explain()
    print(result.explain())  # its findings, for whoever reads the test log (pytest -s)


# -- 7. SARIF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["office", None])
def test_sarif_report_validates_and_names_server_and_tool(name: str | None) -> None:
    named = ["--name", name] if name else []
    sarif = scan("--format", "sarif", *named, "--", *planted("planted-a"))
    assert sarif.code == 1, sarif.stderr
    document = json.loads(sarif.stdout)
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    results = document["runs"][0]["results"]
    items = {t["name"] for t in planted_server.PLANTED_A_TOOLS} | {"summarize_document", "notes://team/handbook"}
    expected = {f"{name}.{item}" if name else item for item in items}
    named_by_sarif = [(r["ruleId"], r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]) for r in results]
    assert {fqn for _, fqn in named_by_sarif} <= expected, named_by_sarif
    as_json = scan("--format", "json", *named, "--", *planted("planted-a"))
    assert sorted(named_by_sarif) == sorted((f["check"], f["location"]["qualified_name"]) for f in as_json.findings)


# -- 8. exit codes --------------------------------------------------------------------------------


def test_exit_codes_follow_fail_on_and_errors(tmp_path: Path) -> None:
    high = scan("--format", "json", "--fail-on", "high", "--", *planted("planted-a"))
    assert high.code == 1, high.explain()
    never = scan("--format", "json", "--fail-on", "none", "--", *planted("planted-a"))
    assert never.code == 0, never.explain()
    assert never.findings, "--fail-on none still reports the findings"
    broken = tmp_path / "mcp.json"
    broken.write_text('{"mcpServers": {"office": {"command": ', encoding="utf-8")
    bad = scan("--format", "json", str(broken))
    assert bad.code == 2, bad.explain()
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    assert lines[0].startswith("error: "), bad.stderr
    assert str(broken) in lines[0], bad.stderr


# -- 9. baseline ----------------------------------------------------------------------------------


def test_baseline_suppresses_every_accepted_finding(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    written = scan("--format", "json", "--name", "office", "--write-baseline", str(baseline),
                   "--reason", "accepted in review", "--", *planted("planted-a"))
    assert written.code == 0, written.explain()
    accepted = len(written.findings)
    assert accepted >= len(PLANTED_A)
    assert_no_secret(Scan(written.argv, written.code, baseline.read_text(), ""))
    again = scan("--format", "json", "--name", "office", "--baseline", str(baseline), "--", *planted("planted-a"))
    assert again.findings == [], again.explain()
    assert len(again.report["suppressed"]) == accepted
    assert {s["reason"] for s in again.report["suppressed"]} == {"accepted in review"}
    assert again.report["errors"] == []
    assert again.code == 0, again.explain()
