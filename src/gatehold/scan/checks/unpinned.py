"""Launch commands that fetch a package by name without an exact version.

``npx some-server`` runs whatever version the registry serves at that moment: a compromised or
hijacked release, or a new maintainer's, runs with the user's privileges at the next start, with no
review. The same holds for ``uvx``, ``pipx run``, ``docker run`` with a tag instead of a digest, and
``go run module@latest``. A package pinned to an exact version can still be replaced only by the
registry itself (npm and PyPI do not allow re-publishing a version); an image is fixed only by its
digest, since a tag can be moved by whoever can push.

Commands are parsed as argv: the runner's own options (and the values of options that take one) are
skipped, wrappers (``cmd /c``, ``sh -c``, ``env``, ``sudo``) are looked through, and what remains first
is the package. Only what is fetched from a registry by name counts; local paths and plain URLs do not.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from gatehold.output.secrets import SecretRedactor
from gatehold.scan.model import CheckInfo, Finding, ScanInput, Severity

__all__ = ["CHECKS", "Fetched", "fetched_packages", "run"]

UNPINNED = CheckInfo(
    id="unpinned-package",
    title="A launch command runs a package without an exact version",
    severity="medium",
    rationale=(
        "A package run by name gets whatever the registry serves at each start. A hijacked account, a "
        "malicious new release or a moved image tag then runs with the user's privileges and sees "
        "everything the server is given, without anyone reviewing it."
    ),
    remediation=(
        "Pin an exact version (npx pkg@1.2.3, uvx pkg==1.2.3, go run mod@v1.2.3) or an image digest "
        "(image@sha256:...), and update it deliberately. Gatehold's lockfile pins the exact command."
    ),
)
CHECKS: tuple[CheckInfo, ...] = (UNPINNED,)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One package a command fetches by name: how, the spec as written, and whether it is exact."""

    runner: str  # "npx", "uvx", "docker run", ...
    spec: str
    pinned: bool
    severity: Severity  # for an unpinned one
    fix: str  # how to pin it


_SEMVER: Final = re.compile(r"v?=?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
_GO_VERSION: Final = re.compile(r"v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?|[0-9a-f]{40}")
_PY_VERSION: Final = re.compile(r"[0-9A-Za-z!+._-]+")  # PEP 440, loosely: no wildcard, range or list
_COMMIT: Final = re.compile(r"[#@]([0-9a-f]{40})$")
_DIGEST: Final = re.compile(r"@sha(?:256:[0-9a-f]{64}|384:[0-9a-f]{96}|512:[0-9a-f]{128})$")
_PY_NAME: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)", re.DOTALL)
_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_USERINFO: Final = re.compile(r"://[^/@\s]*@")
_REDACTOR: Final = SecretRedactor()
_MAX_DEPTH: Final = 8

# Options that take a value, per runner (either "--opt value" or "--opt=value").
_NPX_VALUES: Final = frozenset({"-p", "--package", "-c", "--call", "--registry", "--cache", "--prefix",
                                "--userconfig", "--globalconfig", "--loglevel", "-w", "--workspace",
                                "--node-options", "--script-shell", "--include", "--omit"})
