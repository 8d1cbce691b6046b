"""Hidden-content sanitiser for text that upstream MCP servers hand to the model.

Results, resource reads, prompts and tool or prompt descriptions can carry content the user never
sees but the model reads: invisible Unicode, terminal escapes, HTML comments and hidden elements,
and markdown or HTML images and links that send data elsewhere when rendered or followed.
``Sanitiser.clean`` removes or neutralises them and counts what it removed per class.

For every ``str`` t, ``clean`` never raises, and:

* idempotent: ``clean(clean(t).text)`` returns the same text and removes nothing. Removing one
  construct can join its neighbours into a new one (``<sp<!-- -->an hidden>``), so the structural
  rules run until nothing changes. Each change shortens the text, so this ends; text still changing
  after ``_PASSES`` rounds is adversarial, and its ``<``, ``[``, ``]`` and ``data:`` colons are
  deleted, which leaves nothing for any rule to match;
* bounded: ``len(clean(t).text) <= len(t)``. Each rule deletes, or puts something strictly shorter
  in place of a construct: a marker such as ``[image removed]`` replaces only a longer construct,
  and a shorter one is deleted outright;
* text with no trigger character comes back as the same object.

HTML is read by a small scanner, not a parser: browser tokenizer rules until a tag runs off the end
of the text (a browser would swallow the rest, CommonMark shows it as text), CommonMark's stricter
inline grammar after that, so no input makes it rescan far. The patterns run on every pass start
with a literal, so the regex engine skips quickly to where a construct could begin; the others
run only when a substring check finds what they need. The passes run at all only when the text
has one of the few sequences without which no structural rule matches anything (``_structural``),
so text such as JSON, with brackets but no link, is not scanned by them.
"""

from __future__ import annotations

import contextlib
import functools
import html
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

_NOTHING: Mapping[str, int] = MappingProxyType({})
_END: Any = object()
_PASSES = 8
_IMAGE, _LINK, _DATA_MARK = "[image removed]", "[link removed]", "[data URI removed]"

# zero_width takes U+200D (joiner) and U+FE0F too: emoji sequences fall apart into their parts and some
# emoji lose their colour presentation. Accepted.
_ZERO_WIDTH = (r"\u200b-\u200d\u2060-\u2064\ufeff\u180e\u00ad\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0"
               r"\ufe00-\ufe0f\ufff9-\ufffb\U0001d173-\U0001d17a\U000e0100-\U000e01ef")
_TAG_CHARS = r"\U000e0000-\U000e007f"
_BIDI = r"\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 but tab, LF and CR; DEL; C1
_CHAR_CLASSES = tuple((name, re.compile(f"[{chars}]"))
                      for name, chars in (("zero_width", _ZERO_WIDTH), ("tag_chars", _TAG_CHARS), ("bidi", _BIDI)))
_CHARS = re.compile(f"[{_CONTROLS}{_ZERO_WIDTH}{_TAG_CHARS}{_BIDI}]")
# The fast path (see _has_chars and _structural).
_ASCII_CONTROL_BYTES = (*range(9), 11, 12, *range(14, 32), 127)  # what _CHARS takes in ASCII
_ASCII_CONTROLS = tuple(map(chr, _ASCII_CONTROL_BYTES))
_ASCII_BYTES = bytes(range(128))
_TAG_HINT = re.compile(r"<[a-zA-Z!/?]")
_DATA_HINT = re.compile(r":(?<=[dD][aA][tT][aA]:)")
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*+[ -/]*+[@-~]?"  # CSI: parameter and intermediate bytes, final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*+(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, SOS, PM, APC
    rf"|\x1b[ -/]*+[0-~]?|[{_CONTROLS}]")  # any other escape; any other control

