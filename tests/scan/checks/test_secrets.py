"""metadata-secret and config-secret: credentials in metadata and literal secrets in client configs.

The credentials below are made up for these tests and have the shape of real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.scan.checks import secrets
from gatehold.scan.checks.secrets import credential_like, is_reference, mask, secret_spans
from gatehold.scan.model import ConfigText, Finding, Launch, ScanInput, ServerSnapshot
from tests.scan.checks.test_fields import DEFINITIONS

GITHUB = "ghp_" + "Zq8Rv2Lm4Tn6Wp1Xs3Yb5Kd7Hf9Jc0Ag2UeQ"
AWS_ID = "AKIA" + "QZ7RK2M4TN6WP1XS"
SLACK = "xoxb-" + "284619573021-9637204815263-aQ3zR7vL2mN8pK4tW6yB1cD5"
OPAQUE = "Zx8fK2pQ9vLm3nRt7wYb"  # no known format: secret only by its name


def server(env: Mapping[str, str] | None = None, command: tuple[str, ...] = (), url: str | None = None,
           headers: Mapping[str, str] | None = None, source: str = "client-config") -> ServerSnapshot:
    launch = Launch(command=command, env=env or {}, url=url, headers=headers or {})
    return ServerSnapshot(name="gh", source=source, launch=launch, file="mcp.json", line=4)


def run(*servers: ServerSnapshot, configs: tuple[ConfigText, ...] = ()) -> list[Finding]:
    return list(secrets.run(ScanInput(servers=servers, configs=configs)))


def tools(*definitions: dict[str, Any], **kinds: tuple[dict[str, Any], ...]) -> list[Finding]:
    return run(ServerSnapshot(name="srv", source="tools-json", tools=definitions, listed=True, **kinds))


def assert_no_value(findings: list[Finding], *values: str) -> None:
    for finding in findings:
        for value in values:
            assert value not in finding.message
            assert value not in finding.evidence
            assert value not in (finding.location.field or "")


def test_check_infos() -> None:
    assert [c.id for c in secrets.CHECKS] == ["metadata-secret", "config-secret"]
    for info in secrets.CHECKS:
        assert info.severity == "high"
        assert all((info.title, info.rationale, info.remediation))


# --------------------------------------------------------------------------------------------------
# helpers


def test_mask_shows_a_short_prefix_and_the_length() -> None:
    assert mask(GITHUB) == "ghp_… (40 chars)"
    assert mask("hunter22") == "hu… (8 chars)"
    assert mask("abc") == "… (3 chars)"


def test_secret_spans_align_markers_with_the_original() -> None:
    assert secret_spans("a=XYZ&b=QQQ", "a=[REDACTED:x]&b=[REDACTED:y]") == [("x", "XYZ"), ("y", "QQQ")]
    assert secret_spans("k: ABCDEF", "k: [REDACTED]") == [("known", "ABCDEF")]
    assert secret_spans("AB", "[REDACTED:x][REDACTED:y]") == [("x", "AB")]
    assert secret_spans("something else", "k: [REDACTED]") is None


@pytest.mark.parametrize("name", ["GITHUB_TOKEN", "DB_PASSWORD", "OPENAI_API_KEY", "apiKey", "X-Api-Key", "DSN",
                                  "DATABASE_CONNECTION_STRING", "SMTP_PASS", "AWS_SECRET_ACCESS_KEY", "PRIVATE_KEY",
                                  "client_secret", "Cookie"])
def test_credential_like_names(name: str) -> None:
    assert credential_like(name)


@pytest.mark.parametrize("name", ["TOKEN_FILE", "KEY_PATH", "AUTH_URL", "AUTH_TYPE", "SECRET_NAME", "PUBLIC_KEY",
                                  "PARTITION_KEY", "KEYBOARD_LAYOUT", "HOME", "DEBUG", "AWS_ACCESS_KEY_ID", "MONKEY"])
def test_names_that_are_not_credentials(name: str) -> None:
    assert not credential_like(name)


@pytest.mark.parametrize("value", ["${GITHUB_TOKEN}", "$TOKEN", "${env:TOKEN}", "${input:token}", "{{ secrets.X }}",
                                   "%TOKEN%", "env:GITHUB_TOKEN", "file:/run/secrets/t", "op://vault/item/field",
                                   "<your-token>", "YOUR_API_KEY", "your-api-key-here", "xxxxxxxxxxxxxxxx", "",
                                   "changeme", "Bearer ${TOKEN}"])
def test_references_and_placeholders(value: str) -> None:
    assert is_reference(value)


def test_real_values_are_not_references() -> None:
    for value in (GITHUB, OPAQUE, "hunter22", "s3cr3t-value"):
        assert not is_reference(value)


# --------------------------------------------------------------------------------------------------
# metadata-secret


def test_a_token_in_a_description() -> None:
    (finding,) = tools({"name": "deploy", "description": f"Deploys. Uses token {GITHUB} for the registry."})
    assert finding.check == "metadata-secret"
    assert finding.location.qualified_name == "srv.deploy"
    assert finding.location.field == "description"
    assert "GitHub token" in finding.message
    assert finding.evidence == "GitHub token: ghp_… (40 chars)"
    assert_no_value([finding], GITHUB)


def test_schema_values_uris_and_other_definitions() -> None:
    schema = {"type": "object", "properties": {
        "key_id": {"type": "string", "default": AWS_ID},
        "token": {"type": "string", "examples": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl"]}}}
    findings = tools({"name": "s3", "description": "Store.", "inputSchema": schema},
                     resources=({"uri": f"https://api.example.com/feed?access_token={OPAQUE}", "name": "feed"},),
                     prompts=({"name": "p", "arguments": [{"name": "x", "description": f"Slack: {SLACK}"}]},))
    where = sorted((f.location.kind, f.location.field) for f in findings)
    assert where == [("prompt", "arguments[0].description"), ("resource", "uri"),
                     ("tool", "inputSchema.properties.key_id.default"),
                     ("tool", "inputSchema.properties.token.examples[0]")]
    assert_no_value(findings, AWS_ID, OPAQUE, SLACK)


def test_metadata_without_secrets_passes() -> None:
    schema = {"type": "object", "properties": {
        "api_key": {"type": "string", "description": "Your API key, e.g. ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
        "commit": {"type": "string", "default": "4b825dc642cb6eb9a060e54bf8d69288fbee4904"},
        "id": {"type": "string", "examples": ["123e4567-e89b-12d3-a456-426614174000"]},
        "token": {"type": "string", "default": "${API_TOKEN}"}}}
    assert tools({"name": "call", "description": "Pass your API key in api_key; the password is never stored.",
                  "inputSchema": schema}) == []


# --------------------------------------------------------------------------------------------------
# config-secret: env, args, url, headers


def test_literal_env_values_under_credential_names() -> None:
    findings = run(server(env={"GITHUB_TOKEN": GITHUB, "DB_PASSWORD": "hunter22", "DATABASE_URL":
                               "postgres://app:s3cretpw@db.internal/app", "SERVICE_KEY": OPAQUE}))
    by_field = {f.location.field: f for f in findings}
    assert set(by_field) == {"env.GITHUB_TOKEN", "env.DB_PASSWORD", "env.DATABASE_URL", "env.SERVICE_KEY"}
    assert by_field["env.GITHUB_TOKEN"].message == "literal GitHub token in env.GITHUB_TOKEN"
    assert by_field["env.DB_PASSWORD"].message == "literal secret in env.DB_PASSWORD"
    assert by_field["env.DB_PASSWORD"].evidence == "secret: hu… (8 chars)"
    assert "connection-string password" in by_field["env.DATABASE_URL"].message
    location = by_field["env.GITHUB_TOKEN"].location
    assert (location.kind, location.server, location.file, location.line) == ("config", "gh", "mcp.json", 4)
    assert_no_value(findings, GITHUB, "hunter22", "s3cretpw", OPAQUE)


def test_references_placeholders_and_plain_settings_in_env_pass() -> None:
    env = {"GITHUB_TOKEN": "${GITHUB_TOKEN}", "API_KEY": "$API_KEY", "OPENAI_API_KEY": "your-api-key",
           "SLACK_TOKEN": "${input:slack}", "DB_PASSWORD": "", "AUTH_TYPE": "oauth", "KEY_FILE": "/etc/app/key.pem",
           "PARTITION_KEY": "tenant", "AUTH_ENABLED": "true", "TOKEN_TTL": "3600", "HOME": "/home/me",
           "DATABASE_DSN": "postgres://db.internal/app", "SECRET": "op://Private/app/secret"}
    assert run(server(env=env)) == []


def test_gatehold_config_env_values_are_secret_names() -> None:
    assert run(server(env={"API_TOKEN": "crm_token_value_name"}, source="gatehold-config")) == []
    assert run(server(env={"API_TOKEN": "crm_token_value_name"})) != []


def test_arguments() -> None:
    command = ("npx", "-y", "server", "--api-key", OPAQUE, f"--token={OPAQUE}x", f"GITHUB_TOKEN={GITHUB}",
               "--token", "${TOKEN}", "--verbose", SLACK, "https://user:pw-123456@git.example.com/repo.git")
    findings = run(server(command=command))
    assert sorted(f.location.field or "" for f in findings) == ["args[10]", "args[11]", "args[4]", "args[5]",
                                                                "args[6]"]
    assert_no_value(findings, OPAQUE, GITHUB, SLACK, "pw-123456")


def test_setting_words_need_a_secret_looking_value() -> None:
    quiet = run(server(command=("srv", "--auth", "oauth", "--private", "yes-please", "https://x.example/a?key=users"),
                       env={"AUTH": "basic", "PRIVATE_REPO": "owner/name"}))
    assert quiet == []
    loud = run(server(command=("srv", "--auth", OPAQUE, f"https://x.example/a?key={OPAQUE}"), env={"AUTH": OPAQUE}))
    assert sorted(f.location.field or "" for f in loud) == ["args[2]", "args[3]", "env.AUTH"]


def test_url_and_headers() -> None:
    findings = run(server(url=f"https://mcp.example.com/mcp?key={OPAQUE}&page=2",
                          headers={"Authorization": "Bearer abcdefghijklmnopqrstu12345", "X-Api-Key": OPAQUE,
                                   "Accept": "application/json"}))
    by_field = {f.location.field: f for f in findings}
    assert set(by_field) == {"url", "headers.Authorization", "headers.X-Api-Key"}
    assert "credential URL parameter (key)" in by_field["url"].message
    assert_no_value(findings, OPAQUE, "abcdefghijklmnopqrstu12345")


def test_referenced_headers_and_clean_urls_pass() -> None:
    assert run(server(url="https://mcp.example.com/mcp?page=2",
                      headers={"Authorization": "Bearer ${API_TOKEN}", "X-Api-Key": "${KEY}"})) == []


# --------------------------------------------------------------------------------------------------
# config-secret: raw configuration text


def test_raw_text_finds_what_the_loader_does_not_model_and_dedupes() -> None:
    text = ('{\n  "mcpServers": {\n    "gh": {\n      "env": {"GITHUB_TOKEN": "' + GITHUB + '"}\n    }\n  },\n'
            '  "telemetry": {"slack": "' + SLACK + '"}\n}\n')
    config = ConfigText(path="mcp.json", kind="client", text=text)
    findings = run(server(env={"GITHUB_TOKEN": GITHUB}), configs=(config,))
    assert [(f.location.field, f.location.line) for f in findings] == [("env.GITHUB_TOKEN", 4), (None, 7)]
    raw = findings[1]
    assert raw.location.kind == "config"
    assert raw.location.file == "mcp.json"
    assert raw.message == "literal Slack token in mcp.json line 7"
    assert_no_value(findings, GITHUB, SLACK)


def test_raw_gatehold_config_references_pass() -> None:
    text = "secrets:\n  crm_token: env:CRM_TOKEN\n  db_password: file:/run/secrets/db\nupstreams:\n" \
           "  files: {command: [python, -m, files], env: {DB_PASSWORD: db_password_ref}}\n"
    config = ConfigText(path="gatehold.yaml", kind="gatehold", text=text)
    assert run(server(env={"DB_PASSWORD": "db_password_ref"}, source="gatehold-config"), configs=(config,)) == []


def test_raw_client_config_references_pass() -> None:
    text = ('{"servers": {"x": {"url": "https://mcp.example.com/mcp",\n'
            '  "headers": {"Authorization": "Bearer ${API_TOKEN}"},\n'
            '  "env": {"DB_PASSWORD": "${input:db-password}", "API_KEY": "<your-api-key>"}}}}\n')
    assert run(configs=(ConfigText(path="mcp.json", kind="client", text=text),)) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(DEFINITIONS, max_size=3))
def test_definitions_of_any_shape_never_break_the_check(definitions: list[dict[str, Any]]) -> None:
    snapshot = ServerSnapshot(name="odd", source="tools-json", tools=tuple(definitions), prompts=tuple(definitions),
                              listed=True)
    for finding in secrets.run(ScanInput(servers=(snapshot,))):
        assert finding.check in {info.id for info in secrets.CHECKS}
        assert finding.message.isprintable()
