import pytest

from gatehold.scan.checks.unpinned import CHECKS, fetched_packages, run
from gatehold.scan.model import Finding, Launch, ScanInput, ServerSnapshot

DIGEST = "sha256:" + "0123456789abcdef" * 4
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def scan(*argv: str, name: str | None = "srv") -> list[Finding]:
    server = ServerSnapshot(name=name, source="client-config", launch=Launch(command=argv), file="mcp.json")
    return list(run(ScanInput(servers=(server,))))


def test_check_is_declared() -> None:
    assert [(c.id, c.severity) for c in CHECKS] == [("unpinned-package", "medium")]


@pytest.mark.parametrize("argv", [
    ("node", "server.js"),
    ("python", "-m", "server"),
    ("npx", "-y", "@modelcontextprotocol/server-filesystem@2025.8.21", "/tmp"),
    ("uvx", "mcp-server-time==2026.10.19"),
    ("docker", "run", "--rm", f"ghcr.io/x/y@{DIGEST}"),
    ("npx", "some-server@1.2.3", "--port", "latest"),
    ("npx", "--yes", "some-server@v1.2.3-beta.1+build.5"),
    ("npx", "-p", "@scope/tools@0.4.0", "tools-cli", "serve"),
    ("npm", "exec", "--package=some-server@2.0.0", "--", "serve"),
    ("pnpm", "dlx", "some-server@1.0.0"),
    ("bunx", "--bun", "some-server@3.1.4"),
    ("yarn", "dlx", "-p", "some-server@1.0.0", "run-it"),
    ("uvx", "mcp-server-fetch@2025.4.7"),
    ("uvx", "--from", "mcp-tools[cli]==1.0.0", "mcp-tools"),
    ("uv", "tool", "run", "--python", "3.12", "mcp-server-git==0.6.2"),
    ("pipx", "run", "--spec", "mcp-tool==1.0", "mcp-tool"),
    ("uvx", "--from", f"git+https://github.com/acme/server@{COMMIT}", "server"),
    ("npx", f"github:acme/server#{COMMIT}"),
    ("go", "run", "-trimpath", "github.com/acme/server@v1.4.0"),
    ("go", "run", "./cmd/server"),
    ("npx", "./local-server"),
    ("uvx", "--from", "./dist/server-1.0-py3-none-any.whl", "server"),
    ("docker", "build", "-t", "x", "."),
    ("npm", "start"),
])
def test_pinned_or_local_commands_are_fine(argv: tuple[str, ...]) -> None:
    assert scan(*argv) == [], fetched_packages(argv)