_PNPM_VALUES: Final = frozenset({"--package", "--reporter", "--allow-build", "--registry", "--dir", "-C"})
_BUNX_VALUES: Final = frozenset({"-p", "--package", "--registry", "--cwd"})
_UV_VALUES: Final = frozenset({
    "--from", "--with", "--with-editable", "--with-requirements", "--python", "-p", "--index", "--index-url",
    "--extra-index-url", "--default-index", "-i", "--find-links", "-f", "--constraints", "-c", "--overrides",
    "--build-constraints", "-b", "--env-file", "--directory", "--project", "--config-file", "--cache-dir",
    "--color", "--index-strategy", "--keyring-provider", "--resolution", "--prerelease", "--exclude-newer",
    "--refresh-package", "--reinstall-package", "--upgrade-package", "-P", "--config-setting", "-C",
    "--link-mode", "--python-preference", "--python-platform", "--torch-backend", "--allow-insecure-host",
    "--no-binary-package", "--no-build-package", "--exclude-newer-package", "--fork-strategy",
    "--build-constraint", "--override", "--constraint",
})
_PIPX_VALUES: Final = frozenset({"--spec", "--python", "--pip-args", "--index-url", "-i", "--backend"})
_DOCKER_VALUES: Final = frozenset({
    "-e", "--env", "--env-file", "-v", "--volume", "-p", "--publish", "--name", "--network", "--net", "-w",
    "--workdir", "-u", "--user", "-l", "--label", "--label-file", "--mount", "--entrypoint", "-h", "--hostname",
    "--add-host", "--cap-add", "--cap-drop", "--device", "--dns", "--dns-option", "--dns-search", "-m",
    "--memory", "--memory-swap", "--memory-reservation", "--memory-swappiness", "--cpus", "--cpu-shares", "-c",
    "--cpuset-cpus", "--cpuset-mems", "--cpu-period", "--cpu-quota", "--cpu-rt-period", "--cpu-rt-runtime",
    "--platform", "--pull", "--restart", "--runtime", "--security-opt", "--tmpfs", "--ulimit", "--log-driver",
    "--log-opt", "--ipc", "--pid", "--uts", "--userns", "--cgroupns", "--cgroup-parent", "--gpus",
    "--shm-size", "--stop-signal", "--stop-timeout", "--health-cmd", "--health-interval", "--health-retries",
    "--health-start-period", "--health-timeout", "--health-start-interval", "--expose", "--link",
    "--volumes-from", "--cidfile", "--attach", "-a", "--detach-keys", "--group-add", "--ip", "--ip6",
    "--mac-address", "--network-alias", "--oom-score-adj", "--isolation", "--blkio-weight",
    "--blkio-weight-device", "--kernel-memory", "--storage-opt", "--sysctl", "--annotation", "--domainname",
    "--device-cgroup-rule", "--device-read-bps", "--device-write-bps", "--device-read-iops",
    "--device-write-iops", "--pids-limit", "--link-local-ip", "--volume-driver", "--secret", "--arch", "--os",
    "--variant", "--authfile", "--cert-dir", "--creds", "--decryption-key", "--hooks-dir", "--init-path",
    "--pod", "--pod-id-file", "--rootfs", "--sdnotify", "--seccomp-policy", "--timeout", "--tz", "--umask",
    "--uidmap", "--gidmap", "--subuidname", "--subgidname", "--userns-uid-map", "--passwd-entry",
    "--group-entry", "--requires", "--preserve-fds", "--image-volume", "--chrootdirs", "--conmon-pidfile",
})
_DOCKER_GLOBAL_VALUES: Final = frozenset({"--context", "-c", "-H", "--host", "--config", "--log-level", "-l",
                                          "--tlscacert", "--tlscert", "--tlskey", "--connection", "--url",
                                          "--identity", "--root", "--runroot", "--storage-driver"})
_GO_VALUES: Final = frozenset({"-C", "-p", "-asmflags", "-buildmode", "-buildvcs", "-compiler", "-gccgoflags",
                               "-gcflags", "-installsuffix", "-ldflags", "-mod", "-modfile", "-overlay", "-pgo",
                               "-pkgdir", "-tags", "-toolexec", "-exec", "-covermode", "-coverpkg"})
_SUDO_VALUES: Final = frozenset({"-u", "-g", "-C", "-h", "-p", "-U", "-r", "-t", "-T", "-D", "--user",
                                 "--group", "--host", "--prompt", "--chdir"})
_ENV_VALUES: Final = frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"})
_SHELLS: Final = frozenset({"sh", "bash", "zsh", "dash", "ksh", "ash", "fish"})
_WINDOWS_SUFFIXES: Final = (".exe", ".cmd", ".bat", ".ps1")


