import pytest

from gatehold.scan.checks.transport import CHECKS, is_loopback_url, run, shown_url
from gatehold.scan.model import Finding, Launch, ScanInput, ServerSnapshot, TransportProbe


def probe(url: str, **fields: bool | None) -> TransportProbe:
    return TransportProbe(url=url, tls=url.startswith("https://"), loopback=is_loopback_url(url), **fields)


def scan(*servers: ServerSnapshot) -> list[Finding]:
    return list(run(ScanInput(servers=servers)))


def remote(url: str | None = None, transport: TransportProbe | None = None, name: str = "crm") -> ServerSnapshot:
    return ServerSnapshot(name=name, source="client-config", launch=Launch(url=url) if url else None,
                          transport=transport, file="mcp.json", line=3)


def test_checks_are_declared() -> None:
    assert [(c.id, c.severity) for c in CHECKS] == [
        ("remote-no-tls", "high"), ("remote-no-auth", "high"), ("no-resource-metadata", "low"),
        ("origin-not-validated", "medium")]


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://localhost:8000/mcp", True), ("http://LOCALHOST./mcp", True), ("http://app.localhost/mcp", True),
    ("http://127.0.0.1:9/mcp", True), ("http://127.1.2.3/mcp", True), ("http://[::1]:80/mcp", True),
    ("http://0.0.0.0:8000/mcp", True), ("http://[::ffff:127.0.0.1]/mcp", True),
    ("http://10.0.0.5/mcp", False), ("http://localhost.evil.com/mcp", False), ("http://example.com/mcp", False),
    ("http://[::1/mcp", False), ("not a url", False),
])
def test_loopback(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_configured_http_url_to_a_remote_host_even_unprobed() -> None:
    (finding,) = scan(remote("http://crm.example.com/mcp"))
    assert finding.check == "remote-no-tls"
    assert finding.severity == "high"
    assert finding.location.kind == "server"
    assert finding.location.server == "crm"
    assert finding.location.field == "url"
    assert finding.location.file == "mcp.json"
    assert finding.evidence == "http://crm.example.com/mcp"


def test_tls_and_loopback_are_fine() -> None:
    assert scan(remote("https://crm.example.com/mcp")) == []
    assert scan(remote("http://127.0.0.1:8080/mcp", probe("http://127.0.0.1:8080/mcp"))) == []
    assert scan(remote("http://localhost/mcp")) == []


def test_a_probed_url_counts_once_with_the_configured_one() -> None:
    url = "http://crm.example.com/mcp"
    assert [f.check for f in scan(remote(url, probe(url)))] == ["remote-no-tls"]
    assert [f.check for f in scan(remote(None, probe(url)))] == ["remote-no-tls"]


def test_credentials_and_query_never_reach_the_report() -> None:
    (finding,) = scan(remote("http://admin:hunter2secret@crm.example.com:8080/mcp?api_key=abc123def456#x"))
    assert finding.evidence == "http://crm.example.com:8080/mcp"
    assert "hunter2" not in finding.message
    assert "abc123" not in finding.message
    assert shown_url("http://[::1/mcp") == "<unparsable URL>"


def test_shown_url_never_shows_user_info_and_keeps_the_query_only_when_asked() -> None:
    url = "https://user:hunter2@example.com:8443/mcp?session=abc#top"
    assert shown_url(url) == "https://example.com:8443/mcp"
    assert shown_url(url, query=True) == "https://example.com:8443/mcp?session=abc"
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    assert secret not in shown_url(f"https://example.com/mcp?token={secret}", query=True)
    assert shown_url("http://[::1/mcp\x1b[2J", query=True).isprintable()


def test_unauthenticated_list() -> None:
    (finding,) = scan(remote(None, probe("https://crm.example.com/mcp", unauthenticated_list=True)))
    assert (finding.check, finding.severity) == ("remote-no-auth", "high")
    (local,) = scan(remote(None, probe("http://127.0.0.1:7000/mcp", unauthenticated_list=True)))
    assert (local.check, local.severity) == ("remote-no-auth", "medium")
    assert "rebinding" in local.message
    assert scan(remote(None, probe("https://crm.example.com/mcp", unauthenticated_list=False))) == []


def test_auth_without_resource_metadata() -> None:
    (finding,) = scan(remote(None, probe("https://crm.example.com/mcp", auth_challenge=True, resource_metadata=False)))
    assert (finding.check, finding.severity) == ("no-resource-metadata", "low")
    assert scan(remote(None, probe("https://crm.example.com/mcp", auth_challenge=True, resource_metadata=True))) == []
    assert scan(remote(None, probe("https://crm.example.com/mcp", auth_challenge=True))) == []
    assert scan(remote(None, probe("https://crm.example.com/mcp", auth_challenge=False,
                                   resource_metadata=False))) == []


def test_foreign_origin_accepted() -> None:
    (finding,) = scan(remote(None, probe("https://crm.example.com/mcp", origin_rejected=False)))
    assert (finding.check, finding.severity) == ("origin-not-validated", "medium")
    both = scan(remote(None, probe("http://127.0.0.1:7000/mcp", origin_rejected=False, unauthenticated_list=True)))
    assert {(f.check, f.severity) for f in both} == {("remote-no-auth", "medium"), ("origin-not-validated", "high")}
    assert scan(remote(None, probe("https://crm.example.com/mcp", origin_rejected=True))) == []


def test_nothing_probed_means_no_probe_findings() -> None:
    assert scan(remote(None, probe("https://crm.example.com/mcp"))) == []
    assert scan(ServerSnapshot(name="local", source="client-config", launch=Launch(command=("node", "s.js")))) == []