# Browsers hide CDATA, declarations and processing instructions like comments.
_COMMENT = re.compile(r"<(?:!--(?:-?>)?|!\[CDATA\[|![a-zA-Z]|\?)")
_COMMENT_END = re.compile(r"--!?>")
_TERMINATOR = {"<![": "]]>", "<!": ">", "<?": "?>"}
# The markdown comment idiom: a link definition to '#' or '<>' whose title holds the text.
_MD_COMMENT = re.compile(r"^[ \t]{0,3}\[[^\[\]\n]*+\]:[ \t]*+(?:#|<>)(?:[ \t]++(?:\"[^\"\n]*+\"|'[^'\n]*+'"
                         r"|\([^()\n]*+\)))?+[ \t]*+\r?(?:\n|\Z)", re.M)

_OPEN = re.compile(r"</?[a-zA-Z]")
_LENIENT = re.compile(  # the browser tokenizer: fails only when the tag runs to the end of the text
    r"""<(/?)([a-zA-Z][^\s/>]*+)((?:[\s/]++|[^\s/>][^\s/>=]*+"""
    r"""(?>\s*+=\s*+(?:"[^"]*+"|'[^']*+'|(?!["'])[^\s>]*+)|(?!\s*=)))*+)>""", re.A)
_STRICT = re.compile(  # CommonMark inline HTML: fails at the first character out of place
    r"""<(/?)([a-zA-Z][a-zA-Z0-9-]*+)((?:\s++[a-zA-Z_:][\w.:-]*+"""
    r"""(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s"'=<>`]++))?+)*+)\s*+/?>""", re.A)
_ATTR = re.compile(r"""([^\s/>][^\s/>=]*+)(?:\s*+=\s*+("[^"]*+"|'[^']*+'|[^\s>]*+))?""", re.A)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                   "wbr"})
_RAW = frozenset({"script", "style", "noscript", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})
_ALWAYS_HIDDEN = frozenset({"script", "style", "template", "noscript", "title"})
_RAW_END = {name: re.compile(rf"</{name}(?=[\s/>])", re.I | re.A) for name in _RAW}
_FETCH_ATTRS = ("src", "poster", "background", "data", "href", "lowsrc", "dynsrc", "xlink:href")
_LINK_ATTRS = ("href", "ping", "xlink:href")
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]*)""", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_LENGTH = re.compile(r"(-?(?:\d+\.?\d*|\.\d+))(px|pt|pc|r?em|ex|ch|%|vw|vh|vmin|vmax|cm|mm|in|q)?$")
_TO_PX = {"": 1, "px": 1, "pt": 4 / 3, "pc": 16, "em": 16, "rem": 16, "ex": 8, "ch": 8, "%": 0.16, "vw": 10, "vh": 10,
          "vmin": 10, "vmax": 10, "cm": 37.8, "mm": 3.78, "in": 96, "q": 0.95}
_WHITE = re.compile(r"white|transparent|#f{3,4}|#f{6}|#f{8}"
                    r"|rgba?\((?:255|100%)[\s,]+(?:255|100%)[\s,]+(?:255|100%)(?:[\s,/]+[\d.]+%?)?\)"
                    r"|rgba?\((?:[^,)]*,){3}\s*0*\.?0+%?\s*\)|rgba?\([^,)/]*/\s*0*\.?0+%?\s*\)")
_CLIP_PATH = re.compile(r"inset\(\s*(?:[5-9]\d|[1-9]\d\d)(?:\.\d+)?%|circle\(\s*0[^.\d]")
_SCALE_ZERO = re.compile(r"scale[xy]?\(\s*-?0*\.?0+\s*[,)]")

_BRACKETED = r"(?:[^\[\]\\]|\\[\s\S])*+"
_TEXT = rf"\[(?P<text>(?:[^\[\]\\]|\\[\s\S]|\[{_BRACKETED}\])*+)\]"
# Only the destination decides; a title and the closing parenthesis are consumed when present.
_DEST = (r"\(\s*+(?P<{0}><[^<>\n]*+>|(?!<)[^\s()]*+)(?:(?:\([^\s()]*+\)[^\s()]*+)*+"
         r"""(?:\s++(?:"[^"]*+"|'[^']*+'|\([^()]*+\)))?+\s*+\))?+""")