def run(scan: ScanInput) -> Iterable[Finding]:
    out: list[Finding] = []
    for server in scan.servers:
        if server.launch is None or not server.launch.command:
            continue
        label = repr(server.name) if server.name is not None else "(unnamed)"
        seen: set[tuple[str, str]] = set()
        for fetched in fetched_packages(server.launch.command):
            if fetched.pinned or (fetched.runner, fetched.spec) in seen:
                continue
            seen.add((fetched.runner, fetched.spec))
            shown = _shown(fetched.spec)
            out.append(Finding(
                check=UNPINNED.id, severity=fetched.severity,
                message=(f"server {label} runs {fetched.runner} {shown!r} without an exact version: each start "
                         f"may fetch a different release; pin it as {_shown(fetched.fix)}"),
                location=server.at("server", None, "command"), evidence=f"{fetched.runner} {shown}"))
    return out


def _shown(text: str) -> str:
    """``text`` fit for a report: URL credentials dropped, known secret shapes redacted."""
    return _REDACTOR.text(_USERINFO.sub("://", text)).text


def fetched_packages(argv: Sequence[str]) -> list[Fetched]:
    """Every package ``argv`` fetches by name from a registry, with whether its version is exact."""
    return list(_walk(list(argv), 0))


def _program(arg: str) -> str:
    name = os.path.basename(arg.replace("\\", "/")).lower()
    for suffix in _WINDOWS_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # unbalanced quotes: still look at the words rather than skip the command
        return command.split()


def _walk(argv: list[str], depth: int) -> Iterator[Fetched]:
    if not argv or depth > _MAX_DEPTH:
        return
    program, rest = _program(argv[0]), argv[1:]
    if program == "cmd":
        at = next((i for i, a in enumerate(rest) if a.lower() in ("/c", "/k")), None)
        if at is not None:
            inner = rest[at + 1:]
            yield from _walk(_split(inner[0]) if len(inner) == 1 else inner, depth + 1)
    elif program in _SHELLS:
        at = next((i for i, a in enumerate(rest) if a.startswith("-") and not a.startswith("--") and "c" in a), None)
        if at is not None and at + 1 < len(rest):
            yield from _walk(_split(rest[at + 1]), depth + 1)
    elif program == "env":
        yield from _walk(_after_options(rest, _ENV_VALUES, skip_assignments=True), depth + 1)
    elif program in ("sudo", "doas", "nice", "nohup", "time", "exec", "stdbuf", "timeout"):
        inner = _after_options(rest, _SUDO_VALUES)
        if program == "timeout" and inner:
            inner = inner[1:]  # the duration
        yield from _walk(inner, depth + 1)
    elif program in ("npx", "pnpx"):
        yield from _node(program, rest, _NPX_VALUES if program == "npx" else _PNPM_VALUES)
    elif program == "npm":
        sub = _after_options(rest, _NPX_VALUES)
        if sub and sub[0] in ("exec", "x"):
            yield from _node("npm exec", sub[1:], _NPX_VALUES)
    elif program == "pnpm":
        sub = _after_options(rest, _PNPM_VALUES)
        if sub and sub[0] == "dlx":
            yield from _node("pnpm dlx", sub[1:], _PNPM_VALUES)
    elif program == "yarn":
        sub = _after_options(rest, frozenset({"--cwd"}))
        if sub and sub[0] == "dlx":
            yield from _node("yarn dlx", sub[1:], _BUNX_VALUES)
    elif program == "bunx":
        yield from _node("bunx", rest, _BUNX_VALUES)
    elif program == "bun":
        sub = _after_options(rest, frozenset({"--cwd", "-c", "--config"}))
        if sub and sub[0] == "x":
            yield from _node("bunx", sub[1:], _BUNX_VALUES)
    elif program == "uvx":
        yield from _uv("uvx", rest)
    elif program == "uv":
        sub = _after_options(rest, _UV_VALUES)
        if sub[:2] == ["tool", "run"]:
            yield from _uv("uv tool run", sub[2:])
    elif program == "pipx":
        sub = _after_options(rest, _PIPX_VALUES)
        if sub and sub[0] == "run":
            yield from _pipx(sub[1:])
    elif program in ("docker", "podman", "nerdctl"):
        sub = _after_options(rest, _DOCKER_GLOBAL_VALUES)
        if sub[:1] == ["run"]:
            yield from _docker(f"{program} run", sub[1:])
        elif sub[:2] == ["container", "run"]:
            yield from _docker(f"{program} run", sub[2:])
    elif program == "go" and rest[:1] == ["run"]:
        yield from _go(rest[1:])


