"""Secret redaction for tool results, upstream error messages and audit records.

Two sources of secrets are hidden:

**Known values** (``kind = "known"``, replaced by ``[REDACTED]``): every secret value the gateway
itself holds (the upstream tokens it injects, client secrets, callers' bearer tokens), supplied by
the ``known`` callable, which is called again on every redaction because values change at run time.
Values shorter than ``min_known_length`` are ignored; values that are not ``str`` are skipped. Each
value is searched for, case-sensitively, in these forms:

- the raw value and the value reversed;
- percent-encoding of its UTF-8 bytes: ``quote`` with ``safe`` set to ``""``, ``"/"``, the
  characters JavaScript's ``encodeURIComponent`` leaves alone and those ``encodeURI`` leaves alone,
  and ``quote_plus`` with ``safe`` ``""`` and ``"/"``; each with upper-case and with lower-case
  escapes (a form mixing both cases within one value is not covered);
- hexadecimal of its UTF-8 bytes, in any letter case;
- standard and URL-safe base64 of its UTF-8 bytes: the stand-alone encoding with and without ``=``
  padding, and, because the base64 of a value inside a larger blob depends on where it falls in
  the 3-byte grouping, the *stable core* for each of the three alignments: the characters whose
  six bits all come from the value. Whatever precedes or follows the value, its encoding inside a
  blob contains one of these cores; at most two characters each side, holding a few bits of the
  value, stay visible. Base64 and hex forms shorter than six characters (or ``min_known_length``
  if larger; in practice the cores of a 4-byte value) are not searched for: they would match
  ordinary text.

Not covered: other text encodings (UTF-16), base64 with line breaks in the middle of the value,
nested encodings (base64 of hex, double percent-encoding), compression, encryption, arbitrary
partial percent-encoding, and case changes of the raw value. Where occurrences of several forms
overlap, the whole overlapping stretch becomes one marker. Occurrences inside a marker are left
alone (a value such as ``REDACTED`` is hidden everywhere but there); one that straddles a marker's
edge is hidden together with the marker.

**Patterns** (replaced by ``[REDACTED:<kind>]``); kinds are stable, see ``KINDS``:

- ``private_key``: a whole ``-----BEGIN ... PRIVATE KEY-----`` block to its ``-----END``
  line, or to the end of the text when it is not terminated;
- ``jwt``: three base64url segments, the first two starting ``eyJ`` (a JSON object);
- ``anthropic_key`` ``sk-ant-...``; ``openai_key`` ``sk-...`` / ``sk-proj-...`` (20+ characters,
  with a digit); ``stripe_key`` ``sk_live_`` / ``rk_live_`` / ``sk_test_`` / ``rk_test_``;
  ``github_token`` ``ghp_`` / ``gho_`` / ``ghu_`` / ``ghs_`` / ``ghr_`` + 36, ``github_pat_`` + 82;
  ``gitlab_token`` ``glpat-`` and GitLab's other ``gl...-`` prefixes + 20; ``slack_token``
  ``xox[abprs]-`` / ``xapp-`` (with a digit); ``slack_webhook`` (the path after
  ``hooks.slack.com/services/``, ``/workflows/``, ``/triggers/``);
  ``gcp_api_key`` ``AIza`` + 35; ``google_oauth`` ``ya29.``; ``npm_token`` ``npm_`` + 36;
  ``aws_access_key`` ``AKIA`` / ``ASIA`` / ``AGPA`` / ``AIDA`` / ``AROA`` / ``ANPA`` / ``ANVA`` /
  ``AIPA`` + 16;
- ``aws_secret_key``: 40 base64 characters right after ``aws_secret_access_key``,
  ``secret access key``, ``SecretAccessKey`` or ``aws_secret_key``;
- ``azure_storage``: the value of ``AccountKey=`` / ``SharedAccessKey=``;
- ``connection_string``: only the password of ``scheme://user:password@host`` for postgres,
  postgresql, mysql, mariadb, mongodb(+srv), redis(s), amqp(s), mssql, sqlserver, ftp, ftps, sftp,
  http(s), ldap(s), smtp(s); the rest stays readable;
- ``bearer``: ``Bearer <token>`` (16+ characters, with a digit or both letter cases) and the
  credentials of an ``Authorization:`` header with any scheme (8+ characters);
- ``generic_secret``: the value after a credential-like key and ``=``, ``:``, ``:=``, ``=>`` or
  `` is `` (env files, JSON, YAML, prose). A key is credential-like when one of its words (split at
  ``_ . -``, spaces and camelCase) ends in ``password``, ``passwd``, ``passphrase``, ``secret``,
  ``token``, ``apikey``, ``accesskey``, ``privatekey``, ``secretkey`` or ``authkey``, is ``pwd``,
  ``pass`` or ``auth``, or is ``key`` after ``api``, ``access``, ``private``, ``secret``, ...;
  it is not when its last word describes rather than holds the secret (``token_type``,
  ``password_hint``, ``secret_name``, ``key_id``, ``*_url``, ``*_hash``, ...) or it names
  pagination or a public key (``nextPageToken``, ``public_key``). The value is redacted when it
  is high-entropy (16+ characters, two character classes or more, Shannon entropy at least 3.0
  bits per character below 24 characters and 3.5 from 24; not a URL or a file path), or, after a
  *password* key (``password``, ``passwd``, ``passphrase``, ``pwd``, ``pass``), whatever its
  entropy when it has 6+ characters: a false redaction costs little, a leaked password a lot.
  Prose is left alone: after `` is `` an unquoted run of letters ("the password is incorrect")
  is not redacted, and values shorter than six characters never are ("reset your password: go to
  settings"). Placeholders (``null``, ``string``, ``${VAR}``, ...) and file paths are left alone.
  An unquoted value ends at white space or a quote (``token=a&password=b``: when the first value
  is kept, the second key is judged on its own); a quoted one at its closing quote.

Hard negatives, left untouched: UUIDs, git SHAs and hash digests in ordinary text or under
hash/checksum/id keys, base64 data outside a credential context.

``json`` also applies the key rule to structures: a string or number under a credential-like dict
key (or the ``value`` of a ``{"name": "DB_PASSWORD", "value": ...}`` entry, ``Key``/``Value``
too) is judged as if it followed that key, and a string under an ``Authorization`` key keeps only
its scheme.

Redaction is idempotent (markers match no pattern and no known value that is not part of a marker
itself), never raises (on an internal error it fails closed: the whole text becomes
``[REDACTED]`` and ``found`` is ``{"error": 1}``) and has no super-linear regular expressions.
"""

