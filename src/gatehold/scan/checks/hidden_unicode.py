"""Hidden characters in metadata, and tool names built from look-alike letters.

``hidden-unicode`` reads every text field and every name of every definition (and the server's own
name) for characters a person reviewing the server does not see but a model reads: zero-width
characters, Unicode tag characters (U+E0000 block: invisible copies of ASCII that can spell a whole
instruction), bidi controls (which reorder what is displayed), terminal escapes and other control
characters, and the remaining invisible format characters. The classes and their counts come from
the gateway's own :class:`gatehold.output.sanitise.Sanitiser`, so the scanner and the gateway agree on
what is hidden. The parts of emoji sequences that are invisible by design (variation selectors after
a symbol, zero-width joiners between emoji, the tag characters of a subdivision flag) are not counted.

Tool and prompt names are also checked for look-alikes: letters of more than one script in one name
(Latin with Cyrillic or Greek, the classic homoglyph mix), outside the combinations that writing
systems use legitimately (Latin with Han and Japanese kana, Bopomofo or Hangul, as in Unicode's
"highly restrictive" identifier profile), and compatibility letters (fullwidth, mathematical,
ligatures) that Unicode normalisation (NFKC) folds into plain ones.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

from gatehold.output.normalise import normalise
from gatehold.output.sanitise import Sanitiser
from gatehold.scan.checks.fields import text_fields, visible
from gatehold.scan.model import CheckInfo, Finding, ItemKind, ScanInput, ServerSnapshot

__all__ = ["CHECKS", "HIDDEN_UNICODE", "hidden_counts", "run", "scripts"]

HIDDEN_UNICODE = CheckInfo(
    id="hidden-unicode",
    title="Invisible characters or look-alike letters in names and metadata",
    severity="high",
    rationale=(
        "Zero-width characters, Unicode tag characters, bidi controls and terminal escapes are invisible "
        "(or rearrange what is shown) in the interfaces where people review tools, yet the model reads "
        "them: tag characters can spell a whole hidden instruction, and bidi controls can make a reviewer "
        "read something other than what the model gets. A tool name mixing scripts (read_file spelled with "
        "a Cyrillic a) imitates another tool's name."),
    remediation=(
        "Treat the server as hostile until its maintainer explains the characters; remove them from the "
        "metadata. Gatehold's gateway strips these characters from descriptions and quarantines definitions "
        "that carry them (`output.injection.metadata: quarantine`)."),
)

CHECKS: tuple[CheckInfo, ...] = (HIDDEN_UNICODE,)

_SANITISER = Sanitiser()
_CLASSES = {"zero_width": "zero-width", "tag_chars": "Unicode tag", "bidi": "bidi control",
            "ansi": "terminal escape or control", "format": "other invisible format"}
# Format characters that are visible marks of their scripts (Arabic, Syriac, Kaithi number signs...).
_VISIBLE_FORMAT = frozenset({*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD})
_EMOJI_SELECTORS = frozenset({0xFE0E, 0xFE0F})
_ZWJ = 0x200D
_BLACK_FLAG = 0x1F3F4
_CANCEL_TAG = 0xE007F
_KEYCAP_BASES = frozenset("#*0123456789")
# Script combinations that writing systems use within one word (UTS #39, highly restrictive).
_ALLOWED_MIXES = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "HAN", "BOPOMOFO"}),
                  frozenset({"LATIN", "HAN", "HANGUL"}))
_SCRIPT_ALIASES = {"CJK": "HAN", "KANGXI": "HAN", "IDEOGRAPHIC": "HAN", "HALFWIDTH": "KATAKANA",
                   "KATAKANA-HIRAGANA": "KATAKANA"}


def run(scan: ScanInput) -> Iterator[Finding]:
    for server in scan.servers:
        if server.name:
            yield from _field(server, "server", None, "name", server.name)
        for kind, name, definition in server.items():
            yield from _definition(server, kind, name, definition)


def _definition(server: ServerSnapshot, kind: ItemKind, name: str, definition: Mapping[str, Any]) -> Iterator[Finding]:
    for field in text_fields(definition):
        yield from _field(server, kind, name, field.path, field.value)
    raw_name = definition.get("name")
    if kind in ("tool", "prompt") and isinstance(raw_name, str):
        yield from _lookalike(server, kind, raw_name)


def _field(server: ServerSnapshot, kind: ItemKind, name: str | None, path: str, text: str) -> Iterator[Finding]:
    counts, first = hidden_counts(text)
    if not counts:
        return
    summary = ", ".join(f"{n} {_CLASSES[k]}" for k, n in counts.items())
    owner = f"{kind} {visible(name, 60)!r}" if name is not None else f"server {visible(text, 60)!r}"
    evidence = summary
    tags = "".join(chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E)
    if len(tags) >= 4:
        evidence += f"; tag characters spell {visible(tags, 80)!r}"
    start = max(0, first - 24)
    evidence += f"; text: {'…' if start else ''}{visible(text[start:], 140)}"
    yield Finding(HIDDEN_UNICODE.id, HIDDEN_UNICODE.severity, f"{owner}: hidden characters in {visible(path, 80)} "
                  f"({summary})", server.at(kind, name, visible(path, 200)), evidence)


def _emoji_parts(text: str) -> set[int]:
    """Positions of characters that are invisible parts of emoji sequences (not hidden content)."""
    keep: set[int] = set()
    i = 0
    while i < len(text):
        code = ord(text[i])
        previous = text[i - 1] if i else ""
        selector = code in _EMOJI_SELECTORS and previous != "" and (
            unicodedata.category(previous) == "So" or previous in _KEYCAP_BASES)
        joiner = code == _ZWJ and previous != "" and i + 1 < len(text) and (
            unicodedata.category(previous) == "So" or ord(previous) in _EMOJI_SELECTORS
            or 0x1F3FB <= ord(previous) <= 0x1F3FF) and unicodedata.category(text[i + 1]) == "So"
        if selector or joiner:
            keep.add(i)
        elif code == _BLACK_FLAG:
            j = i + 1
            while j < len(text) and 0xE0020 <= ord(text[j]) <= 0xE007E and j - i <= 8:
                j += 1
            if j < len(text) and ord(text[j]) == _CANCEL_TAG and j > i + 1:
                keep.update(range(i + 1, j + 1))
                i = j
        i += 1
    return keep


def hidden_counts(text: str) -> tuple[dict[str, int], int]:
    """Hidden characters of ``text`` by class (see ``_CLASSES``), and the position of the first one.

    Empty when there are none.
    """
    emoji = _emoji_parts(text) if not text.isascii() else set()
    prepared = "".join(c for i, c in enumerate(text) if i not in emoji) if emoji else text
    cleaned = _SANITISER.clean(prepared)
    counts = {k: n for k, n in cleaned.removed.items() if k in _CLASSES}
    other = sum(1 for c in cleaned.text if unicodedata.category(c) == "Cf" and ord(c) not in _VISIBLE_FORMAT)
    if other:
        counts["format"] = other
    if not counts:
        return {}, -1
    first = next((i for i, c in enumerate(text) if i not in emoji and _invisible(c)), 0)
    return counts, first


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    return (category in ("Cc", "Cf") and char not in "\t\n\r" and ord(char) not in _VISIBLE_FORMAT) or (
        0xFE00 <= ord(char) <= 0xFE0F or 0xE0100 <= ord(char) <= 0xE01EF or char in "\u034f\u115f\u1160\u3164\uffa0")


def scripts(name: str) -> set[str]:
    """The scripts of the letters in ``name`` (Unicode character-name prefixes: LATIN, CYRILLIC, HAN...)."""
    found: set[str] = set()
    for char in name:
        if not char.isalpha():
            continue
        first = unicodedata.name(char, "UNKNOWN").split(" ")[0]
        found.add(_SCRIPT_ALIASES.get(first, first))
    return found


def _lookalike(server: ServerSnapshot, kind: ItemKind, name: str) -> Iterator[Finding]:
    where = server.at(kind, name, "name")
    folded = unicodedata.normalize("NFKC", name)
    if folded != name:
        yield Finding(HIDDEN_UNICODE.id, HIDDEN_UNICODE.severity,
                      f"{kind} name {visible(name, 60)!r} uses compatibility characters that read as "
                      f"{visible(folded, 60)!r}", where, _escaped(name))
    found = scripts(folded)
    if len(found) > 1 and not any(found <= allowed for allowed in _ALLOWED_MIXES):
        skeleton = normalise(folded).text
        yield Finding(HIDDEN_UNICODE.id, HIDDEN_UNICODE.severity,
                      f"{kind} name {visible(name, 60)!r} mixes letters of {' and '.join(sorted(found))} scripts "
                      f"(reads like {visible(skeleton, 60)!r})", where, _escaped(name))


def _escaped(name: str) -> str:
    """The name with every non-ASCII character written as ``<U+XXXX>``: shows which letters differ."""
    return visible("".join(c if c.isascii() else f"<U+{ord(c):04X}>" for c in name), 160)
