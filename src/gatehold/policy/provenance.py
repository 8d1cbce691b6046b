"""Argument provenance: the values in tool output an agent could copy into a later call.

A hijacked agent turns injected text into action by copying what the attacker wrote (an address,
an IBAN, a URL, a code) into the arguments of a sending tool. The gateway remembers such values
from the output each session reads and looks for them in later arguments. Values are taken by
kind, never as free text, so that matching is exact and cheap:

- e-mail addresses (lower-cased), URLs (scheme and host lower-cased, trailing punctuation and
  slash dropped) and their hosts, bare ``www.`` hosts and bare domains under common top-level
  domains;
- IBANs (spaces dropped, upper-cased), phone numbers (8+ digits, separators dropped) and other
  numbers of 5+ digits (account numbers, one-time codes); a date written with separators
  (``2024-05-19``, ``19.05.2024``, with or without an hour after it) is not a phone number: dates
  are shared by everyone and identify nobody, so they are not remembered;
- long tokens: 16+ characters of letters, digits and ``_-+/=`` with both letters and digits.

The same extraction runs on arguments (every string, and integers), so a value matches whatever
surrounds it on either side.
"""

from __future__ import annotations

import re
import string
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
_DATE = re.compile(r"(?:(\d{4})([-.])(\d{1,2})\2(\d{1,2})|(\d{1,2})([-.])(\d{1,2})\6(\d{4}))(?: \d{1,2})?")

# The patterns above say what a value is; extract() runs each only where it can match. Run over a
# whole text, a pattern that opens with a lookbehind is tried at every position. Instead the text is
# read through its "shadow": one byte per character, "?" for a character outside ASCII (and for "?").
# Byte tables map the shadow to a few classes, and bytes.find on those finds the only places a
# pattern could match: five digits in a row (numbers), an upper-case pair before two digits (IBANs),
# eight phone characters in a row, sixteen token characters in a row, a dot before a top-level
# domain; e-mail addresses and URLs start from their "@" and "://". Where a character outside ASCII
# could take part (a digit outside ASCII, or one of the four letters outside ASCII that _DOMAIN
# takes as a-z), a "?" counts as whatever could make a match possible. No place is missed, and
# there the patterns run on the text itself, with the characters on either side in view, so they
# decide as they would on the whole text.
_AT_DOMAIN = re.compile(_EMAIL.pattern[_EMAIL.pattern.index("@"):])  # _EMAIL from its "@" on
_WORD = re.compile(r"\w")
_DIGIT = re.compile(r"\d")
_DIGIT_AND_LETTER = re.compile(r"(?=[^0-9]*[0-9])(?=[^A-Za-z]*[A-Za-z])")
_DOMAIN_LETTERS = "\u0130\u0131\u017f\u212a"  # outside ASCII, yet i, i, s and k to _DOMAIN
_ASCII = bytes(range(128))
_PHONE_SEPARATORS = str.maketrans("", "", " ().+-")
_TLD_SET = frozenset(_TLDS.encode().split(b"|"))


def _trie(words: list[bytes]) -> bytes:
    """A regex for exactly ``words`` (ASCII letters, either case), branching one letter at a time."""
    heads: dict[bytes, list[bytes]] = {}
    for word in words:
        heads.setdefault(word[:1], []).append(word[1:])
    branches = [b"[%s%s]%s" % (head.lower(), head.upper(), _trie(tails) if any(tails) else b"")
                for head, tails in sorted(heads.items()) if head]
    optional = b"?" if b"" in words else b""
    return b"(?:%s)%s" % (b"|".join(branches), optional)