from __future__ import annotations

import base64
import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, quote_plus

__all__ = ["KINDS", "REDACTED", "TRUNCATED", "Redaction", "SecretRedactor"]

REDACTED: Final = "[REDACTED]"  # the audit trail's marker, for known values
TRUNCATED: Final = "[TRUNCATED]"
MAX_DEPTH: Final = 64
KNOWN: Final = "known"
ERROR: Final = "error"

KINDS: Final = (
    "private_key",
    "jwt",
    "anthropic_key",
    "openai_key",
    "stripe_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "gcp_api_key",
    "google_oauth",
    "npm_token",
    "aws_access_key",
    "aws_secret_key",
    "azure_storage",
    "connection_string",
    "bearer",
    "generic_secret",
)

_MARKER_RE: Final = re.compile(r"\[REDACTED(?::[a-z_]+)?\]")
_MARKER_START: Final = "[REDACTED"
_MAX_ROUNDS: Final = 8
_MIN_ENCODED: Final = 6  # base64/hex forms shorter than this would match ordinary text
_PROBE_REGEX_ABOVE: Final = 600  # with more probes than this, one regex beats many `in` tests


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _marker(kind: str) -> str:
    return REDACTED if kind == KNOWN else f"[REDACTED:{kind}]"


def _only_markers(value: str) -> bool:
    """True when ``value`` holds markers and nothing secret-looking besides them."""
    if _MARKER_START not in value:
        return False
    return not any(ch.isalnum() for ch in _MARKER_RE.sub("", value))


@dataclass(frozen=True, slots=True)
class Redaction:
    """A redacted text and what was found in it: kind -> number of markers inserted."""

    text: str
    found: Mapping[str, int] = field(hash=False)


# --------------------------------------------------------------------------------------------
# Known values


_URLSAFE: Final = str.maketrans("+/", "-_")
# quote()'s ``safe`` sets: none, the default, encodeURIComponent's extras, encodeURI's extras.
_QUOTE_SAFE: Final = ("", "/", "!*'()", "!*'();/?:@&=+$,#")
_QUOTE_PLUS_SAFE: Final = ("", "/")
_ESCAPE_RE: Final = re.compile(r"%[0-9A-F]{2}")


def _lower_escapes(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: m.group(0).lower(), text)


