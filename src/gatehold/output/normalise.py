"""Text prepared for the injection detector: one canonical, lower-case, look-alike-free form.

``normalise(text)`` returns a :class:`Normalised` whose ``text`` the detector's rules run on and whose
``origin`` maps every character of it back to the character of the input it came from, so that a span
found in the normalised text can be reported (and redacted) in the original.

What the slow path does (only at the characters that need it; the result of each distinct character
is cached):

1. NFKC: fullwidth forms, ligatures, mathematical alphanumerics, circled and superscript letters
   become their plain letters (fullwidth or mathematical-bold "ignore" -> ``ignore``).
2. casefold, then diacritics are stripped (NFKD, combining marks dropped): ``ïgnörè`` -> ``ignore``.
3. Common confusables (Cyrillic and Greek look-alikes of Latin letters, and a few others) map to the
   ASCII letter they imitate: "ignore" written with Cyrillic i, o and e -> ``ignore``.
4. Invisible characters are dropped: format characters (zero-width space/joiners, bidi controls,
   soft hyphen, BOM, Unicode tag characters), control characters other than whitespace, and the
   Hangul filler letters that render as nothing. Other whitespace (no-break space, ideographic space)
   becomes a space; vertical separators become a newline.
5. Backslash escapes are decoded (``\\n`` -> newline, ``\\t`` -> space, ``\\"`` -> ``"``,
   ``\\u0041`` -> ``a``): tool results are often JSON text, where an injected line starts right
   after a literal ``\\n``.
6. Whitespace runs of 16 or more characters collapse to one character (a newline if the run holds a
   line break, so rules can still find "the start of a line", otherwise a space): padding cannot
   stretch a phrase beyond the rules' bounded gaps. Shorter runs are kept as they are; the rules
   match whitespace with ``\\s+``, never with a literal single space. (Collapsing every run would
   cost a Python-level step per run, most of the scan time on ordinary text.)

Fast path: text that is printable ASCII (plus tab, CR, LF) without a backslash and without a long
whitespace run is only lower-cased. Its length does not change, so ``origin`` is ``None``, meaning
the identity.

Nothing here raises for any ``str`` (lone surrogates included).
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import overload

__all__ = ["Normalised", "normalise", "span_in_original"]


@dataclass(frozen=True, slots=True)
class Normalised:
    """``text`` for matching; ``origin[i]`` is the index in the input of ``text[i]``.

    ``origin`` is ``None`` when the mapping is the identity (the ASCII fast path: ``text`` has the
    input's length). Otherwise it has ``len(text)`` entries and never decreases.
    """

    text: str
    origin: Sequence[int] | None


def span_in_original(n: Normalised, start: int, end: int) -> tuple[int, int]:
    """The span of the input that ``n.text[start:end]`` came from.

    Out-of-range or reversed arguments are clamped, so the result always satisfies
    ``0 <= s <= e <= len(input)``. A non-empty span maps to a non-empty span that covers every input
    character the normalised characters came from (a ligature the span only half covers is included
    whole). Characters dropped inside the span (zero-width and the like) are inside the result too.
    """
    size = len(n.text)
    start = min(max(start, 0), size)
    end = min(max(end, start), size)
    origin = n.origin
    if origin is None:
        return start, end
    if not origin:
        return 0, 0
    if start == end:
        if start < size:
            return origin[start], origin[start]
        last = origin[size - 1] + 1
        return last, last
    return origin[start], origin[end - 1] + 1


# Printable ASCII but the backslash, plus tab, LF, CR: the characters the fast path (and the slow path
# between the characters it has to look at) only lower-cases.
_PLAIN_ALL = re.compile(r"[\t\n\r\x20-\x5b\x5d-\x7e]*\Z")
_ODD = re.compile(r"[^\t\n\r\x20-\x5b\x5d-\x7e]")
_LONG_SPACE = re.compile(r"\s{16,}")
_LONG_SPACE_PROBE = b" " * 16
_NOT_SPACE = re.compile(rb"[^ ]")
_SPACES = bytes.maketrans(b"\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f", b" " * 9)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_NEWLINES = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

# Characters from other scripts drawn like a Latin letter (after casefolding), and punctuation drawn like
# ASCII punctuation. Written as escapes: the source stays readable and unambiguous. Only look-alikes of
# letters in English trigger words matter; mapping a real Cyrillic or Greek word to Latin letters cannot
# make it match an English phrase by accident in realistic text.
_CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = (
    # Cyrillic
    ("\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443", "abeekmhopcty"),
    ("\u0445\u0455\u0456\u0457\u0458\u0501\u051b\u051d\u04bb\u04cf\u04af\u04ab", "xsiijdqwhlyc"),
    ("\u0475\u0461\ua647", "vwi"),
    # Greek
    ("\u03b1\u03b2\u03b3\u03b4\u03b5\u03b7\u03b9\u03ba\u03bc\u03bd\u03bf\u03c1", "abydenikuvop"),
    ("\u03c3\u03c2\u03c4\u03c5\u03c7\u03c9\u03f2\u03f3\u03f1\u03f0", "octuxwcjpk"),
    # Armenian
    ("\u0585\u057d\u0581\u0570\u0578\u0589", "oughn:"),
    # Latin small capitals and other Latin look-alikes
    ("\u0261\u0251\u0131\u0237\u028f\u0269\u026a\u0280\u1d00\u1d04\u1d05\u1d07", "gaijyiiracde"),
    ("\u1d0b\u1d0d\u1d0f\u1d18\u1d1b\u1d1c\u1d20\u1d21\u1d22\ua731\u0262\u029c", "kmoptuvwzsgh"),
    ("\u029f\u0274\u2113\u0142\u00f8\u0111\u0127\u0167\u0180\u0188\u0192", "lnllodhtbcf"),
    # punctuation that imitates ASCII punctuation the rules look at
    ("\u2018\u2019\u201a\u201b\u2032\u201c\u201d\u201e\u2033\u2010\u2011\u2012", "'''''\"\"\"\"---"),
    ("\u2013\u2014\u2212\u2024\u3002\u2044\u2215\u29f8\u02d0\ua789\u2039\u203a", "---..///::<>"),
    ("\u27e8\u27e9", "<>"),
)
_CONFUSABLES: dict[str, str] = {k: v for src, dst in _CONFUSABLE_PAIRS for k, v in zip(src, dst, strict=True)}

# Letters that render as nothing although Unicode files them as letters.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


@lru_cache(maxsize=8192)
def _fold(ch: str) -> str:
    """The normalised form of one non-ASCII (or control) character: '' when it is dropped."""
    category = unicodedata.category(ch)
    if category == "Cc":
        return "\n" if ch in _NEWLINES else (" " if ch.isspace() else "")
    if category in ("Cf", "Cs", "Zl", "Zp") or ch in _INVISIBLE_LETTERS:
        return "\n" if ch in _NEWLINES else ""
    if category in ("Mn", "Me"):
        return ""
    if ch.isspace():
        return " "
    out = []
    for c in unicodedata.normalize("NFKC", ch).casefold():
        for d in unicodedata.normalize("NFKD", c):
            if unicodedata.combining(d) or unicodedata.category(d) in ("Mn", "Me", "Cf"):
                continue
            out.append(_CONFUSABLES.get(d, d))
    return "".join(out)


def normalise(text: str) -> Normalised:
    """The detection form of ``text`` (see the module docstring). Never raises."""
    if text.isascii() and _PLAIN_ALL.match(text) and not _long_space(text):
        return Normalised(text.lower(), None)
    pieces: list[str] = []
    origin = _Origin()
    pos = 0
    size = len(text)
    while pos < size:
        m = _ODD.search(text, pos)
        stop = size if m is None else m.start()
        if stop > pos:
            pieces.append(text[pos:stop].lower())
            origin.add(pos, stop - pos, True)
        if m is None:
            break
        if text[stop] == "\\":
            folded, width = _unescape(text, stop)
        else:
            folded, width = _fold(text[stop]), 1
        if folded:
            pieces.append(folded)
            origin.add(stop, len(folded), len(folded) == 1)
        pos = stop + width
    return _collapse("".join(pieces), origin)


class _Origin(Sequence[int]):
    """The slow path's origin map, kept as runs instead of one integer per character.

    Run ``k`` covers normalised indices from ``starts[k]`` up to the next run and maps index ``i`` to
    ``bases[k] + (i - starts[k])`` (``steps[k]`` true: characters copied one for one) or to ``bases[k]``
    (a character that expanded into several). Lookups bisect; building costs one step per run, not one
    per character.
    """

    __slots__ = ("_bases", "_size", "_starts", "_steps")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._bases: list[int] = []
        self._steps: list[bool] = []
        self._size = 0

    def add(self, base: int, length: int, step: bool) -> None:
        """Append ``length`` normalised characters that come from ``base`` (onwards, when ``step``)."""
        if length <= 0:
            return
        if (step and self._steps and self._steps[-1]
                and self._bases[-1] + (self._size - self._starts[-1]) == base):
            self._size += length  # continues the previous run
            return
        self._starts.append(self._size)
        self._bases.append(base)
        self._steps.append(step)
        self._size += length

    def extend_from(self, other: _Origin, start: int, end: int) -> None:
        """Append the mapping of ``other[start:end]``."""
        if start >= end:
            return
        k = bisect.bisect_right(other._starts, start) - 1
        while start < end:
            run_end = other._starts[k + 1] if k + 1 < len(other._starts) else other._size
            stop = min(end, run_end)
            if other._steps[k]:
                self.add(other._bases[k] + (start - other._starts[k]), stop - start, True)
            else:
                self.add(other._bases[k], stop - start, False)
            start = stop
            k += 1

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("origin index out of range")
        k = bisect.bisect_right(self._starts, index) - 1
        return self._bases[k] + (index - self._starts[k]) if self._steps[k] else self._bases[k]

    def __iter__(self) -> Iterator[int]:
        if not self._starts:
            return
        ends = [*self._starts[1:], self._size]
        for start, end, base, step in zip(self._starts, ends, self._bases, self._steps, strict=True):
            if step:
                yield from range(base, base + end - start)
            else:
                yield from itertools.repeat(base, end - start)


def _unescape(text: str, at: int) -> tuple[str, int]:
    """The backslash escape at ``text[at]`` (JSON / C style) decoded and folded, and its width."""
    kind = text[at + 1:at + 2]
    if kind in ("n", "r"):
        return "\n", 2
    if kind in ("t", "f", "v", "b"):
        return " ", 2
    if kind in ("\"", "'", "/", "\\", "`"):
        return kind, 2
    if kind in ("u", "x"):
        width = 6 if kind == "u" else 4
        digits = text[at + 2:at + width]
        if len(digits) == width - 2 and all(c in _HEX_DIGITS for c in digits):
            char = chr(int(digits, 16))
            return ("\\" if char == "\\" else _fold(char) if not _PLAIN_ALL.match(char) else char.lower()), width
    return "\\", 1


def _long_space(text: str) -> bool:
    """Whether ``text``, whose whitespace is all ASCII, has a run of 16 whitespace characters.

    (Both callers qualify: the fast path's text is ASCII, and the slow path has already turned other
    whitespace into a space or a newline.) Much cheaper than a regex search.
    """
    return _LONG_SPACE_PROBE in text.encode("utf-8", "surrogatepass").translate(_SPACES)


def _long_space_runs(text: str) -> Iterator[tuple[int, int]]:
    """The spans of whitespace runs of 16 or more characters in ``text`` (whitespace all ASCII)."""
    if not text.isascii():
        for m in _LONG_SPACE.finditer(text):
            yield m.span()
        return
    flat = text.encode("ascii").translate(_SPACES)
    start = flat.find(_LONG_SPACE_PROBE)
    while start != -1:
        found = _NOT_SPACE.search(flat, start + 16)
        end = len(flat) if found is None else found.start()
        yield start, end
        start = flat.find(_LONG_SPACE_PROBE, end)


def _collapse(joined: str, origin: _Origin) -> Normalised:
    """Collapse long whitespace runs in ``joined`` (to a newline if the run has one, else a space)."""
    if not _long_space(joined):
        return Normalised(joined, origin)
    pieces: list[str] = []
    out = _Origin()
    last = 0
    for start, end in _long_space_runs(joined):
        pieces.append(joined[last:start])
        out.extend_from(origin, last, start)
        pieces.append("\n" if any(c in _NEWLINES for c in joined[start:end]) else " ")
        out.add(origin[start], 1, True)
        last = end
    pieces.append(joined[last:])
    out.extend_from(origin, last, len(joined))
    return Normalised("".join(pieces), out)