@pytest.mark.parametrize(("argv", "spec", "severity"), [
    (("npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"), "@modelcontextprotocol/server-filesystem",
     "medium"),
    (("npx", "@scope/name@latest"), "@scope/name@latest", "medium"),
    (("npx", "some-server@^1.2.0"), "some-server@^1.2.0", "medium"),
    (("npx", "some-server@~1.2"), "some-server@~1.2", "medium"),
    (("npx", "some-server@1"), "some-server@1", "medium"),
    (("npx", "some-server@next"), "some-server@next", "medium"),
    (("npx", "-p", "some-server", "bin"), "some-server", "medium"),
    (("npx", "--package=some-server", "bin"), "some-server", "medium"),
    (("npm", "exec", "some-server"), "some-server", "medium"),
    (("npm", "x", "--", "some-server"), "some-server", "medium"),
    (("pnpm", "dlx", "some-server"), "some-server", "medium"),
    (("pnpx", "some-server"), "some-server", "medium"),
    (("bunx", "some-server"), "some-server", "medium"),
    (("bun", "x", "some-server"), "some-server", "medium"),
    (("yarn", "dlx", "some-server"), "some-server", "medium"),
    (("npx", "github:acme/server"), "github:acme/server", "medium"),
    (("uvx", "mcp-server-time"), "mcp-server-time", "medium"),
    (("uvx", "mcp-server-time@latest"), "mcp-server-time@latest", "medium"),
    (("uvx", "mcp-server-time>=1.0"), "mcp-server-time>=1.0", "medium"),
    (("uvx", "mcp-server-time==1.*"), "mcp-server-time==1.*", "medium"),
    (("uvx", "--from", "mcp-tools", "mcp-tools-cli"), "mcp-tools", "medium"),
    (("uvx", "--from", "git+https://github.com/acme/server@main", "server"), "git+https://github.com/acme/server@main",
     "medium"),
    (("uv", "tool", "run", "mcp-server-git"), "mcp-server-git", "medium"),
    (("pipx", "run", "mcp-tool"), "mcp-tool", "medium"),
    (("docker", "run", "-i", "--rm", "-e", "GITHUB_TOKEN", "-v", "a:b", "ghcr.io/github/github-mcp-server"),
     "ghcr.io/github/github-mcp-server", "medium"),
    (("docker", "run", "mcp/fetch:latest"), "mcp/fetch:latest", "medium"),
    (("docker", "run", "-it", "--network=host", "localhost:5000/mcp/fetch:1.2"), "localhost:5000/mcp/fetch:1.2",
     "low"),
    (("podman", "container", "run", "--rm", "mcp/fetch"), "mcp/fetch", "medium"),
    (("docker", "--context", "remote", "run", "-eX=1", "mcp/fetch"), "mcp/fetch", "medium"),
    (("go", "run", "github.com/acme/server@latest"), "github.com/acme/server@latest", "medium"),
    (("go", "run", "-tags", "x", "github.com/acme/server@main"), "github.com/acme/server@main", "medium"),
])
def test_unpinned_packages(argv: tuple[str, ...], spec: str, severity: str) -> None:
    (finding,) = scan(*argv)
    assert finding.check == "unpinned-package"
    assert finding.severity == severity
    assert spec in finding.evidence
    assert repr(spec) in finding.message
    assert finding.location.kind == "server"
    assert finding.location.field == "command"
    assert finding.location.file == "mcp.json"


@pytest.mark.parametrize("argv", [
    ("cmd", "/c", "npx", "-y", "some-server"),
    ("cmd.exe", "/C", "npx -y some-server"),
    ("C:\\Program Files\\nodejs\\npx.cmd", "-y", "some-server"),
    ("/usr/local/bin/npx", "-y", "some-server"),
    ("sh", "-c", "npx -y some-server --flag"),
    ("bash", "-lc", "exec npx -y some-server"),
    ("env", "-u", "HOME", "NODE_ENV=production", "npx", "some-server"),
    ("sudo", "-u", "mcp", "npx", "some-server"),
])
def test_wrappers_are_looked_through(argv: tuple[str, ...]) -> None:
    (finding,) = scan(*argv)
    assert "some-server" in finding.evidence


def test_message_names_the_fix() -> None:
    (npm,) = scan("npx", "-y", "@scope/name@^2")
    assert "@scope/name@<exact version>" in npm.message
    (py,) = scan("uvx", "mcp-tools[cli]>=1")
    assert "mcp-tools[cli]==<exact version>" in py.message
    (image,) = scan("docker", "run", "mcp/fetch:1.2")
    assert "mcp/fetch:1.2@sha256:<digest>" in image.message


def test_every_package_fetched_counts() -> None:
    found = scan("uvx", "--with", "requests", "--with", "httpx==0.28.1", "mcp-tool==1.0.0")
    assert [f.evidence for f in found] == ["uvx requests"]
    both = scan("npx", "-p", "a-pkg", "-p", "b-pkg@1.0.0", "-p", "c-pkg", "run-it")
    assert [f.evidence for f in both] == ["npx a-pkg", "npx c-pkg"]


def test_credentials_in_a_spec_are_not_shown() -> None:
    (finding,) = scan("uvx", "--from", "git+https://oauth2:tok3nvalue@gitlab.example.com/g/p@main", "p")
    assert "tok3nvalue" not in finding.message
    assert "tok3nvalue" not in finding.evidence


def test_no_command_no_finding() -> None:
    remote = ServerSnapshot(name="r", source="client-config", launch=Launch(url="https://x.example/mcp"))
    assert list(run(ScanInput(servers=(remote, ServerSnapshot(name="t", source="tools-json"))))) == []
    assert scan("sh", "-c", "npx 'unbalanced") != []  # a broken shell string is still read, word by word