def _b64_forms(data: bytes) -> set[str]:
    forms: set[str] = set()
    size = len(data)
    for lead in range(3):
        encoded = base64.b64encode(b"\0" * lead + data + b"\0\0").decode("ascii")
        first = -(-8 * lead // 6)  # the first character all of whose bits come from the value
        end = 8 * (lead + size) // 6  # one past the last such character
        forms.add(encoded[first:end])
    whole = base64.b64encode(data).decode("ascii")
    forms.update((whole, whole.rstrip("=")))
    forms.update([form.translate(_URLSAFE) for form in forms])
    return forms


def _value_forms(value: str, min_length: int) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    """(case-sensitive forms, lower-case hex forms, probes) of one known value.

    The probes are the minimal forms: finding none of them in a text proves that no form is there.
    A form is left out when it contains another one (a case-sensitive form inside it, or a hex
    form inside its lower-cased self). Hex probes are tested against the lower-cased text.
    """
    data = value.encode("utf-8", "surrogatepass")
    exact = {value, value[::-1]}
    for safe in _QUOTE_SAFE:
        encoded = quote(value, safe=safe, errors="surrogatepass")
        exact.update((encoded, _lower_escapes(encoded)))
    for safe in _QUOTE_PLUS_SAFE:
        encoded = quote_plus(value, safe=safe, errors="surrogatepass")
        exact.update((encoded, _lower_escapes(encoded)))
    floor = max(min_length, _MIN_ENCODED)
    exact.update(form for form in _b64_forms(data) if len(form) >= floor)
    hexed = data.hex()
    folded = frozenset((hexed,)) if len(hexed) >= floor else frozenset()
    probes = [
        form
        for form in exact
        if not any(other in form for other in exact if other != form) and not any(h in form.lower() for h in folded)
    ]
    probes.extend(folded)
    return frozenset(exact), folded, tuple(probes)


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching any of ``words``, longest first at each position."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        parts = []
        for ch in sorted(k for k in node if k):
            child = node[ch]
            chunk = [re.escape(ch)]
            while len(child) == 1 and "" not in child:  # a chain without branches
                (nxt,) = child
                chunk.append(re.escape(nxt))
                child = child[nxt]
            parts.append("".join(chunk) + emit(child))
        if not parts:
            return ""
        body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
        if "" in node:  # a word may end here: greedy, so longer words are tried first
            body = ("(?:" + body + ")" if len(parts) == 1 else body) + "?"
        return body

    return emit(root)


def _compile_words(words: frozenset[str], flags: int = 0) -> re.Pattern[str] | None:
    if not words:
        return None
    try:
        return re.compile(f"(?=({_trie_pattern(words)}))", flags)
    except (RecursionError, re.error, OverflowError):  # a trie too deep for the parser
        flat = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        return re.compile(f"(?=({flat}))", flags)


_NUMBER_CHARS: Final = frozenset("0123456789+-.einfa")  # str() of ints and floats, inf and nan


@dataclass(frozen=True, slots=True)
class _Known:
    """The compiled matcher for one set of known values."""

    probes: tuple[str, ...]  # tested with `in` against the text
    folded_probes: tuple[str, ...]  # tested with `in` against the lower-cased text
    probe_re: re.Pattern[str] | None  # replaces both probe lists when they are long
    exact: re.Pattern[str] | None  # overlapping scan: a lookahead capturing the longest form
    folded: re.Pattern[str] | None
    numeric: bool  # whether some form could be spelled by a number's str()

    @classmethod
    def build(
        cls, values: frozenset[str], forms: Mapping[str, tuple[frozenset[str], frozenset[str], tuple[str, ...]]]
    ) -> _Known | None:
        exact: set[str] = set()
        folded: set[str] = set()
        probes: set[str] = set()
        folded_probes: set[str] = set()
        for value in values:
            value_exact, value_folded, value_probes = forms[value]
            exact |= value_exact
            folded |= value_folded
            for probe in value_probes:
                (folded_probes if probe in value_folded else probes).add(probe)
        if not exact:
            return None
        probe_re = None
        if len(probes) + len(folded_probes) > _PROBE_REGEX_ABOVE:
            probe_re = _compile_words(frozenset(exact | folded), re.IGNORECASE)
        return cls(
            tuple(sorted(probes, key=len, reverse=True)),
            tuple(sorted(folded_probes, key=len, reverse=True)),
            probe_re,
            _compile_words(frozenset(exact)),
            _compile_words(frozenset(folded), re.IGNORECASE),
            any(set(form.lower()) <= _NUMBER_CHARS for form in exact | folded),
        )

    def present(self, text: str, lowered: str) -> bool:
        if self.probe_re is not None:
            return self.probe_re.search(text) is not None
        return any(p in text for p in self.probes) or any(p in lowered for p in self.folded_probes)

    def positions(self, text: str, lowered: str) -> list[int]:
        """Where forms may start (every occurrence of every probe)."""
        if self.probe_re is not None:
            return [m.start() for m in self.probe_re.finditer(text)]
        found: list[int] = []
        for probes, hay in ((self.probes, text), (self.folded_probes, lowered)):
            for probe in probes:
                i = hay.find(probe)
                while i >= 0:
                    found.append(i)
                    i = hay.find(probe, i + 1)
        return found

    def redact(self, text: str) -> tuple[str, int]:
        spans: list[tuple[int, int]] = []
        for scanner in (self.exact, self.folded):
            if scanner is not None:
                spans.extend((m.start(), m.end(1)) for m in scanner.finditer(text))
        if not spans:
            return text, 0
        markers = [m.span() for m in _MARKER_RE.finditer(text)] if _MARKER_START in text else []
        marker_ends = [m_end for _, m_end in markers]  # markers are disjoint: sorted both ways
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            i = bisect_right(marker_ends, start)  # the first marker ending after the span starts
            if i < len(markers) and markers[i][0] <= start and end <= markers[i][1]:
                continue  # wholly inside a marker: the marker is public text
            while i < len(markers) and markers[i][0] < end:  # never cut a marker in half
                start, end = min(start, markers[i][0]), max(end, markers[i][1])
                i += 1
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        if not merged:
            return text, 0
        pieces = []
        last = 0
        for start, end in merged:
            pieces.append(text[last:start])
            pieces.append(REDACTED)
            last = end
        pieces.append(text[last:])
        return "".join(pieces), len(merged)


# --------------------------------------------------------------------------------------------
# Patterns with their own shape
#
# CPython's regex engine scans about 5 ns per character unless a pattern starts with a literal,
# and every `in` test is a pass over the text. So the token shapes are grouped by one character
# they all contain (the "-" of "sk-", the "_" of "ghp_", the "." of "ya29."): each group is one
# pattern starting with that literal, whose alternatives check what precedes it with lookbehinds,
# and runs only when the character is in the text at all (a memchr). The decide function then
# finds where the token really starts and checks its boundary.

_Hit = tuple[str, int, int]  # kind, and the span the marker replaces
_TOKEN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_ALNUM_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True, slots=True)
class _Rule:
    gate: str  # the pattern's first character: without it in the text the pattern cannot match
    regex: re.Pattern[str]
    decide: Callable[[re.Match[str]], _Hit | None]

    def possible(self, text: str) -> bool:
        return self.gate in text and self.regex.search(text) is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self.regex.finditer(text)] if self.gate in text else []

    def apply(self, text: str, counts: dict[str, int]) -> str:
        splice = _Splice(text, counts)
        for m in self.regex.finditer(text):
            splice.add(self.decide(m))
        return splice.result()


class _Splice:
    """Builds ``text`` with hits replaced by their markers, left to right; overlapping hits are skipped."""

    __slots__ = ("counts", "last", "pieces", "text")

    def __init__(self, text: str, counts: dict[str, int]):
        self.text = text
        self.counts = counts
        self.pieces: list[str] = []
        self.last = 0  # where the text not yet copied starts

    def add(self, hit: _Hit | None) -> None:
        if hit is None:
            return
        kind, start, end = hit
        if start < self.last or start >= end or _only_markers(self.text[start:end]):
            return
        self.pieces.append(self.text[self.last:start])
        self.pieces.append(_marker(kind))
        self.last = end
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def result(self) -> str:
        if not self.pieces:
            return self.text
        return "".join((*self.pieces, self.text[self.last:]))


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


def _bounded(text: str, start: int, inside: frozenset[str] = _TOKEN_CHARS) -> bool:
    """Whether a token starting at ``start`` is not the tail of a longer word."""
    return start == 0 or text[start - 1] not in inside


def _word_start(text: str, pos: int, limit: int = 12) -> int:
    begin = pos
    while begin > 0 and pos - begin < limit and text[begin - 1] in _ALNUM_CHARS:
        begin -= 1
    return begin


_GITLAB_PREFIXES: Final = _words("glpat glptt glcbt glimt gloas glrt gldt glsoat glffct glagent")
_SLACK_PREFIXES: Final = _words("xoxa xoxb xoxp xoxr xoxs xapp")

