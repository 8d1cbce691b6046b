"""Secret redaction: pattern kinds, known values and their encodings, structures, fuzzing.

Every secret here is obviously fake and assembled from pieces at run time, so no literal in the
repository looks like a real credential and secret scanners stay quiet.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehold.audit.record import REDACTED as AUDIT_REDACTED
from gatehold.output.secrets import KINDS, MAX_DEPTH, REDACTED, TRUNCATED, Redaction, SecretRedactor

PATTERNS = SecretRedactor()


def redact(text: str) -> Redaction:
    return PATTERNS.text(text)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


FAKE_JWT = ".".join(
    (
        b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
        b64url(json.dumps({"sub": "fake-user", "iat": 1700000000}).encode()),
        b64url(b"not-a-real-signature-at-all"),
    )
)
PEM_BODY = "\n".join(["MIIEfake" + "A" * 56] * 4)
BEGIN_KEY = "-----BEGIN " + "RSA " + "PRIVATE" + " KEY-----"
END_KEY = "-----END " + "RSA " + "PRIVATE" + " KEY-----"

# (kind, text, the secret part that must disappear)
POSITIVES: list[tuple[str, str, str]] = [
    ("aws_access_key", "key id: " + "AKIA" + "FAKE" * 4 + " ok", "AKIA" + "FAKE" * 4),
    ("aws_access_key", '"AccessKeyId": "' + "ASIA" + "TEST0" * 3 + "0" + '"', "ASIA" + "TEST0" * 3 + "0"),
    ("aws_secret_key", "aws_secret_access_key = " + "fAkE" * 10, "fAkE" * 10),
    ("aws_secret_key", '"SecretAccessKey": "' + "Fake/Key+" * 4 + "Fake" + '"', "Fake/Key+" * 4 + "Fake"),
    ("gcp_api_key", "key=" + "AIza" + "Fake" * 8 + "Key", "AIza" + "Fake" * 8 + "Key"),
    ("google_oauth", "access: " + "ya29." + "Fake_Token-" * 3, "ya29." + "Fake_Token-" * 3),
    ("github_token", "GH " + "ghp_" + "FakeToken0" * 3 + "FakeTo", "ghp_" + "FakeToken0" * 3 + "FakeTo"),
    ("github_token", "ghs_" + "0Fake" * 7 + "X", "ghs_" + "0Fake" * 7 + "X"),
    ("github_token", "pat " + "github_pat_" + "Fake0" * 16 + "Fa", "github_pat_" + "Fake0" * 16 + "Fa"),
    ("gitlab_token", "use " + "glpat-" + "FakeToken-" * 2 + ".", "glpat-" + "FakeToken-" * 2),
    ("slack_token", "slack " + "xoxb-" + "1234567890-" + "FakeTokenValue", "xoxb-" + "1234567890-" + "FakeTokenValue"),
    (
        "slack_webhook",
        "POST https://hooks.slack.com/services/" + "T0000FAKE/B0000FAKE/" + "Fake" * 6,
        "T0000FAKE/B0000FAKE/" + "Fake" * 6,
    ),
    ("stripe_key", "stripe " + "sk_live_" + "FakeKey0" * 3, "sk_live_" + "FakeKey0" * 3),
    ("stripe_key", "sk_test_" + "FakeKey0" * 3, "sk_test_" + "FakeKey0" * 3),
    ("stripe_key", "rk_live_" + "FakeKey0" * 3, "rk_live_" + "FakeKey0" * 3),
    ("openai_key", "OPENAI " + "sk-proj-" + "Fake0Key" * 5, "sk-proj-" + "Fake0Key" * 5),
    ("openai_key", "sk-" + "Fake0" * 10, "sk-" + "Fake0" * 10),
    ("anthropic_key", "x-api " + "sk-ant-api03-" + "Fake0Key" * 6, "sk-ant-api03-" + "Fake0Key" * 6),
    ("private_key", f"key:\n{BEGIN_KEY}\n{PEM_BODY}\n{END_KEY}\nafter", PEM_BODY),
    ("private_key", f"truncated: {BEGIN_KEY}\n{PEM_BODY}", PEM_BODY),
    (
        "private_key",
        "-----BEGIN OPENSSH " + "PRIVATE KEY-----\\nb3Blbn" + "NzaC1rZXk" * 4
        + "\\n-----END OPENSSH " + "PRIVATE KEY-----",
        "b3Blbn" + "NzaC1rZXk" * 4,
    ),
    ("jwt", f"token {FAKE_JWT} end", FAKE_JWT),
    ("jwt", f'{{"id_token":"{FAKE_JWT}"}}', FAKE_JWT),
    ("connection_string", "postgres://app:" + "Fake-Pass-123" + "@db.internal:5432/app", "Fake-Pass-123"),
    ("connection_string", "mongodb+srv://u:" + "FakePass9" + "@cluster0.example.net/db", "FakePass9"),
    ("connection_string", "REDIS_URL=redis://:" + "fakepass" + "@cache:6379/0", "fakepass"),
    ("connection_string", "https://user:" + "fake%40pw" + "@git.example.com/repo.git", "fake%40pw"),
    ("bearer", "Authorization: Bearer " + "Fake0Token0Value0", "Fake0Token0Value0"),
    ("bearer", "curl -H 'Authorization: Basic " + base64.b64encode(b"user:fakepass").decode() + "'", "dXNlcjpmYWtl"),
    ("bearer", '{"headers": {"authorization": "token ' + "fake" * 3 + "1234" + '"}}', "fake" * 3 + "1234"),
    ("bearer", "sent bearer " + "FAKEtoken" * 2, "FAKEtoken" * 2),
    ("npm_token", "//registry.npmjs.org/:_authToken=" + "npm_" + "Fake0" * 7 + "F", "npm_" + "Fake0" * 7 + "F"),
    (
        "azure_storage",
        "DefaultEndpointsProtocol=https;AccountName=fake;AccountKey=" + "Fake0Key+" * 8 + "==;EndpointSuffix=x",
        "Fake0Key+" * 8,
    ),
    ("generic_secret", "password: hunter22", "hunter22"),
    ("generic_secret", "password: hunter2", "hunter2"),
    ("generic_secret", "DB_PASSWORD=Fake-Passw0rd", "Fake-Passw0rd"),
    ("generic_secret", '{"client_secret": "' + "9f8e7d6c5b4a" * 2 + '"}', "9f8e7d6c5b4a" * 2),
    ("generic_secret", "api_key: " + "Q8wM2LrT5vXn9KpZ3cHd", "Q8wM2LrT5vXn9KpZ3cHd"),
    ("generic_secret", "X-Api-Key: " + "Q8wM2LrT5vXn9KpZ3cHd", "Q8wM2LrT5vXn9KpZ3cHd"),
    ("generic_secret", "The API key: " + "Q8wM2LrT5vXn9KpZ3cHd", "Q8wM2LrT5vXn9KpZ3cHd"),
    ("generic_secret", "the password is Tr0ub4dor&3", "Tr0ub4dor&3"),
    ("generic_secret", "export GITHUB_TOKEN=" + "abcdef0123456789" * 2, "abcdef0123456789" * 2),
    ("generic_secret", "passphrase: 'correct horse battery staple'", "correct horse battery staple"),
    ("generic_secret", "auth: " + "Fake0Auth0Value0x", "Fake0Auth0Value0x"),
    ("generic_secret", "pwd=Fake9pass", "Fake9pass"),
    ("generic_secret", "?user=bob&password=Fake9pass&next=/", "Fake9pass"),
    ("generic_secret", 'config: {\\"secret\\": \\"' + "Zm9vYmFyYmF6cXV4MTIz" + '\\"}', "Zm9vYmFyYmF6cXV4MTIz"),
    ("generic_secret", "private_key => " + "'" + "N0tAR3alK3yV4lue!" + "'", "N0tAR3alK3yV4lue!"),
]

# Texts that must come back unchanged (the same object).
NEGATIVES: list[str] = [
    "AKIA" + "FAKE" * 3 + "FAK is fifteen characters short",
    "XAKIA" + "FAKE" * 4 + " is inside a longer word",
    "akia" + "fake" * 4 + " is lower case",
    "commit " + "0123456789abcdef" * 2 + "01234567" + " (a 40-character git SHA, no AWS context)",
    "AIza" + "Fake" * 8 + "Ke is one short",
    "ya29 is a prefix without its dot; ya29." + "short",
    "ghp_" + "FakeToken0" * 3 + "FakeT is 35 characters",
    "ghx_" + "FakeToken0" * 4 + " has no such prefix",
    "glpat-" + "short",
    "xoxb-" + "no-digits-anywhere-here" + " and xoxz-" + "1234567890-abc",
    "see https://hooks.slack.com/ and hooks.slack.com/services/" + "short",
    "pk_live_" + "FakeKey0" * 3 + " is publishable",
    "sk_live_" + "short",
    "sk-learn-is-a-package-name-here",
    "task-" + "1234567890" * 3,
    "sk-ant-" + "short",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
    "eyJhbGciOiJIUzI1NiJ9.bm90LWEtand0.c2ln has no payload object",
    "a lone eyJhbGciOiJIUzI1NiJ9 header",
    "postgres://db.internal:5432/app has no password",
    "unknown://user:pw-for-a-scheme@host.example",
    "see https://example.com/a:b@c for details",
    "Bearer tokens are short-lived",
    "bearer authentication_mechanism_names",
    "token_type: Bearer",
    "present it as `Authorization: Bearer ghk_<id>.<secret>`",
    "npm_config_cache=/tmp/npm-cache",
    "npm_" + "Fake0" * 7 + " is 35 characters",
    "AccountName=fake;EndpointSuffix=core.windows.net",
    "AccountKey=short",
    "reset your password: go to settings",
    "the password is incorrect.",
    "Your password is required",
    "password_hint: favourite colour",
    "nextPageToken: CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0dmYzc",
    "max_tokens: 4096",
    "tokenizer: bert-base-uncased-whole-word-masking",
    "secret_name: prod-db-credentials",
    "api_key_id: k-0001",
    "public_key: " + "Q8wM2LrT5vXn9KpZ3cHd",
    "api_key: ${API_KEY}",
    "password: <your-password-here>",
    "password: null",
    "pwd: /home/user/project",
    "token: 12345678901234567890",
    "request_id: 550e8400-e29b-41d4-a716-446655440000",
    "request 550e8400-e29b-41d4-a716-446655440000 failed",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b: fix tests",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "checksum = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "token_sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "The quick brown fox jumps over the lazy dog. Keys: none. Tokens: counted.",
]


def test_kinds_are_stable_snake_case() -> None:
    assert len(set(KINDS)) == len(KINDS)
    assert all(kind.isidentifier() and kind == kind.lower() for kind in KINDS)
    assert {kind for kind, _, _ in POSITIVES} == set(KINDS)


def test_known_marker_is_the_audit_marker() -> None:
    assert REDACTED == AUDIT_REDACTED == "[REDACTED]"


@pytest.mark.parametrize(("kind", "text", "secret"), POSITIVES, ids=[f"{k}-{i}" for i, (k, *_) in enumerate(POSITIVES)])
def test_pattern_positive(kind: str, text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out.text
    assert f"[REDACTED:{kind}]" in out.text
    assert out.found.get(kind, 0) >= 1
    assert redact(out.text).text == out.text  # idempotent


@pytest.mark.parametrize("text", NEGATIVES)
def test_pattern_hard_negative(text: str) -> None:
    out = redact(text)
    assert out.text is text, out.text
    assert dict(out.found) == {}


def test_connection_string_keeps_everything_but_the_password() -> None:
    text = "postgres://app:" + "Fake-Pass-123" + "@db.internal:5432/app?sslmode=require"
    assert redact(text).text == "postgres://app:[REDACTED:connection_string]@db.internal:5432/app?sslmode=require"


def test_generic_keeps_key_quotes_and_punctuation() -> None:
    assert redact('{"password": "hunter22", "user": "bob"}').text == (
        '{"password": "[REDACTED:generic_secret]", "user": "bob"}'
    )
    assert redact("(password: hunter22).").text == "(password: [REDACTED:generic_secret])."
    assert redact("token=" + "Q8wM2LrT5vXn9KpZ3cHd" + ",password=hunter22").found == {"generic_secret": 1}


def test_generic_judges_a_second_key_inside_a_kept_value() -> None:
    out = redact("mode=x,password=hunter22")
    assert "hunter22" not in out.text


def test_private_key_block_is_removed_whole() -> None:
    text = f"before\n{BEGIN_KEY}\n{PEM_BODY}\n{END_KEY}\nafter"
    assert redact(text).text == "before\n[REDACTED:private_key]\nafter"


def test_counts_every_marker() -> None:
    text = "AKIA" + "FAKE" * 4 + " AKIA" + "TEST" * 4 + " password=hunter22"
    assert dict(redact(text).found) == {"aws_access_key": 2, "generic_secret": 1}


def test_fast_path_returns_the_same_object() -> None:
    text = "An ordinary sentence about files, directories and messages. " * 200
    out = SecretRedactor(lambda: ["Fake-Upstream-T0ken"]).text(text)
    assert out.text is text
    assert dict(out.found) == {}


def test_markers_match_nothing() -> None:
    markers = " ".join([REDACTED, TRUNCATED] + [f"[REDACTED:{kind}]" for kind in KINDS])
    for text in (markers, "password: " + markers, "Authorization: Bearer [REDACTED:jwt]", "token=[REDACTED]"):
        assert redact(text).text is text


def test_patterns_can_be_turned_off() -> None:
    redactor = SecretRedactor(lambda: ["Fake-Upstream-T0ken"], patterns=False)
    out = redactor.text("password: hunter22 AKIA" + "FAKE" * 4 + " Fake-Upstream-T0ken")
    assert out.text == "password: hunter22 AKIA" + "FAKE" * 4 + " [REDACTED]"
    assert redactor.json({"password": "hunter22"}) == ({"password": "hunter22"}, {})


# --------------------------------------------------------------------------------------------
# Known values

VALUE = "Fake-Upstream-T0ken~~~>>>???"  # its base64 holds "+" and "/", so url-safe differs


def known(*values: str) -> SecretRedactor:
    return SecretRedactor(lambda: values)


def b64_core(data: bytes, lead: int, urlsafe: bool = False) -> str:
    """The characters of base64(prefix + data + ...) that depend on ``data`` alone."""
    encoded = base64.b64encode(b"\0" * lead + data + b"\0\0").decode()
    core = encoded[-(-8 * lead // 6) : 8 * (lead + len(data)) // 6]
    return core.translate(str.maketrans("+/", "-_")) if urlsafe else core


def test_known_raw_value() -> None:
    out = known(VALUE).text(f"token={VALUE}; again {VALUE}")
    assert out.text == "token=[REDACTED]; again [REDACTED]"
    assert dict(out.found) == {"known": 2}


def test_known_value_inside_json_text() -> None:
    text = json.dumps({"result": f"the upstream said {VALUE}"})
    assert VALUE not in known(VALUE).text(text).text


def test_known_value_in_dict_keys_values_and_lists() -> None:
    doc = {VALUE: {"list": ["a", f"x{VALUE}y", 3], "nested": {"k": VALUE}}}
    out, found = known(VALUE).json(doc)
    assert out == {REDACTED: {"list": ["a", f"x{REDACTED}y", 3], "nested": {"k": REDACTED}}}
    assert found == {"known": 3}


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("lead", [0, 1, 2, 3, 4, 5])
def test_known_value_base64_inside_a_larger_blob(lead: int, padded: bool, urlsafe: bool) -> None:
    data = VALUE.encode()
    blob_bytes = b"prefix-bytes"[:lead] + data + b" trailing bytes!"
    blob = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(blob_bytes).decode()
    blob = blob if padded else blob.rstrip("=")
    core = b64_core(data, lead % 3, urlsafe)
    assert core in blob
    out = known(VALUE).text(f"attachment: {blob} (end)").text
    assert core not in out
    assert REDACTED in out
    assert out.startswith("attachment: ")
    assert out.endswith(" (end)")


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: base64.b64encode(v.encode()).decode(),
        lambda v: base64.b64encode(v.encode()).decode().rstrip("="),
        lambda v: base64.urlsafe_b64encode(v.encode()).decode(),
        lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
        lambda v: quote(v, safe=""),
        lambda v: quote(v),
        lambda v: quote_plus(v),
        lambda v: re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(v, safe="")),
        lambda v: v.encode().hex(),
        lambda v: v.encode().hex().upper(),
        lambda v: "".join(c.upper() if i % 2 else c for i, c in enumerate(v.encode().hex())),
        lambda v: v[::-1],
    ],
    ids=[
        "b64",
        "b64-unpadded",
        "b64-urlsafe",
        "b64-urlsafe-unpadded",
        "quote-all",
        "quote",
        "quote-plus",
        "quote-lower-escapes",
        "hex",
        "HEX",
        "hex-mixed-case",
        "reversed",
    ],
)
def test_known_value_encodings(encode: Callable[[str], str]) -> None:
    value = "Fake secret/with spaces&symbols=~>?"
    out = known(value).text(f"[{encode(value)}]")
    assert out.text == f"[{REDACTED}]", out.text
    assert dict(out.found) == {"known": 1}


def test_standalone_base64_is_hidden_with_its_padding() -> None:
    encoded = base64.b64encode(b"Fake-Value-12").decode()
    assert encoded.endswith("=")
    assert known("Fake-Value-12").text(f"x {encoded} y").text == f"x {REDACTED} y"


def test_known_values_longest_first() -> None:
    out = known("abcd1234", "abcd1234efgh5678").text("id=abcd1234efgh5678 and abcd1234")
    assert out.text == f"id={REDACTED} and {REDACTED}"


def test_overlapping_values_are_hidden_whole() -> None:
    out = known("AAAA1111BBBB", "BBBB2222CCCC").text("x AAAA1111BBBB2222CCCC y")
    assert out.text == f"x {REDACTED} y"
    assert dict(out.found) == {"known": 1}


def test_value_list_changes_between_calls() -> None:
    values = ["Fake-First-Token1"]
    calls = []

    def provider() -> list[str]:
        calls.append(1)
        return list(values)

    redactor = SecretRedactor(provider)
    assert redactor.text("Fake-First-Token1").text == REDACTED
    matcher = redactor._matcher()
    assert redactor._matcher() is matcher  # unchanged values: the compiled matcher is reused
    values[:] = ["Fake-Second-Token2"]  # a refreshed upstream token
    assert redactor.text("Fake-First-Token1 Fake-Second-Token2").text == f"Fake-First-Token1 {REDACTED}"
    assert redactor._matcher() is not matcher
    calls.clear()
    redactor.text("a")
    redactor.json({"b": "c"})
    assert len(calls) == 2  # called on every redaction


def test_short_and_non_string_values_are_ignored() -> None:
    redactor = SecretRedactor(lambda: ["abc", None, b"bytes-value", 12345678], min_known_length=4)  # type: ignore[list-item]
    assert redactor.text("abc bytes-value 12345678").text == "abc bytes-value 12345678"
    assert SecretRedactor(lambda: ["abc"], min_known_length=3).text("xabcx").text == f"x{REDACTED}x"


def test_known_value_is_case_sensitive() -> None:
    assert known("Fake-Token-Value").text("fake-token-value").text == "fake-token-value"


def test_provider_failure_fails_closed() -> None:
    def broken() -> list[str]:
        raise RuntimeError("vault unreachable")

    out = SecretRedactor(broken).text("anything at all")
    assert out.text == REDACTED
    assert dict(out.found) == {"error": 1}
    assert SecretRedactor(broken).json({"a": 1}) == (REDACTED, {"error": 1})


def test_a_value_spanning_a_marker_is_still_hidden() -> None:
    # "D]ab..." only appears once the first occurrence has become a marker ending in "D]"
    secret = "D]abcdefgh"
    out = known(secret).text(secret + "abcdefgh")
    assert secret not in out.text
    assert known(secret).text(out.text).text == out.text


def test_a_value_that_is_part_of_a_marker_does_not_loop() -> None:
    out = known("REDACTED", "EDACTED]").text("x REDACTED y")
    assert out.text == f"x {REDACTED} y"


# --------------------------------------------------------------------------------------------
# Structures


def test_json_key_based_secrets() -> None:
    doc = {
        "password": "hunter22",
        "api_key": "Q8wM2LrT5vXn9KpZ3cHd",
        "pin_password": 12345678,
        "password_hint": "pet name",
        "token_count": 42,
        "env": [{"name": "DB_PASSWORD", "value": "Fake-Passw0rd"}, {"name": "LOG_LEVEL", "value": "debug-verbose"}],
        "tags": [{"Key": "api_token", "Value": "Q8wM2LrT5vXn9KpZ3cHd"}, {"Key": "password_login", "Value": "enabled"}],
        "headers": {"Authorization": "Basic " + base64.b64encode(b"user:fakepass").decode()},
        "creds": {"SecretAccessKey": "fAkE" * 10},
    }
    out, found = PATTERNS.json(doc)
    assert out == {
        "password": "[REDACTED:generic_secret]",
        "api_key": "[REDACTED:generic_secret]",
        "pin_password": "[REDACTED:generic_secret]",
        "password_hint": "pet name",
        "token_count": 42,
        "env": [
            {"name": "DB_PASSWORD", "value": "[REDACTED:generic_secret]"},
            {"name": "LOG_LEVEL", "value": "debug-verbose"},
        ],
        "tags": [
            {"Key": "api_token", "Value": "[REDACTED:generic_secret]"},
            {"Key": "password_login", "Value": "enabled"},
        ],
        "headers": {"Authorization": "Basic [REDACTED:bearer]"},
        "creds": {"SecretAccessKey": "[REDACTED:aws_secret_key]"},
    }
    assert found == {"generic_secret": 5, "bearer": 1, "aws_secret_key": 1}


def test_json_values_are_judged_by_the_redacted_key() -> None:
    # found by fuzzing: "<known>auth" only reads as the credential key "auth" once redacted
    redactor = known("Fake-Value-0001")
    doc = {"Fake-Value-0001auth": "Fake-Value-0001auth", "entry": {"name": "Fake-Value-0001_token", "value": "x1"}}
    out, _ = redactor.json(doc)
    assert out == {
        f"{REDACTED}auth": "[REDACTED:generic_secret]",
        "entry": {"name": f"{REDACTED}_token", "value": "x1"},
    }
    assert redactor.json(out) == (out, {})


def test_json_patterns_inside_strings() -> None:
    doc = {"log": ["connecting to postgres://app:" + "Fake-Pass-123" + "@db/app", "ok"]}
    out, found = PATTERNS.json(doc)
    assert out == {"log": ["connecting to postgres://app:[REDACTED:connection_string]@db/app", "ok"]}
    assert found == {"connection_string": 1}


def test_json_never_mutates_and_always_copies() -> None:
    doc: dict[str, Any] = {"a": [1, 2, {"b": "password=hunter22"}], "c": ("t", "u")}
    snapshot = json.dumps(doc)
    out, _ = PATTERNS.json(doc)
    assert json.dumps(doc) == snapshot
    assert out == {"a": [1, 2, {"b": "password=[REDACTED:generic_secret]"}], "c": ["t", "u"]}
    clean: dict[str, Any] = {"a": [1, {"b": "c"}]}
    copy, found = PATTERNS.json(clean)
    assert copy == clean
    assert found == {}
    assert copy is not clean
    assert copy["a"] is not clean["a"]
    assert copy["a"][1] is not clean["a"][1]


def test_json_depth_limit() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    out, _ = PATTERNS.json(deep)
    levels = 0
    while isinstance(out, list):
        out = out[0]
        levels += 1
    assert levels == MAX_DEPTH
    assert out == TRUNCATED
    exact: Any = "leaf"
    for _ in range(MAX_DEPTH):
        exact = [exact]
    assert PATTERNS.json(exact)[0] == exact


def test_json_cycles_are_safe() -> None:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    items: list[Any] = [1]
    items.append(items)
    assert PATTERNS.json(loop)[0] == {"name": "loop", "self": TRUNCATED}
    assert PATTERNS.json(items)[0] == [1, TRUNCATED]
    shared = ["x"]
    assert PATTERNS.json({"a": shared, "b": shared})[0] == {"a": ["x"], "b": ["x"]}  # shared is not a cycle


def test_json_non_json_types() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no")

    class Holder:
        def __str__(self) -> str:
            return "holder of " + VALUE

    doc = {1: {2.5: None}, None: True, (1, 2): b"raw", "obj": Holder(), "bad": Unprintable(), "set": {"x"}}
    out, found = known(VALUE).json(doc)
    assert out == {
        "1": {"2.5": None},
        "null": True,
        "(1, 2)": "b'raw'",
        "obj": f"holder of {REDACTED}",
        "bad": "<unprintable Unprintable>",
        "set": "{'x'}",
    }
    assert found == {"known": 1}


def test_json_keys_that_collide_after_redaction_keep_both_values() -> None:
    out, found = known("Fake-Key-One1", "Fake-Key-Two2").json({"Fake-Key-One1": 1, "Fake-Key-Two2": 2})
    assert out == {REDACTED: 1, f"{REDACTED}#2": 2}
    assert found == {"known": 2}


def test_json_numbers_that_spell_a_known_value() -> None:
    out, found = known("31415926").json({"n": 3141592653, "f": 0.5, "other": 7, "flag": True})
    assert out == {"n": f"{REDACTED}53", "f": 0.5, "other": 7, "flag": True}
    assert found == {"known": 1}


def test_json_broken_mapping_fails_closed() -> None:
    class Broken(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    assert PATTERNS.json({"a": Broken(x=1)}) == (REDACTED, {"error": 1})


def test_letters_that_change_length_when_lower_cased() -> None:
    # "İ".lower() is two characters, so positions in the lower-cased text would not map back
    text = "İstanbul password=hunter22 AKIA" + "FAKE" * 4
    assert redact(text).text == "İstanbul password=[REDACTED:generic_secret] [REDACTED:aws_access_key]"
    out, found = known("Fake-Value-0001").json({"İ": ["password=hunter22", "x Fake-Value-0001", "plain"]})
    assert out == {"İ": ["password=[REDACTED:generic_secret]", f"x {REDACTED}", "plain"]}
    assert found == {"generic_secret": 1, "known": 1}


def test_text_of_non_strings_never_raises() -> None:
    assert PATTERNS.text(12345).text == "12345"  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Fuzzing (acceptance criterion): random secrets, positions, structures and encodings


def _utf8(value: str) -> bytes:
    return value.encode("utf-8")


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "b64": lambda s: base64.b64encode(_utf8(s)).decode(),
    "b64-unpadded": lambda s: base64.b64encode(_utf8(s)).decode().rstrip("="),
    "b64-urlsafe": lambda s: base64.urlsafe_b64encode(_utf8(s)).decode(),
    "b64-urlsafe-unpadded": lambda s: base64.urlsafe_b64encode(_utf8(s)).decode().rstrip("="),
    "quote": lambda s: quote(s, safe=""),
    "quote-default": lambda s: quote(s),
    "quote-plus": lambda s: quote_plus(s),
    "hex": lambda s: _utf8(s).hex(),
    "HEX": lambda s: _utf8(s).hex().upper(),
    "reversed": lambda s: s[::-1],
}
ALL_MARKERS = " ".join([REDACTED, TRUNCATED] + [f"[REDACTED:{kind}]" for kind in KINDS])

printable_secrets = st.text(alphabet=string.printable, min_size=8, max_size=64)
unicode_secrets = st.text(min_size=8, max_size=64)
secrets = (printable_secrets | unicode_secrets).filter(lambda s: s not in ALL_MARKERS)
surroundings = st.text(max_size=40) | st.text(alphabet=string.ascii_letters + string.digits + "+/=", max_size=40)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def embedded(draw: st.DrawFn) -> tuple[str, list[str], str]:
    """(secret, the strings that must disappear, a text holding them somewhere)."""
    secret = draw(secrets)
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(ENCODINGS)))
        encoded = ENCODINGS[name](secret)
        gone = [secret, encoded]
    else:  # inside a larger base64 blob, at any alignment
        before = draw(st.binary(max_size=5))
        after = draw(st.binary(max_size=5))
        urlsafe = draw(st.booleans())
        blob = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(before + _utf8(secret) + after).decode()
        encoded = blob if draw(st.booleans()) else blob.rstrip("=")
        gone = [secret, b64_core(_utf8(secret), len(before) % 3, urlsafe)]
    return secret, gone, draw(surroundings) + encoded + draw(surroundings)


@FUZZ
@given(embedded())
def test_fuzz_known_value_in_text(case: tuple[str, list[str], str]) -> None:
    secret, gone, text = case
    redactor = known(secret)
    out = redactor.text(text)
    for item in gone:
        assert item not in out.text
    assert redactor.text(out.text).text == out.text


@st.composite
def structures(draw: st.DrawFn) -> tuple[str, list[str], Any]:
    secret, gone, text = draw(embedded())
    carriers = st.just(text) | st.builds(lambda a, b: a + text + b, st.text(max_size=10), st.text(max_size=10))
    leaves = st.text(max_size=15) | carriers | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.none()
    keys = st.text(max_size=10) | carriers
    tree = st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=12,
    )
    return secret, gone, {draw(carriers): draw(tree), "items": [draw(tree), draw(carriers)], "k": {draw(keys): text}}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@FUZZ
@given(structures())
def test_fuzz_known_value_in_json(case: tuple[str, list[str], Any]) -> None:
    secret, gone, doc = case
    redactor = known(secret)
    out, _ = redactor.json(doc)
    dumped = orjson.dumps(out).decode()
    for item in gone:
        assert item not in dumped
        assert all(item not in text for text in _strings(out))
    assert redactor.json(out)[0] == out


FRAGMENTS = [
    "password",
    "password=",
    ": ",
    " is ",
    "token",
    "api_key",
    "Authorization: ",
    "Bearer ",
    "AKIA",
    "Z" * 16,
    "ghp_",
    "sk-",
    "ant-",
    "xoxb-",
    "glpat-",
    "eyJ",
    "eyJhbGciOiJIUzI1NiJ9",
    ".",
    "_",
    "-",
    "=",
    "://",
    "postgres://u:",
    "@",
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "-----END RSA " + "PRIVATE KEY-----",
    "AccountKey=",
    "hooks.slack.com/services/",
    "ya29.",
    "AIza",
    "[REDACTED",
    "]",
    "[REDACTED]",
    "[REDACTED:jwt]",
    '"',
    "'",
    "\\",
    "\n",
    "Q8wM2LrT5vXn9KpZ3cHd",
    "0123456789abcdef",
]
fuzz_texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=30).map("".join)
any_known = st.lists(
    st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(FRAGMENTS), max_size=4
)


@FUZZ
@given(fuzz_texts, any_known)
def test_fuzz_text_never_raises_and_is_idempotent(text: str, values: list[str]) -> None:
    redactor = SecretRedactor(lambda: values)
    out = redactor.text(text)
    assert "error" not in out.found
    again = redactor.text(out.text)
    assert again.text == out.text
    assert dict(again.found) == {}


json_values = st.recursive(
    fuzz_texts | st.integers() | st.floats() | st.booleans() | st.none() | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(fuzz_texts | st.integers() | st.none(), children, max_size=4)
    | st.tuples(children, children),
    max_leaves=15,
)


@FUZZ
@given(json_values, any_known)
def test_fuzz_json_never_raises_and_is_idempotent(value: Any, values: list[str]) -> None:
    redactor = SecretRedactor(lambda: values)
    out, found = redactor.json(value)
    assert "error" not in found
    assert redactor.json(out) == (out, {})


@pytest.mark.parametrize(
    "text",
    [
        "password=" * 12_000,
        'token:"' * 15_000,
        'token:\\"' * 12_000,
        "eyJ" * 34_000,
        "eyJa.eyJb." * 10_000,
        ".eyJ" + "a" * 100_000,
        "-----BEGIN " + "PRIVATE KEY-----" * 6_000,
        "-----BEGIN " + "A " * 50_000,
        "postgres://a:" * 8_000,
        "://a:" + "b" * 100_000,
        "sk-" * 34_000,
        "Bearer " * 15_000,
        "Authorization: " * 7_000,
        "a" * 100_000,
        "key" * 34_000,
        "A" * 100_000,
        "_" * 100_000,
        "api key: " * 12_000,
        "secret access key " * 6_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_adversarial_inputs_finish(text: str) -> None:
    # No timing is asserted; a super-linear pattern would make this test hang.
    redactor = SecretRedactor(lambda: ["aaaaaaaa", "keykeykey"])
    out = redactor.text(text)
    assert redactor.text(out.text).text == out.text