# A dot that a top-level domain follows; the lookahead turns most dots away before the branches are
# tried. The wide one also takes a "?" among the letters.
_TLD_LENGTHS = b"{%d,%d}" % (min(map(len, _TLD_SET)), max(map(len, _TLD_SET)))
_TLD_HINT = re.compile(rb"\.(?=[a-zA-Z]%s(?![\w-]))%s(?![\w-])" % (_TLD_LENGTHS, _trie(sorted(_TLD_SET))))
_TLD_HINT_WIDE = re.compile(rb"\.(?=[a-zA-Z?]%s(?![\w-]))(?:%s(?![\w-])|[a-zA-Z]{0,%d}\?)" % (
    _TLD_LENGTHS, _trie(sorted(_TLD_SET)), max(map(len, _TLD_SET)) - 1))


def _classes(default: bytes, classes: dict[bytes, str]) -> bytes:
    """A bytes.translate table: each character of a value to its key, any other byte to default."""
    table = bytearray(default * 256)
    for name, chars in classes.items():
        for byte in chars.encode():
            table[byte] = name[0]
    return bytes(table)


def _digit_classes(digits: str) -> tuple[bytes, bytes, bytes]:
    """Tables for digits, IBANs (upper-case letters and digits) and phone numbers."""
    return (_classes(b".", {b"d": digits}), _classes(b".", {b"A": string.ascii_uppercase, b"d": digits}),
            _classes(b".", {b"p": digits + " ().+-"}))


_LOCAL_CLASS = _classes(b" ", {b"l": string.ascii_letters + string.digits + "._%+-"})
_TOKEN_CLASS = _classes(b".", {b"t": string.ascii_letters + string.digits + "_+/=-"})
_DIGIT_CLASSES, _DIGIT_CLASSES_WIDE = _digit_classes(string.digits), _digit_classes(string.digits + "?")
_WORD_CHARS = string.ascii_letters + string.digits + "_@.-"  # what _DOMAIN's lookbehind refuses
_WORD_CLASS, _WORD_CLASS_WIDE = _classes(b" ", {b"w": _WORD_CHARS}), _classes(b" ", {b"w": _WORD_CHARS + "?"})


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
    shadow = text.encode("ascii", "replace")
    ascii_only = text.isascii()
    if "@" in text:
        yield from _emails(text, shadow.translate(_LOCAL_CLASS))
    if "://" in text:
        yield from _urls(text)
    if "." in text:
        yield from _domains(text, shadow, not ascii_only and any(map(text.__contains__, _DOMAIN_LETTERS)))
    digit_class, iban_class, phone_class = (
        _DIGIT_CLASSES if ascii_only or not _digits_outside_ascii(text) else _DIGIT_CLASSES_WIDE)
    digits = shadow.translate(digit_class)
    if b"d" not in digits:
        return
    yield from _ibans(text, shadow.translate(iban_class))
    yield from _phones(text, shadow, shadow.translate(phone_class), digits)
    yield from _numbers(text, digits)
    yield from _tokens(text, shadow.translate(_TOKEN_CLASS))


def _digits_outside_ascii(text: str) -> bool:
    rest = text.encode("utf-8", "surrogatepass").translate(None, _ASCII).decode("utf-8", "surrogatepass")
    return _DIGIT.search(rest) is not None


def _emails(text: str, local: bytes) -> Iterator[str]:
    # An address has one "@", and what follows the "@" decides alone whether the address is there.
    # It starts as far back as the local part's characters go, but at most 64 of them and not
    # before the address before it ended.
    end = 0
    for m in _AT_DOMAIN.finditer(text):
        at = m.start()
        earliest = max(end, at - 64)
        start = local.rfind(b" ", earliest, at) + 1 or earliest  # after the last non-local character
        if start < at:
            end = m.end()
            yield text[start:end].lower()


def _urls(text: str) -> Iterator[str]:
    end = 0
    at = text.find("://")
    while at >= 0:
        for start in (at - 5, at - 4):  # where "https://" or "http://" would start
            if start >= end and (m := _URL.match(text, start)):
                url, host = _url_key(m.group())
                yield url
                if host:
                    yield host.removeprefix("www.")
                end = m.end()
                break
        at = text.find("://", max(at + 1, end))