_DASH_RE: Final = re.compile(
    r"-(?:"
    r"(?P<pk>----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----|.*))"
    r"|(?<=sk-)(?P<sk>[A-Za-z0-9_-]{20,4096}+)"
    r"|(?:(?<=gl(?:pat|ptt|cbt|imt|oas)-)|(?<=gl(?:rt|dt)-)|(?<=gl(?:soat|ffct)-)|(?<=glagent-))"
    r"(?P<gl>[A-Za-z0-9_.-]{20,255}+)"
    r"|(?:(?<=xox[abprs]-)|(?<=xapp-))(?P<slack>[A-Za-z0-9-]{10,255}+)"
    r")",
    re.DOTALL,
)


def _decide_dash(m: re.Match[str]) -> _Hit | None:
    name = m.lastgroup
    if name == "pk":
        return "private_key", m.start(), m.end()
    text = m.string
    start = _word_start(text, m.start())
    if not _bounded(text, start):
        return None
    prefix = text[start : m.start()]
    if name == "sk" and prefix == "sk":
        tail = m.group("sk")
        if tail.startswith("ant-"):
            return ("anthropic_key", start, m.end()) if len(tail) >= 24 else None
        return ("openai_key", start, m.end()) if _has_digit(tail) else None
    if name == "gl" and prefix in _GITLAB_PREFIXES:
        token = m.group("gl").rstrip(".")  # the full stop ending a sentence
        return ("gitlab_token", start, m.start("gl") + len(token)) if len(token) >= 20 else None
    if name == "slack" and prefix in _SLACK_PREFIXES:
        return ("slack_token", start, m.end()) if _has_digit(m.group("slack")) else None
    return None


_UNDERSCORE_RE: Final = re.compile(
    r"_(?:"
    r"(?<=gh[pousr]_)(?P<gh>[A-Za-z0-9]{36,251}+)(?![A-Za-z0-9_])"
    r"|(?<=github_pat_)(?P<ghpat>[A-Za-z0-9_]{82,251}+)"
    r"|(?<=npm_)(?P<npm>[A-Za-z0-9]{36})(?![A-Za-z0-9])"
    r"|(?<=[sr]k_)(?P<stripe>(?:live|test)_[A-Za-z0-9]{16,4096}+)"
    r")"
)
_UNDERSCORE_KINDS: Final = {
    "gh": ("github_token", 3),
    "ghpat": ("github_token", 10),
    "npm": ("npm_token", 3),
    "stripe": ("stripe_key", 2),
}


def _decide_underscore(m: re.Match[str]) -> _Hit | None:
    kind, back = _UNDERSCORE_KINDS[m.lastgroup or "gh"]
    start = m.start() - back
    inside = _ALNUM_CHARS if kind == "stripe_key" else _TOKEN_CHARS
    return (kind, start, m.end()) if _bounded(m.string, start, inside) else None


_DOT_RE: Final = re.compile(
    r"\.(?:"
    r"(?P<jwt>eyJ[A-Za-z0-9_-]{4,}+)(?=\.)"
    r"|(?<=ya29\.)(?P<goog>[A-Za-z0-9_-]{20,4096}+)"
    r"|(?<=hooks\.)slack\.com/(?:services|workflows|triggers)/(?P<hook>[A-Za-z0-9_/+-]{16,512}+)"
    r")"
)
_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9_-]*+")


def _decide_dot(m: re.Match[str]) -> _Hit | None:
    name = m.lastgroup
    text = m.string
    if name == "jwt":  # the match is ".eyJ<payload>"; the header is behind it, the signature after
        begin = m.start()
        while begin > 0 and m.start() - begin < 8192 and text[begin - 1] in _TOKEN_CHARS:
            begin -= 1
        header = text.find("eyJ", begin, m.start())
        if header < 0 or m.start() - header < 7:
            return None
        signature = _SEGMENT_RE.match(text, m.end() + 1)
        return "jwt", header, signature.end() if signature else m.end()
    if name == "goog":
        start = m.start() - 4
        return ("google_oauth", start, m.end()) if _bounded(text, start) else None
    return "slack_webhook", *m.span("hook")


_A_RE: Final = re.compile(
    r"A(?:"
    r"(?P<aws>(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)[A-Z0-9]{16})(?![A-Za-z0-9])"
    r"|(?P<gcp>Iza[A-Za-z0-9_-]{35})(?![A-Za-z0-9_-])"
    r")"
)


def _decide_a(m: re.Match[str]) -> _Hit | None:
    if m.lastgroup == "aws":
        return ("aws_access_key", m.start(), m.end()) if _bounded(m.string, m.start(), _ALNUM_CHARS) else None
    return ("gcp_api_key", m.start(), m.end()) if _bounded(m.string, m.start()) else None


_EQUALS_RE: Final = re.compile(
    r"=(?:(?<=AccountKey=)|(?<=SharedAccessKey=))(?P<azure>[A-Za-z0-9+/]{20,1024}+={0,2})"
)


def _decide_equals(m: re.Match[str]) -> _Hit | None:
    return "azure_storage", *m.span("azure")


_DB_SCHEMES: Final = _words(
    "amqp amqps ftp ftps http https ldap ldaps mariadb mongodb mongodb+srv mssql mysql postgres postgresql "
    "redis rediss sftp smtp smtps sqlserver"
)
_SCHEME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# The scheme is checked by looking back from "://", so the search runs on a literal prefix.
_CONNECTION_RE: Final = re.compile(r"://(?P<user>[^\s:/?#@\[\]\"'<>]{0,256}+):(?P<v>[^\s/?#\"'<>]{1,1024})@")


def _decide_connection(m: re.Match[str]) -> _Hit | None:
    text = m.string
    start = m.start()
    begin = start
    while begin > 0 and start - begin < 16 and text[begin - 1] in _SCHEME_CHARS:
        begin -= 1
    # "jdbc:postgresql://": the scheme is the part after the last colon
    if text[begin:start].lower() not in _DB_SCHEMES:
        return None
    return "connection_string", *m.span("v")


