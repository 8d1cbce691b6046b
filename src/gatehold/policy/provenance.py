"""Argument provenance: the values in tool output an agent could copy into a later call.

A hijacked agent turns injected text into action by copying what the attacker wrote (an address,
an IBAN, a URL, a code) into the arguments of a sending tool. The gateway remembers such values
from the output each session reads and looks for them in later arguments. Values are taken by
kind, never as free text, so that matching is exact and cheap:

- e-mail addresses (lower-cased), URLs (scheme and host lower-cased, trailing punctuation and
  slash dropped) and their hosts, bare ``www.`` hosts and bare domains under common top-level
  domains;
- IBANs (spaces dropped, upper-cased), phone numbers (8+ digits, separators dropped) and other
  numbers of 5+ digits (account numbers, one-time codes);
- long tokens: 16+ characters of letters, digits and ``_-+/=`` with both letters and digits.

The same extraction runs on arguments (every string, and integers), so a value matches whatever
surrounds it on either side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_VALUE_LENGTH = 512
_MAX_SCAN = 1_000_000  # characters of one output scanned for values
_MAX_DEPTH = 32

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")
_URL = re.compile(r"\bhttps?://[^\s<>\"'`)\]}|\\^]{1,2000}", re.IGNORECASE)
_TLDS = ("com|net|org|io|co|ai|app|dev|info|biz|me|xyz|online|site|top|shop|store|tech|cloud|link|live|"
         "email|ru|cn|de|uk|fr|ch|nl|eu|us|ca|au|in|br|jp|it|es|se|no|pl|tk|ml|ga|cf|gq|cc|tv|ly|to|gg")
_DOMAIN = re.compile(rf"(?<![\w@.-])(?:www\.)?(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![\w-])",
                     re.IGNORECASE)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,20}\d(?!\w)")
_NUMBER = re.compile(r"(?<![\w.])\d{5,32}(?![\w])")
_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9_+/=-]{16,256}(?![\w+/=-])")
_TRAILING = ".,;:!?'\"/"


def _url_key(raw: str) -> tuple[str, str]:
    url = raw.rstrip(_TRAILING)
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1].lower().rstrip(".")
    return f"{scheme.lower()}://{host}{slash}{path}".rstrip("/"), host


def extract(text: str) -> Iterator[str]:
    """Every value of a remembered kind in ``text``, normalised (duplicates possible)."""
    if len(text) > _MAX_SCAN:
        text = text[:_MAX_SCAN]
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.group().lower()
    if "://" in text:
        for m in _URL.finditer(text):
            url, host = _url_key(m.group())
            yield url
            if host:
                yield host.removeprefix("www.")
    if "." in text:
        for m in _DOMAIN.finditer(text):
            yield m.group().lower().removeprefix("www.")
    if not any(ch.isdigit() for ch in text):
        return
    for m in _IBAN.finditer(text):
        yield m.group().replace(" ", "")
    for m in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 8 <= len(digits) <= 15:
            yield ("+" if m.group().startswith("+") else "") + digits
    for m in _NUMBER.finditer(text):
        yield m.group()
    for m in _TOKEN.finditer(text):
        token = m.group()
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            yield token


def values_in(value: Any, depth: int = 0) -> set[str]:
    """The remembered-kind values inside a JSON value (strings and integers, keys included)."""
    found: set[str] = set()
    if depth > _MAX_DEPTH:
        return found
    if isinstance(value, str):
        found.update(v for v in extract(value) if len(v) <= MAX_VALUE_LENGTH)
        if "+" in value or "-" in value or " " in value:
            # A phone number written with separators is also remembered as its digits.
            compact = re.sub(r"[\s().-]", "", value)
            if compact != value and re.fullmatch(r"\+?\d{8,15}", compact):
                found.add(compact)
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10_000:
            found.add(str(abs(value)))
    elif isinstance(value, dict):
        for key, item in value.items():
            found |= values_in(key, depth + 1)
            found |= values_in(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= values_in(item, depth + 1)
    return found