def _domains(text: str, shadow: bytes, wide: bool) -> Iterator[str]:
    # A domain ends with a dot and a top-level domain, and starts a run of the characters its
    # lookbehind refuses, so a run holds at most one; only runs with such an ending are read. No dot
    # before the first hint in a run ends a top-level domain, so a start with an "@" between it and
    # the hint starts no domain. When wide, a "?" may be in a run, and a run may start after it.
    hint, word_class = (_TLD_HINT_WIDE, _WORD_CLASS_WIDE) if wide else (_TLD_HINT, _WORD_CLASS)
    words = b""
    end = 0
    for m in hint.finditer(shadow):
        dot = m.start()
        if dot < end:
            continue
        words = words or shadow.translate(word_class)
        start = words.rfind(b" ", 0, dot) + 1
        end = words.find(b" ", dot)
        end = len(words) if end < 0 else end
        while start >= 0:
            if shadow.find(b"@", start, dot) < 0 and (d := _DOMAIN.match(text, start, end + 1)):
                yield d.group().lower().removeprefix("www.")
            at = shadow.find(b"?", start, end) if wide else -1
            while at >= 0 and text[at].isalnum():  # a word character (the regex engine's own test)
                at = shadow.find(b"?", at + 1, end)
            start = at + 1 if at >= 0 else -1


def _ibans(text: str, classes: bytes) -> Iterator[str]:
    end = 0
    at = classes.find(b"AAdd")
    while at >= 0:
        if m := _IBAN.match(text, at):
            yield m.group().replace(" ", "")
            end = m.end()
        at = classes.find(b"AAdd", max(at + 1, end))


def _phones(text: str, shadow: bytes, classes: bytes, digits: bytes) -> Iterator[str]:
    # A number lies in a run of phone characters and ends before a character that is no word
    # character: a run without 8 digits before such a character gives no value.
    at = classes.find(b"pppppppp")
    while at >= 0:
        end = classes.find(b".", at)
        end = len(classes) if end < 0 else end
        limit = end
        if end < len(text) and _WORD.match(text, end) and shadow.find(b"?", at, end) < 0:
            limit = digits.rfind(b".", at, end)  # the last separator
        if limit > at and digits.count(b"d", at, limit) >= 8:
            for m in _PHONE.finditer(text, at, end + 1):
                number = m.group().translate(_PHONE_SEPARATORS)  # what is left is \d
                if 8 <= len(number) <= 15 and not is_date(m.group()):
                    yield ("+" if m.group().startswith("+") else "") + number
        at = classes.find(b"pppppppp", end)


def is_date(text: str) -> bool:
    """Whether ``text`` is a calendar date with separators (year first or last), maybe with an hour."""
    m = _DATE.fullmatch(text)
    if m is None:
        return False
    if m.group(1) is not None:
        month, day = int(m.group(3)), int(m.group(4))
    else:
        first, second = int(m.group(5)), int(m.group(7))
        month, day = (first, second) if first <= 12 and second > 12 else (second, first)
    return 1 <= month <= 12 and 1 <= day <= 31


def _numbers(text: str, digits: bytes) -> Iterator[str]:
    at = digits.find(b"ddddd")
    while at >= 0:
        end = digits.find(b".", at)
        end = len(digits) if end < 0 else end
        for m in _NUMBER.finditer(text, at, end + 1):
            yield m.group()
        at = digits.find(b"ddddd", end)


def _tokens(text: str, classes: bytes) -> Iterator[str]:
    # A token is a whole run of token characters, so it can only start where such a run starts.
    at = classes.find(b"t" * 16)
    while at >= 0:
        if (m := _TOKEN.match(text, at)) and _DIGIT_AND_LETTER.match(token := m.group()):
            yield token
        end = classes.find(b".", at)
        if end < 0:
            return
        at = classes.find(b"t" * 16, end)


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