_RULES: Final = (
    _Rule("-", _DASH_RE, _decide_dash),
    _Rule("_", _UNDERSCORE_RE, _decide_underscore),
    _Rule(".", _DOT_RE, _decide_dot),
    _Rule("A", _A_RE, _decide_a),
    _Rule("=", _EQUALS_RE, _decide_equals),
    _Rule("@", _CONNECTION_RE, _decide_connection),
)


# --------------------------------------------------------------------------------------------
# Credential context: keys, headers and bearer tokens, found from keyword positions

_KEYWORDS: Final = ("pass", "pwd", "secret", "token", "key", "auth", "bearer")
_KEYWORD_RE: Final = re.compile("|".join(_KEYWORDS), re.IGNORECASE)

_GENERIC_RE: Final = re.compile(
    r"(?P<key>(?i:pass|pwd|secret|token|key|auth)[A-Za-z0-9_.-]{0,64}+)"
    r"\\?[\"']?[ \t]*+"
    r"(?P<sep>:=|=>|[:=]|(?<=[ \t])(?i:is):?(?=[ \t]))"
    r"[ \t]*+"
    r"(?:\\\"(?P<ev>[^\"\\\n]{0,1024}+)"
    r"|\"(?P<dv>(?:[^\"\\\n]|\\.){0,1024}+)"
    r"|'(?P<sv>[^'\n]{0,1024}+)"
    r"|(?P<uv>[^\s\"'`]{1,256}+))"
)
_UNQUOTED_REST: Final = re.compile(r"[^\s\"'`]*+")
_QUOTED_REST: Final = {
    "ev": re.compile(r"[^\"\\\n]*+"),
    "dv": re.compile(r"(?:[^\"\\\n]|\\.)*+"),
    "sv": re.compile(r"[^'\n]*+"),
}
_TRAILING_PUNCT: Final = ".,;:!?)]}>"
_KEY_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

_AWS_SECRET_RE: Final = re.compile(
    r"(?P<label>(?i:secret(?:[ _-]?access)?[ _-]?key))[\"'\s:=,]{1,20}+"
    r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_AWS_SECRET_SHAPE: Final = re.compile(r"[A-Za-z0-9/+]{40}")
_BEARER_RE: Final = re.compile(r"(?i:bearer)[ \t]++(?P<v>[A-Za-z0-9._~+/=-]{16,4096}+)")
_AUTH_HEADER_RE: Final = re.compile(
    r"(?i:authorization)[\"']?[ \t]*+[:=][ \t]*+[\"']?"
    r"(?:[A-Za-z][A-Za-z0-9_-]{0,30}+[ \t]++)?+(?P<v>[^\s\"'`,;<>\[\]]{8,4096}+)"
)
_AUTH_VALUE_RE: Final = re.compile(r"[ \t]*+(?:[A-Za-z][A-Za-z0-9_-]{0,30}+[ \t]++)?+(?P<v>\S{8,})")
_KEY_WORD_RE: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_CREDENTIAL_ENDINGS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "authkey",
)
_PASSWORD_ENDINGS: Final = ("password", "passwd", "passphrase")
_CREDENTIAL_WORDS: Final = frozenset(("pwd", "pass", "auth"))
_PASSWORD_WORDS: Final = frozenset(("pwd", "pass"))
_KEY_QUALIFIERS: Final = _words("access api auth client encryption license master private secret session signing")
# A last word that describes the secret rather than holding it.
_DESCRIPTORS: Final = _words(
    "account age alg algorithm at checksum count created date desc description digest dir email "
    "enabled endpoint env error exp expiration expires expiry field file filename format hash hashed "
    "header help hint host id ids index kind label len length lifetime limit location login max md "
    "message method min mode name names path pattern placeholder policy position prefix prompt "
    "provider ref regex required rotation rule rules scope scopes set sha size source state status "
    "strength suffix template time timeout title ttl type types updated uri url urls usage used user "
    "username var version"
)
# Words that make the whole key a non-secret: pagination and public keys.
_EXCLUDED: Final = _words("continuation cursor next page pagination prev previous public resume sync")
_PLACEHOLDERS: Final = _words(
    "array bool boolean disabled empty enabled false hidden int integer masked nil no none null number "
    "object off on optional password redacted required secret str string true undefined unset yes"
)
# ${VAR}, $VAR, {{ template }}, %(name)s, <your-token-here>
_REFERENCE_RE: Final = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\}|%\([A-Za-z_]+\)s|<[A-Za-z _-]+>")
_PATH_RE: Final = re.compile(r"(?:~|\.{1,2})?/(?:[\w.@-]+/)+[\w.@-]*")

_NOT_CREDENTIAL: Final = 0
_CREDENTIAL: Final = 1
_PASSWORD: Final = 2
_AUTHORIZATION: Final = 3


_KEY_CACHE: dict[str, int] = {}
_KEY_CACHE_SIZE: Final = 4096
_KEY_CACHE_LENGTH: Final = 48  # longer keys are rare and could be anything: not kept


def _classify_key(key: str) -> int:
    """The credential class of a key: not one, a credential, a password or an Authorization."""
    kind = _KEY_CACHE.get(key)
    if kind is None:
        kind = _classify_words(key) if len(key) <= 256 else _NOT_CREDENTIAL
        if len(key) <= _KEY_CACHE_LENGTH:
            if len(_KEY_CACHE) >= _KEY_CACHE_SIZE:
                _KEY_CACHE.clear()
            _KEY_CACHE[key] = kind
    return kind


def _classify_words(key: str) -> int:
    words = [w.lower() for w in _KEY_WORD_RE.findall(key) if not w.isdigit()]
    if not words:
        return _NOT_CREDENTIAL
    if words[-1] in ("authorization", "authorisation"):
        return _AUTHORIZATION
    if any(w in _EXCLUDED for w in words):
        return _NOT_CREDENTIAL
    found = -1
    password = False
    for i, word in enumerate(words):
        if word.endswith(_CREDENTIAL_ENDINGS) or word in _CREDENTIAL_WORDS:
            found, password = i, word.endswith(_PASSWORD_ENDINGS) or word in _PASSWORD_WORDS
        elif word == "key" and i and words[i - 1] in _KEY_QUALIFIERS:
            found, password = i, False
    if found < 0 or (found != len(words) - 1 and words[-1] in _DESCRIPTORS):
        return _NOT_CREDENTIAL
    return _PASSWORD if password else _CREDENTIAL