def _options(args: Sequence[str], takes_value: frozenset[str], *,
             clusters: bool = True) -> tuple[list[tuple[str, str]], list[str]]:
    """Split ``args`` at the first operand: (option, value) pairs before it (value '' for a switch), the rest.

    ``--`` ends the options. A short option cluster (``-it``) is a run of switches unless one of its
    letters takes a value, which is then the rest of the cluster or the next argument (``-eX=1``).
    Without ``clusters`` (Go's single-dash long options) an unknown ``-word`` is one switch.
    """
    options: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, list(args[i + 1:])
        if not arg.startswith("-") or arg == "-":
            return options, list(args[i:])
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if eq:
                options.append((name, value))
            elif name in takes_value and i + 1 < len(args):
                options.append((name, args[i + 1]))
                i += 1
            else:
                options.append((name, ""))
        elif arg in takes_value:
            if i + 1 < len(args):
                options.append((arg, args[i + 1]))
                i += 1
        elif "=" in arg and arg.partition("=")[0] in takes_value:  # -flag=value (go)
            name, _, value = arg.partition("=")
            options.append((name, value))
        elif not clusters:
            options.append((arg.partition("=")[0], arg.partition("=")[2]))
        else:
            for j, letter in enumerate(arg[1:], start=1):
                flag = "-" + letter
                if flag in takes_value:
                    value = arg[j + 1:]
                    if not value and i + 1 < len(args):
                        value = args[i + 1]
                        i += 1
                    options.append((flag, value))
                    break
                options.append((flag, ""))
        i += 1
    return options, []


def _after_options(args: Sequence[str], takes_value: frozenset[str], *, skip_assignments: bool = False) -> list[str]:
    _, rest = _options(args, takes_value)
    if skip_assignments:
        while rest and _ASSIGNMENT.match(rest[0]):
            rest = rest[1:]
    return rest


# ------------------------------------------------------------------------------------------------ npm


def _node(runner: str, args: Sequence[str], takes_value: frozenset[str]) -> Iterator[Fetched]:
    options, operands = _options(args, takes_value)
    packages = [value for name, value in options if name in ("-p", "--package") and value]
    calls = any(name in ("-c", "--call") for name, _ in options)
    if not packages and not calls and operands:
        packages = [operands[0]]
    for spec in packages:
        judged = _npm_spec(spec)
        if judged is not None:
            pinned, fix = judged
            yield Fetched(runner, spec, pinned, "medium", fix)


def _npm_spec(spec: str) -> tuple[bool, str] | None:
    """(exact?, how to pin) for an npm package spec; None when it is not fetched from a registry by name."""
    if spec.startswith("npm:"):
        spec = spec[4:]
    if _is_local(spec):
        return None
    if spec.startswith(("git+", "git:", "git@", "github:", "gitlab:", "bitbucket:", "gist:")) or (
            "/" in spec and not spec.startswith("@") and "://" not in spec):
        return bool(_COMMIT.search(spec)), f"{spec.split('#')[0]}#<full commit hash>"
    if "://" in spec:
        return None  # a tarball URL: not a package by name
    if spec.startswith("@"):
        scope, _, rest = spec.partition("/")
        name, at, version = rest.partition("@")
        name = f"{scope}/{name}"
    else:
        name, at, version = spec.partition("@")
    exact = bool(at) and _SEMVER.fullmatch(version) is not None
    return exact, f"{name}@<exact version>"


def _without_ref(url: str) -> str:
    """A VCS URL without its ``@ref`` (``git+https://host/x/y@main`` -> ``git+https://host/x/y``)."""
    url = url.split("#")[0]
    head, at, ref = url.rpartition("@")
    return head if at and "/" not in ref else url


