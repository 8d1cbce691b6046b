"""Least-privilege argument constraints (``ArgConstraint``), checked after schema validation.

The caller of a tool may be a hijacked agent, so these checks are a security boundary and fail
closed: a value of the wrong type, an input a check does not support, a constraint field with no
checker, or any exception raised while checking is a violation, never a pass.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gatehold.config import ArgConstraint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Violation:
    argument: str
    rule: str  # the ArgConstraint field that was violated, e.g. "path_within"
    message: str


def check_arguments(arguments: dict[str, Any], constraints: Mapping[str, ArgConstraint]) -> list[Violation]:
    """Check the top-level ``arguments`` named by ``constraints``; an empty list means allowed.

    A constrained argument that is absent passes (the schema decides what is required).
    ``None`` arguments (missing) count as ``{}``.
    """
    args: Any = {} if arguments is None else arguments
    violations: list[Violation] = []
    for name, constraint in constraints.items():
        if not isinstance(constraint, ArgConstraint):
            violations.append(Violation(str(name), "constraint", "constraint is unusable; denied"))
            continue
        rules = [(rule, getattr(constraint, rule)) for rule in type(constraint).model_fields]
        rules = [(rule, setting) for rule, setting in rules if setting is not None]
        if not isinstance(args, dict):
            violations += [Violation(name, rule, "arguments are not a JSON object") for rule, _ in rules]
            continue
        if name not in args:
            continue
        for rule, setting in rules:
            problem = _check(rule, args[name], setting)
            if problem:
                violations.append(Violation(name, rule, problem))
    return violations


def _check(rule: str, value: Any, setting: Any) -> str | None:
    check = _CHECKS.get(rule)
    if check is None:
        # Fail closed: a constraint field added to ArgConstraint without a checker denies.
        return f"constraint {rule!r} is not supported; denied"
    try:
        return check(value, setting)
    except Exception as exc:  # noqa: BLE001 - deliberate: fail closed
        # Fail closed: a check that crashes is a violation, never a pass.
        return f"could not be checked ({type(exc).__name__}); denied"


@functools.lru_cache(maxsize=1024)
def _canonical_root(root: str) -> str:
    """The root, canonicalised once. If it is later re-pointed, targets resolve elsewhere and fail
    the containment check: a stale cache can only deny, never allow more."""
    return os.path.realpath(root)


def _path_within(value: Any, root: str) -> str | None:
    """``value`` must name ``root`` or something inside it once canonicalised.

    A relative value is taken relative to ``root`` (so the upstream must use ``root`` as its
    working directory for the check to mean what it says). ``..`` and symlinks are resolved with
    ``os.path.realpath``, including not-yet-existing trailing parts; ``~`` is not expanded.

    Residual risk (TOCTOU): this inspects the filesystem at check time, and the upstream opens
    the original value later. A symlink swapped in between (by anything able to write inside
    ``root``, including the tool itself) can still lead outside. Run the upstream sandboxed
    (container, chroot, Landlock, read-only mounts) when ``root`` holds anything writable.
    """
    if not isinstance(value, str):
        return "must be a string path"
    if "\x00" in value:
        return "contains a NUL byte"
    if not value:
        return "is empty"
    if not os.path.isabs(root):
        return "the configured root is not absolute; denied"
    base = _canonical_root(root)
    target = os.path.realpath(os.path.join(root, value))
    if os.path.commonpath([base, target]) != base:
        return f"resolves outside {root}"
    return None


def _url_hosts(value: Any, hosts: tuple[str, ...]) -> str | None:
    """``value`` must be an absolute http(s) URL whose host is allowed by ``hosts``.

    ``example.com`` matches exactly; ``*.example.com`` matches subdomains only. IP literals match
    only IP entries. Userinfo, backslashes, whitespace and control characters are refused
    outright, since URL parsers disagree about them.
    """
    if not isinstance(value, str):
        return "must be a URL string"
    if "\\" in value:
        return "contains a backslash"
    if any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in value):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if "@" in parts.netloc:
        return "must not contain user information"
    host = _canonical_host(parts.hostname or "", bracketed="[" in parts.netloc)
    if host is None:
        return "has no valid host"
    exact, suffixes, ips = _allowlist(tuple(hosts))
    if isinstance(host, str):
        if host in exact or any(host.endswith("." + s) for s in suffixes):
            return None
    elif host in ips:
        return None
    return f"host {str(host)[:80]!r} is not allowed"


_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_NUMERIC = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _canonical_host(raw: str, *, bracketed: bool) -> str | IPAddress | None:
    """Lowercase, IDNA-encoded host without a trailing dot, or an IP address; None if unusable."""
    host = raw.lower()
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if bracketed:  # [...] must hold an IPv6 literal
        return address if isinstance(address, ipaddress.IPv6Address) else None
    if address is not None:
        return address
    host = host.removesuffix(".")
    labels = []
    for label in host.split("."):
        if not label.isascii():
            try:
                encoded = label.encode("idna")
                # Refuse labels IDNA 2003 would remap (e.g. 'ß' -> 'ss', fullwidth letters): an
                # IDNA 2008 client upstream would resolve a different name than the one checked.
                if encoded.decode("idna") != label:
                    return None
            except UnicodeError:
                return None
            label = encoded.decode("ascii")
        if not _LABEL.fullmatch(label):
            return None
        labels.append(label)
    # A numeric last label is an IPv4 address to most URL parsers ('127.1', '0x7f.1'):
    # ambiguous unless it parsed above as a canonical address.
    if _NUMERIC.fullmatch(labels[-1]) or len(host) > 253:
        return None
    return ".".join(labels)


@functools.lru_cache(maxsize=1024)
def _allowlist(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...], frozenset[IPAddress]]:
    exact: set[str] = set()
    suffixes: list[str] = []
    ips: set[IPAddress] = set()
    for entry in entries:
        wildcard = entry.startswith("*.")
        body = entry[2:] if wildcard else entry
        bracketed = body.startswith("[") and body.endswith("]")
        host = _canonical_host(body[1:-1] if bracketed else body, bracketed=bracketed)
        if host is None:
            continue  # an unusable entry matches nothing
        if isinstance(host, str) and wildcard:
            suffixes.append(host)
        elif isinstance(host, str):
            exact.add(host)
        elif not wildcard:
            ips.add(host)
    return frozenset(exact), tuple(suffixes), frozenset(ips)


def _enum(value: Any, allowed: tuple[Any, ...]) -> str | None:
    if any(_same(value, option) for option in allowed):
        return None
    return "is not one of the allowed values"


def _same(a: Any, b: Any) -> bool:
    """JSON equality that never mixes booleans with numbers (True is not 1); 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) or isinstance(b, int | float):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return False


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _pattern(value: Any, expression: str) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if _regex(expression).fullmatch(value) is None:
        return "does not match the required pattern"
    return None


def _max_length(value: Any, limit: int) -> str | None:
    if not isinstance(value, str | list):
        return "must be a string or an array"
    return f"is longer than {limit}" if len(value) > limit else None


def _max_items(value: Any, limit: int) -> str | None:
    if not isinstance(value, list):
        return "must be an array"
    return f"has more than {limit} items" if len(value) > limit else None


def _minimum(value: Any, bound: float) -> str | None:
    problem = _number(value, bound)
    return problem or (f"is less than {bound}" if value < bound else None)


def _maximum(value: Any, bound: float) -> str | None:
    problem = _number(value, bound)
    return problem or (f"is greater than {bound}" if value > bound else None)


def _number(value: Any, bound: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(bound, bool) or not isinstance(bound, int | float) or math.isnan(bound):
        return "the configured bound is not a number; denied"  # NaN would compare as a pass
    return None


_CHECKS: dict[str, Callable[[Any, Any], str | None]] = {
    "path_within": _path_within,
    "url_hosts": _url_hosts,
    "enum": _enum,
    "pattern": _pattern,
    "max_length": _max_length,
    "min": _minimum,
    "max": _maximum,
    "max_items": _max_items,
}