def _entropy(text: str) -> float:
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def _high_entropy(value: str) -> bool:
    size = len(value)
    if size < 16 or "://" in value:
        return False
    classes = (
        any(ch.islower() for ch in value)
        + any(ch.isupper() for ch in value)
        + any(ch.isdigit() for ch in value)
        + any(not ch.isalnum() for ch in value)
    )
    return classes >= 2 and _entropy(value) >= (3.0 if size < 24 else 3.5)


def _judge(kind: int, value: str, prose: bool) -> bool:
    """Whether ``value`` under a key of class ``kind`` is redacted."""
    if kind == _NOT_CREDENTIAL or not value:
        return False
    if _MARKER_START in value:  # partly redacted already: hide the rest too, unless only markers
        return not _only_markers(value)
    if len(set(value)) < 2 or value.lower() in _PLACEHOLDERS or _REFERENCE_RE.fullmatch(value):
        return False
    if _PATH_RE.fullmatch(value):  # "pwd: /home/user", "private_key: ./keys/id_ed25519"
        return False
    if kind == _PASSWORD and len(value) >= 6 and not (prose and value.isalpha()):
        return True
    return _high_entropy(value)


def _key_before(text: str, pos: int) -> str:
    """The key characters before ``pos``, and one qualifying word before them ("API key")."""
    begin = pos
    while begin > 0 and pos - begin < 64 and text[begin - 1] in _KEY_CHARS:
        begin -= 1
    if begin >= 2 and text[begin - 1] == " ":
        word_end = begin - 1
        word_begin = word_end
        while word_begin > 0 and word_end - word_begin < 16 and text[word_begin - 1].isalpha():
            word_begin -= 1
        if text[word_begin:word_end].lower() in _KEY_QUALIFIERS:
            begin = word_begin
    return text[begin:pos]


def _generic_at(text: str, pos: int) -> _Hit | None:
    m = _GENERIC_RE.match(text, pos)
    if m is None:
        return None
    name = m.lastgroup or "uv"
    if name not in ("ev", "dv", "sv", "uv"):
        return None
    start, end = m.span(name)
    kind = _classify_key(_key_before(text, pos) + m.group("key"))
    if kind == _NOT_CREDENTIAL:
        return None
    value = m.group(name)
    prose = False
    if _MARKER_START in value:  # partly redacted already: all of it, or nothing when only markers
        if _only_markers(value):
            return None
    elif _REFERENCE_RE.fullmatch(value):  # before the trailing ">" or "}" is taken off
        return None
    elif name == "uv":
        value = value.rstrip(_TRAILING_PUNCT)
        end = start + len(value)
        prose = m.group("sep")[:1] in "iI"
    if kind == _AUTHORIZATION:
        return None  # handled by the header rule
    if not _judge(kind, value, prose):
        return None
    if name == "uv" and m.end() - start == 256:  # the decision looked at 256 characters: hide all
        rest = _UNQUOTED_REST.match(text, m.end())
        end = max(end, rest.end() if rest else m.end())
    elif name != "uv" and end - start == 1024:
        rest = _QUOTED_REST[name].match(text, end)
        end = rest.end() if rest else end
    return "generic_secret", start, end


def _aws_secret_at(text: str, pos: int) -> _Hit | None:
    m = _AWS_SECRET_RE.match(text, pos)
    if m is None:
        return None
    if "access" not in m.group("label").lower() and not text[max(0, pos - 4) : pos].lower().startswith("aws"):
        return None
    return ("aws_secret_key", *m.span("v"))


def _bearer_at(text: str, pos: int) -> _Hit | None:
    if pos and text[pos - 1] in _TOKEN_CHARS:
        return None
    m = _BEARER_RE.match(text, pos)
    if m is None:
        return None
    token = m.group("v")
    if not (_has_digit(token) or (token.lower() != token and token.upper() != token)):
        return None  # "bearer authentication_scheme" is prose
    return ("bearer", *m.span("v"))


def _auth_header_at(text: str, pos: int) -> _Hit | None:
    if pos and text[pos - 1].isalnum():
        return None
    m = _AUTH_HEADER_RE.match(text, pos)
    return None if m is None else ("bearer", *m.span("v"))


def _keyword_positions(text: str, lowered: str) -> list[int]:
    if len(lowered) != len(text):  # lower() changed lengths (rare letters): search the text itself
        return [m.start() for m in _KEYWORD_RE.finditer(text)]
    positions: list[int] = []
    for word in _KEYWORDS:
        i = lowered.find(word)
        while i >= 0:
            positions.append(i)
            i = lowered.find(word, i + 1)
    positions.sort()
    return positions


def _keywords_possible(text: str, lowered: str) -> bool:
    """Whether the keyword pass can find anything: a keyword, and a separator it needs."""
    if not any(word in lowered for word in _KEYWORDS):
        return False
    return ":" in text or "=" in text or "secret" in lowered or "bearer" in lowered or "is" in lowered


def _separated(text: str) -> bool:
    """For a text known to hold a keyword: whether it also holds a separator the pass needs."""
    if ":" in text or "=" in text:
        return True
    lowered = text.lower()
    return "is" in lowered or "secret" in lowered or "bearer" in lowered