def _is_local(spec: str) -> bool:
    return (spec.startswith((".", "/", "~", "\\", "file:", "link:"))
            or (len(spec) > 2 and spec[1] == ":" and spec[2] in "/\\"))  # a Windows drive path


# ------------------------------------------------------------------------------------------------ Python


def _uv(runner: str, args: Sequence[str]) -> Iterator[Fetched]:
    options, operands = _options(args, _UV_VALUES)
    source = next((value for name, value in options if name == "--from"), None)
    specs: list[str] = []
    if source is not None:
        specs.append(source)
    elif operands:
        specs.append(operands[0])
    specs += [value for name, value in options if name == "--with" and value]
    for spec in specs:
        judged = _python_spec(spec, at_version=True)
        if judged is not None:
            pinned, fix = judged
            yield Fetched(runner, spec, pinned, "medium", fix)


def _pipx(args: Sequence[str]) -> Iterator[Fetched]:
    options, operands = _options(args, _PIPX_VALUES)
    spec = next((value for name, value in options if name == "--spec"), None)
    if spec is None and operands:
        spec = operands[0]
    if spec:
        judged = _python_spec(spec, at_version=False)
        if judged is not None:
            pinned, fix = judged
            yield Fetched("pipx run", spec, pinned, "medium", fix)


def _python_spec(spec: str, *, at_version: bool) -> tuple[bool, str] | None:
    """(exact?, how to pin) for a requirement; None for a local path or file. ``name@1.2`` counts for uv."""
    text = spec.strip()
    if _is_local(text) or text.endswith((".whl", ".tar.gz", ".zip", ".py")):
        return None
    if text.startswith(("git+", "hg+", "svn+", "bzr+")) or "://" in text:
        name, sep, url = text.partition(" @ ")
        target = url if sep else text
        if not target.startswith(("git+", "hg+", "svn+", "bzr+")):
            return None  # a plain URL to an archive: not a package by name
        return bool(_COMMIT.search(target.split("#")[0])), f"{_without_ref(target)}@<full commit hash>"
    m = _PY_NAME.fullmatch(text)
    if m is None:
        return False, "<package>==<exact version>"
    name, extras, rest = m.group(1), m.group(2) or "", m.group(3).strip()
    fix = f"{name}{extras}==<exact version>"
    if rest.startswith("===") or (rest.startswith("==") and not rest.startswith("===")):
        version = rest.lstrip("=").strip()
        return bool(_PY_VERSION.fullmatch(version)) and not version.endswith(".*"), fix
    if at_version and rest.startswith("@"):
        version = rest[1:].strip()
        exact = version.lower() != "latest" and re.fullmatch(r"\d[0-9A-Za-z!+._-]*", version) is not None
        return exact, fix
    return False, fix


# ------------------------------------------------------------------------------------------------ images


def _docker(runner: str, args: Sequence[str]) -> Iterator[Fetched]:
    _, operands = _options(args, _DOCKER_VALUES)
    if not operands:
        return
    image = operands[0]
    if _DIGEST.search(image):
        yield Fetched(runner, image, True, "medium", image)
        return
    name, tag = _image_tag(image)
    if tag is None or tag == "latest":
        yield Fetched(runner, image, False, "medium", f"{name}@sha256:<digest>")
    else:
        yield Fetched(runner, image, False, "low", f"{name}:{tag}@sha256:<digest>")


def _image_tag(image: str) -> tuple[str, str | None]:
    """(repository, tag or None): the tag is after the last ':' of the last path part (not a port)."""
    head, slash, last = image.rpartition("/")
    repo, colon, tag = last.partition(":")
    return (head + slash + repo, tag if colon else None)


# ------------------------------------------------------------------------------------------------ Go


def _go(args: Sequence[str]) -> Iterator[Fetched]:
    _, operands = _options(args, _GO_VALUES, clusters=False)
    if not operands:
        return
    target = operands[0]
    module, at, version = target.rpartition("@")
    if not at or _is_local(target):
        return  # a local package or the main module: its version is fixed by go.mod and go.sum
    yield Fetched("go run", target, _GO_VERSION.fullmatch(version) is not None, "medium", f"{module}@v<X.Y.Z>")