# A ']' that no link consumed (brackets nested deeper than the pattern follows) still has its
# destination checked: the "orphan". A preceding '!' makes a link an image.
_MD = re.compile(rf"{_TEXT}(?:{_DEST.format('dest')})?|\]{_DEST.format('orphan')}"
                 r"|<(?P<auto>[a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*+)>")
_FULL_REF = re.compile(rf"{_TEXT}\[(?P<ref>{_BRACKETED})\]")
_DEF = re.compile(rf"^[ ]{{0,3}}\[(?P<label>{_BRACKETED})\]:[ \t]*+\n?[ \t]*+(?P<url><[^<>\n]*+>|[^\s<]\S*+)"
                  r"[^\n]*+\n?", re.M)
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_DATA = re.compile(r"""\bdata:[\w.+/-]*+(?:;[\w.+=-]*+)*+,[^\s)"'>]*+""", re.I | re.A)
_DATA_COLON = re.compile(r"(?<=[dD][aA][tT][aA]):+")

_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")
_AUTHORITY_END = re.compile(r"[/?#]")
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp"})  # browsers skip any slashes after these
_URL_DROP = {ord(c): None for c in "\t\n\r"}
_URL_EDGE = "".join(map(chr, range(33)))


@dataclass(frozen=True, slots=True)
class Cleaned:
    text: str
    removed: Mapping[str, int]  # class name -> count; empty when nothing was removed

    @property
    def changed(self) -> bool:
        return bool(self.removed)