def _keyword_pass(text: str, lowered: str, counts: dict[str, int]) -> str:
    positions = _keyword_positions(text, lowered)
    if not positions:
        return text
    splice = _Splice(text, counts)
    same = len(lowered) == len(text)
    for pos in positions:
        if pos < splice.last:
            continue
        head = lowered[pos : pos + 13] if same else text[pos : pos + 13].lower()
        hit: _Hit | None = None
        if head.startswith("bearer"):
            hit = _bearer_at(text, pos)
        elif head.startswith("authorization"):
            hit = _auth_header_at(text, pos)
        elif head.startswith("secret"):
            hit = _aws_secret_at(text, pos)
        if hit is None:
            hit = _generic_at(text, pos)
        splice.add(hit)
    return splice.result()


def _keyed_value(key: str, value: str | float) -> str | None:
    """The replacement for ``value`` found under dict key ``key``, or None to keep it."""
    kind = _classify_key(key)
    if kind == _NOT_CREDENTIAL:
        return None
    if not isinstance(value, str):
        value = str(value)
    if kind == _AUTHORIZATION:
        m = _AUTH_VALUE_RE.match(value)
        if m is None or _only_markers(m.group("v")):
            return None
        return value[: m.start("v")] + _marker("bearer")
    squashed = key.lower().replace("_", "").replace("-", "").replace(" ", "")
    if "secretaccesskey" in squashed and _AWS_SECRET_SHAPE.fullmatch(value):
        return _marker("aws_secret_key")
    return _marker("generic_secret") if _judge(kind, value, prose=False) else None