class Sanitiser:
    """Removes hidden content; links and images survive only to ``allowed_hosts``.

    An entry is an exact host or ``*.example.com`` (any subdomain, not the apex). Hosts compare after
    IDNA encoding, lower-casing and dropping trailing dots; ports are ignored.
    """

    __slots__ = ("_exact", "_suffixes")

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        exact, suffixes = set[str](), set[str]()
        for entry in (e.strip() for e in allowed_hosts):
            wildcard = entry.startswith("*.")
            if host := _normal_host(entry[2:] if wildcard else entry):
                (suffixes if wildcard else exact).add("." + host if wildcard else host)
        self._exact = frozenset(exact)
        self._suffixes = tuple(sorted(suffixes))

    def clean(self, text: str) -> Cleaned:
        if not (chars := _has_chars(text)) and not _structural(text):
            return Cleaned(text, _NOTHING)
        counts: Counter[str] = Counter()
        out = _strip_chars(text, counts) if chars else text
        if not chars or _structural(out):  # without chars, out is text, which _structural took
            for _ in range(_PASSES):
                if (new := self._pass(out, counts)) == out:
                    break
                out = new
            else:
                out = _flatten(out, counts)
        removed = {name: n for name, n in counts.items() if n}  # subn adds zeros
        return Cleaned(out, MappingProxyType(removed)) if removed else Cleaned(text, _NOTHING)

    def clean_json(self, value: Any) -> tuple[Any, dict[str, int]]:
        """A copy of a JSON value with every string cleaned (dict keys kept), and the summed counts.

        Iterative, so nesting deeper than the recursion limit is fine.
        """
        totals: Counter[str] = Counter()
        stack: list[tuple[Iterator[Any], Any]] = []

        def copy(node: Any) -> Any:
            if isinstance(node, str):
                cleaned = self.clean(node)
                totals.update(cleaned.removed)
                return cleaned.text
            if isinstance(node, dict | list):
                new: Any = {} if isinstance(node, dict) else []
                stack.append((iter(node.items() if isinstance(node, dict) else node), new))
                return new
            return node

        root = copy(value)
        while stack:
            items, target = stack[-1]
            if (item := next(items, _END)) is _END:
                stack.pop()
            elif isinstance(target, dict):
                target[item[0]] = copy(item[1])
            else:
                target.append(copy(item))
        return root, dict(totals)

    def _pass(self, s: str, counts: Counter[str]) -> str:
        if "<" in s:
            s = self._html(_comments(s, counts), counts)
        if "]:" in s:
            s, n = _MD_COMMENT.subn("", s)
            counts["html_comment"] += n
        if "[" in s or "]" in s or "<" in s:
            s = self._markdown(s, counts)
        if ":" in s and _DATA_HINT.search(s):
            s = _DATA.sub(lambda m: _count(counts, "data_uri", _marker(m[0], _DATA_MARK)), s)
        return s

    def _verdict(self, url: str, kind: str) -> str | None:
        """The class under which url is removed, or None to keep it (relative, no host, or allowed)."""
        url = url.translate(_URL_DROP).strip(_URL_EDGE).replace("\\", "/")
        if url[:5].lower() == "data:":
            return "data_uri"
        host = _url_host(url)
        return None if host is None or host in self._exact or host.endswith(self._suffixes) else kind

    def _html(self, s: str, counts: Counter[str]) -> str:
        out: list[str] = []
        pos = i = 0
        strict = drop_close = False
        while k := _OPEN.search(s, i):
            t = None if strict else _LENIENT.match(s, k.start())
            if t is None:
                strict = True
                if (t := _STRICT.match(s, k.start())) is None:
                    i = k.start() + 1
                    continue
            name, i, repl = t[2].lower(), t.end(), None
            if t[1]:
                if name == "a" and drop_close:
                    repl, drop_close = "", False
            else:
                attrs = _attrs(t[3]) if t[3] else {}
                verdict = None
                if name in _ALWAYS_HIDDEN or (attrs and _hidden(name, attrs)):
                    repl, i = _count(counts, "hidden_html", ""), _element_end(s, name, i)
                elif attrs and (verdict := self._tag_verdict(name, attrs)):
                    repl = _count(counts, verdict, "" if name in ("a", "area") else _marker(t[0], _IMAGE))
                if name == "a":
                    drop_close = verdict is not None  # drop its </a> too; a new <a> ends the last one
            if repl is not None:
                out += (s[pos:t.start()], repl)
                pos = i
        return "".join((*out, s[pos:])) if out else s

    def _tag_verdict(self, name: str, attrs: dict[str, str]) -> str | None:
        link = name in ("a", "area")
        urls = [attrs[a] for a in (_LINK_ATTRS if link else _FETCH_ATTRS) if a in attrs]
        urls += [c.split()[0] for c in attrs.get("srcset", "").split(",") if c.split()]
        urls += _CSS_URL.findall(attrs.get("style", ""))
        return next((v for u in urls if (v := self._verdict(u, "exfil_link" if link else "exfil_image"))), None)

    def _markdown(self, s: str, counts: Counter[str]) -> str:
        dropped: dict[str, str] = {}  # label -> URL of the definitions removed from s

        def definition(m: re.Match[str]) -> str:
            if (verdict := self._verdict(url := _md_url(m["url"]), "exfil_link")) is None:
                return m[0]
            dropped[_label(m["label"])] = url
            return _count(counts, verdict, "")

        if "]:" in s:
            s = _DEF.sub(definition, s)
            if dropped:
                s = self._links(s, _FULL_REF, dropped, counts)
        return self._links(s, _MD, dropped, counts)

    def _links(self, s: str, pattern: re.Pattern[str], dropped: dict[str, str], counts: Counter[str]) -> str:
        out: list[str] = []
        pos = 0
        for m in pattern.finditer(s):
            g = m.groupdict()
            start = m.start() - (s[m.start()] == "[" and m.start() > pos and s[m.start() - 1] == "!")
            source, repl = s[start:m.end()], None
            if g.get("auto") is not None or g.get("orphan") is not None:
                auto = g.get("auto")
                verdict = self._verdict(auto if auto is not None else _md_url(g["orphan"]), "exfil_link")
                if verdict:
                    repl = _marker(source, _LINK) if auto is not None else "]"
            else:
                image = start < m.start()
                dest = g.get("dest")
                url = _md_url(dest) if dest is not None else dropped.get(_label(g.get("ref") or g["text"]))
                verdict = None if url is None else self._verdict(url, "exfil_image" if image else "exfil_link")
                text = "" if verdict and image else self._links(g["text"], _MD, dropped, counts)
                if verdict:
                    repl = _marker(source, _IMAGE) if image else text
                elif text != g["text"]:
                    repl = source[:m.start("text") - start] + text + source[m.end("text") - start:]
            if repl is not None:
                out += (s[pos:start], _count(counts, verdict, repl) if verdict else repl)
                pos = m.end()
        return "".join((*out, s[pos:])) if out else s