# --------------------------------------------------------------------------------------------
# The redactor


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which passes can find anything in a text (or in all strings of a structure at once)."""

    known: bool
    rules: tuple[_Rule, ...]
    keywords: bool

    @property
    def empty(self) -> bool:
        return not (self.known or self.rules or self.keywords)


_Forms = tuple[frozenset[str], frozenset[str], tuple[str, ...]]


class SecretRedactor:
    """Hides secrets in text and JSON-like structures; see the module documentation."""

    __slots__ = ("_cache", "_forms", "_known", "_min_known_length", "_patterns")

    def __init__(
        self,
        known: Callable[[], Iterable[str]] = lambda: (),
        *,
        patterns: bool = True,
        min_known_length: int = 4,
    ) -> None:
        self._known = known
        self._patterns = patterns
        self._min_known_length = max(1, min_known_length)
        self._cache: tuple[frozenset[str], _Known | None] = (frozenset(), None)
        self._forms: dict[str, _Forms] = {}  # only the current values: old secrets are not kept

    def text(self, value: str) -> Redaction:
        """``value`` with secrets replaced by markers; the same string object when none was found."""
        try:
            matcher = self._matcher()
            if not isinstance(value, str):
                value = str(value)
            redacted, counts = self._redact(value, matcher)
            return Redaction(redacted, MappingProxyType(counts))
        except Exception:  # noqa: BLE001 - deliberate: fail closed, a redactor that cannot tell shows nothing
            return Redaction(REDACTED, MappingProxyType({ERROR: 1}))

    def json(self, value: Any) -> tuple[Any, dict[str, int]]:
        """A redacted copy of a JSON-like structure, and kind -> count of markers inserted.

        Strings are redacted wherever they are: dict values, list items and dict keys (keys that
        become equal are told apart with ``#2``, ``#3``...). ``None``, booleans and numbers are
        kept, unless a number spells a known value: then it becomes the redacted string. Tuples
        become lists; other types become their redacted ``str()``. Containers nested deeper than
        ``MAX_DEPTH``, and a container inside itself, become ``"[TRUNCATED]"``. The input is never
        changed.

        The first walk copies the structure and collects its strings; they are searched together
        for anything that may start a secret, and only when something is found does a second walk
        redact the strings it was found in.
        """
        try:
            matcher = self._matcher()
            walk = _Walk(self, matcher, collect=True)
            copy = walk.value(value, 0, set())
            plans = self._targets(walk.strings, matcher)
            if plans is not None and not plans:
                return copy, walk.counts
            walk = _Walk(self, matcher, collect=False, plans=plans)
            return walk.value(value, 0, set()), walk.counts
        except Exception:  # noqa: BLE001 - deliberate: fail closed
            return REDACTED, {ERROR: 1}

    # -- internals --------------------------------------------------------------------------

    def _matcher(self) -> _Known | None:
        values = frozenset(v for v in self._known() if isinstance(v, str) and len(v) >= self._min_known_length)
        cached_values, matcher = self._cache
        if values != cached_values:
            forms = {v: self._forms.get(v) or _value_forms(v, self._min_known_length) for v in values}
            matcher = _Known.build(values, forms)
            self._forms = forms
            self._cache = (values, matcher)
        return matcher

    def _plan(self, text: str, lowered: str, known: _Known | None) -> _Plan:
        found = known is not None and known.present(text, lowered)
        if not self._patterns:
            return _Plan(found, (), False)
        return _Plan(
            found,
            tuple(rule for rule in _RULES if rule.possible(text)),
            _keywords_possible(text, lowered),
        )

    def _targets(self, strings: list[str], known: _Known | None) -> dict[int, _Plan] | None:
        """The strings that may hold a secret, by index, with what to look for in each.

        None means every string, each with a plan of its own.
        """
        if not strings:
            return {}
        haystack = "\x00".join(strings)
        lowered = haystack.lower()
        if len(lowered) != len(haystack):  # lower() changed lengths: positions would not map back
            return None if not self._plan(haystack, lowered, known).empty else {}
        starts = []
        offset = 0
        for item in strings:
            starts.append(offset)
            offset += len(item) + 1

        def owners(positions: Iterable[int]) -> set[int]:
            return {bisect_right(starts, pos) - 1 for pos in positions}

        def covered(spans: Iterable[tuple[int, int]]) -> set[int]:
            # every string a match touches: one that runs across a separator (an unterminated
            # private key) must not hide a match in the next string
            found: set[int] = set()
            for start, end in spans:
                found.update(range(bisect_right(starts, start) - 1, bisect_right(starts, max(start, end - 1))))
            return found

        known_in = owners(known.positions(haystack, lowered)) if known is not None else set()
        rules_in: dict[int, list[_Rule]] = {}
        keywords_in: set[int] = set()
        if self._patterns:
            for rule in _RULES:
                for index in covered(rule.spans(haystack)):
                    rules_in.setdefault(index, []).append(rule)
            keywords_in = {i for i in owners(_keyword_positions(haystack, lowered)) if _separated(strings[i])}
        return {
            index: _Plan(index in known_in, tuple(rules_in.get(index, ())), index in keywords_in)
            for index in known_in | rules_in.keys() | keywords_in
        }

    def _redact(self, text: str, known: _Known | None, plan: _Plan | None = None) -> tuple[str, dict[str, int]]:
        """Rounds of (known values, patterns) until nothing changes: the result is a fixed point.

        ``plan``, when given, stands in for the first round's own (from a structure's haystack).
        """
        counts: dict[str, int] = {}
        current = text
        for _ in range(_MAX_ROUNDS):
            lowered = current.lower()
            step = plan if plan is not None else self._plan(current, lowered, known)
            plan = None
            if step.empty:
                break
            after = current
            if step.known and known is not None:
                after, found = known.redact(after)
                if found:
                    counts[KNOWN] = counts.get(KNOWN, 0) + found
            for rule in step.rules:
                after = rule.apply(after, counts)
            if step.keywords:
                after = _keyword_pass(after, after.lower() if after is not current else lowered, counts)
            if after == current:
                break
            current = after
        return (text if current == text else current), counts


class _Walk:
    """One walk over a structure.

    The collecting walk (``collect=True``) copies the structure and collects its strings, in the
    order it meets them. The redacting walk meets them in the same order and redacts those that
    have an entry in ``plans`` (all of them, each with its own plan, when ``plans`` is None).
    """

    __slots__ = ("collect", "counts", "index", "known", "patterns", "plans", "redactor", "strings")

    def __init__(
        self,
        redactor: SecretRedactor,
        known: _Known | None,
        *,
        collect: bool,
        plans: dict[int, _Plan] | None = None,
    ) -> None:
        self.redactor = redactor
        self.known = known
        self.patterns = redactor._patterns
        self.collect = collect
        self.plans = plans
        self.index = 0
        self.counts: dict[str, int] = {}
        self.strings: list[str] = []

    def text(self, value: str) -> str:
        index = self.index
        self.index += 1
        if self.collect:
            self.strings.append(value)
            return value
        plan = None
        if self.plans is not None:
            plan = self.plans.get(index)
            if plan is None:
                return value
        redacted, counts = self.redactor._redact(value, self.known, plan)
        for kind, n in counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        return redacted

    def value(self, value: Any, depth: int, path: set[int]) -> Any:
        cls = type(value)
        if cls is str:
            return self.text(value)
        if value is None or cls is bool:
            return value
        if cls is int or cls is float:
            return value if self.known is None or not self.known.numeric else self._number(value)
        if cls is dict or cls is list or cls is tuple or isinstance(value, Mapping | list | tuple):
            ident = id(value)
            if depth >= MAX_DEPTH or ident in path:
                return TRUNCATED
            path.add(ident)
            try:
                if cls is dict or (cls is not list and cls is not tuple and isinstance(value, Mapping)):
                    return self._mapping(value, depth + 1, path)
                inner = depth + 1
                walk = self.value
                return [walk(item, inner, path) for item in value]
            finally:
                path.discard(ident)
        if isinstance(value, str):  # a subclass: a plain copy of its characters
            return self.text(str.__str__(value))
        if isinstance(value, int | float):
            return value if self.known is None or not self.known.numeric else self._number(value)
        try:
            spelled = str(value)
        except Exception:  # noqa: BLE001 - an object whose str() fails still gets a text
            spelled = f"<unprintable {type(value).__name__}>"
        return self.text(spelled)

    def _number(self, value: float) -> Any:
        """A number stays a number, unless it spells a known value."""
        spelled = str(value)
        redacted = self.text(spelled)
        return value if redacted == spelled else redacted

    def _mapping(self, value: Mapping[Any, Any], depth: int, path: set[int]) -> dict[str, Any]:
        # Values are judged by their key as it reads once redacted (markers blanked out), so a
        # second redaction judges them the same way: redaction stays idempotent.
        out: dict[str, Any] = {}
        entry_name = _entry_name(value) if "value" in value or "Value" in value else None
        if entry_name is not None and not self.collect:
            entry_name = self.redactor._redact(entry_name, self.known)[0]
        text = self.text
        walk = self.value
        patterns = self.patterns
        for key, item in value.items():
            name = key if type(key) is str else _key_text(key)
            safe = text(name)
            result = text(item) if type(item) is str else walk(item, depth, path)
            if patterns and (type(result) is str or type(result) is int or type(result) is float):
                by = entry_name if entry_name is not None and name in ("value", "Value") else safe
                if _MARKER_START in by:
                    by = _MARKER_RE.sub(" ", by)
                judged = _keyed_value(by, result) if _classify_key(by) != _NOT_CREDENTIAL else None
                if judged is not None:
                    result = judged
                    kind = _kind_of(judged)
                    self.counts[kind] = self.counts.get(kind, 0) + 1
            if safe in out:  # two keys redacted to the same text: keep both values
                n = 2
                while f"{safe}#{n}" in out:
                    n += 1
                safe = f"{safe}#{n}"
            out[safe] = result
        return out


def _kind_of(marker_text: str) -> str:
    m = _MARKER_RE.search(marker_text)
    return m.group(0)[10:-1] if m is not None and ":" in m.group(0) else KNOWN


def _entry_name(value: Mapping[Any, Any]) -> str | None:
    """The name of a ``{"name": "DB_PASSWORD", "value": ...}`` entry (or ``Key``/``Value``)."""
    for field_name in ("name", "key", "Name", "Key"):
        name = value.get(field_name)
        if isinstance(name, str):
            return name
    return None


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    try:
        return str(key)
    except Exception:  # noqa: BLE001 - a key whose str() fails still gets a text
        return f"<unprintable {type(key).__name__}>"