def _has_chars(text: str) -> bool:
    """Whether text has a character _strip_chars removes. Past ~200 characters, memchr per ASCII
    control character beats a regex character class, which then need only read the characters
    outside ASCII, when (judging by the first few hundred) they are few."""
    if len(text) <= 200:
        return _CHARS.search(text) is not None
    if text.isascii():
        return any(map(text.__contains__, _ASCII_CONTROLS))
    head = text[:400]
    if len(head.encode("utf-8", "surrogatepass")) > len(head) * 5 // 4:
        return _CHARS.search(text) is not None
    raw = text.encode("utf-8", "surrogatepass")  # below 0x80, each byte is the ASCII character
    return (any(map(raw.__contains__, _ASCII_CONTROL_BYTES))
            or _CHARS.search(raw.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")) is not None)


def _structural(text: str) -> bool:
    """Whether a structural rule could change text: each needs one of these to match anything.
    Comments and tags need "<" before a letter, "!", "/" or "?", as do autolinks; links and images
    that go anywhere need "](", definitions and the markdown comment "]:"; data URIs "data:"."""
    return (("<" in text and _TAG_HINT.search(text) is not None)
            or ("]" in text and ("](" in text or "]:" in text))
            or (":" in text and _DATA_HINT.search(text) is not None))


def _count(counts: Counter[str], name: str, result: str) -> str:
    counts[name] += 1
    return result


def _marker(source: str, marker: str) -> str:
    return marker if len(source) > len(marker) else ""


def _strip_chars(s: str, counts: Counter[str]) -> str:
    """Terminal escapes first, which leaves no control; invisible characters after. Only run on
    text in which _has_chars finds something."""
    for name, pattern in (("ansi", _ANSI), *_CHAR_CLASSES):
        s, n = pattern.subn("", s)
        counts[name] += n
    return s


def _flatten(s: str, counts: Counter[str]) -> str:
    """The last resort for adversarial text: delete what every structural rule needs."""
    for char, name in (("<", "hidden_html"), ("[", "exfil_link"), ("]", "exfil_link")):
        counts[name] += s.count(char)
        s = s.replace(char, "")
    s, n = _DATA_COLON.subn("", s)  # makes no new "data:", as no end of "data" starts it
    counts["data_uri"] += n
    return s


def _comments(s: str, counts: Counter[str]) -> str:
    out: list[str] = []
    pos = i = 0
    absent: set[str] = set()  # terminators missing from the rest of s, never searched for twice
    while m := _COMMENT.search(s, i):
        if m[0].startswith("<!--"):
            found = None if m[0].endswith(">") else _COMMENT_END.search(s, m.end())  # <!--> is a whole comment
            end = found.end() if found else m.end() if m[0].endswith(">") else len(s)
        else:
            term = _TERMINATOR[m[0][:3] if m[0].startswith("<![") else m[0][:2]]
            if (at := -1 if term in absent else s.find(term, m.end())) < 0:  # unterminated: shown as text
                absent.add(term)
                i = m.start() + 1
                continue
            end = at + len(term)
        out.append(s[pos:m.start()])
        pos = i = end
        counts["html_comment"] += 1
    return "".join((*out, s[pos:])) if out else s


def _attrs(raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in _ATTR.findall(raw):
        found.setdefault(name.lower(), html.unescape(value[1:-1] if value[:1] in ('"', "'") else value))
    return found  # the first of a repeated attribute wins, as in browsers


def _element_end(s: str, name: str, i: int) -> int:
    """Where the element whose start tag ends at i ends: after its matching end tag, else len(s)."""
    if name in _VOID:
        return i
    if name in _RAW:
        k = _RAW_END[name].search(s, i)
        t = _LENIENT.match(s, k.start()) if k else None
        return t.end() if t else len(s)
    depth = 1
    while (k := _OPEN.search(s, i)) and (t := _LENIENT.match(s, k.start())):
        tag, i = t[2].lower(), t.end()
        if tag == name and not (depth := depth - 1 if t[1] else depth + 1):
            return i
        if tag in _RAW and tag != name and not t[1]:
            i = _element_end(s, tag, i)
    return len(s)


def _hidden(name: str, attrs: dict[str, str]) -> bool:
    if ("hidden" in attrs or attrs.get("aria-hidden", "").strip().lower() == "true"
            or (name == "input" and attrs.get("type", "").strip().lower() == "hidden")):
        return True
    d: dict[str, str] = {}
    for declaration in _CSS_COMMENT.sub("", attrs.get("style", "")).lower().split(";"):
        prop, _, value = declaration.partition(":")
        d[prop.strip()] = " ".join(value.replace("!important", "").split())  # the last one wins, as in CSS

    def px(prop: str) -> float:
        m = _LENGTH.match(d.get(prop, "").split(" ")[0])
        return float(m[1]) * _TO_PX[m[2] or ""] if m else 1e9

    font = next((t for t in re.split(r"[\s/]+", d.get("font", "")) if re.fullmatch(r"[\d.]+[a-z%]+|0", t)), "")
    d["font-shorthand"] = font
    opacity = _LENGTH.match(d.get("opacity", ""))
    clip = re.findall(r"-?\d*\.?\d+", d.get("clip", ""))
    return bool(
        d.get("display") == "none" or d.get("visibility") in ("hidden", "collapse")
        or (opacity and float(opacity[1]) / (100 if opacity[2] == "%" else 1) <= 0.05)
        or abs(px("font-size")) < 2 or abs(px("font-shorthand")) < 2
        or _WHITE.fullmatch(d.get("color", ""))
        or (d.get("position") in ("absolute", "fixed") and min(px("left"), px("top")) <= -1000)
        or px("text-indent") <= -1000
        or (d.get("clip", "").startswith("rect(") and clip and max(abs(float(n)) for n in clip) <= 1)
        or _CLIP_PATH.search(d.get("clip-path", ""))
        or (d.get("overflow", "").split(" ")[0] in ("hidden", "clip")
            and min(px("height"), px("width"), px("max-height"), px("max-width")) < 2)
        or _SCALE_ZERO.search(d.get("transform", "")))


def _md_url(dest: str) -> str:
    return html.unescape(_MD_ESCAPE.sub(r"\1", dest[1:-1] if dest.startswith("<") else dest))


def _label(label: str) -> str:
    return " ".join(label.split()).casefold()


def _url_host(url: str) -> str | None:
    """The host a browser would contact for url; None when url has no authority (relative, mailto:)."""
    m = _SCHEME.match(url)
    rest = url[m.end():] if m else url
    if m and m[1].lower() in _SPECIAL:
        rest = "//" + rest.lstrip("/")
    elif not rest.startswith("//"):
        return None
    host = _AUTHORITY_END.split(rest[2:], maxsplit=1)[0].rpartition("@")[2]  # userinfo ends at the last '@'
    host = unquote(host[:host.find("]") + 1] if host.startswith("[") else host.partition(":")[0])
    return _normal_host(host) if len(host) <= 253 else host.lower()  # longer is no DNS name: not allowed


@functools.lru_cache(maxsize=1024)
def _normal_host(host: str) -> str:
    host = host.strip().rstrip(".")
    with contextlib.suppress(UnicodeError, ValueError):  # left as it is when IDNA refuses it
        host = host.encode("idna").decode("ascii")  # also maps full-width letters and ideographic dots
    return host.lower().rstrip(".")
