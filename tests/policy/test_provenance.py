import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.policy.provenance import extract, is_date, values_in


def test_kinds_are_extracted_and_normalised() -> None:
    text = ("Mail Mark.Black-2134@Gmail.com, visit https://www.Secure-Systems-252.com/login/ or "
            "www.true-informations.com. IBAN US13 3000 0000 1212 1212 1212, call +1 (555) 123-4567, "
            "code 463820, token Zx9kQ2mB7vL4pR8sT1wY.")
    found = set(extract(text))
    assert "mark.black-2134@gmail.com" in found
    assert "https://www.secure-systems-252.com/login" in found
    assert "secure-systems-252.com" in found
    assert "true-informations.com" in found
    assert "US133000000012121212121212"[:22] in {v[:22] for v in found}
    assert "+15551234567" in found
    assert "463820" in found
    assert "Zx9kQ2mB7vL4pR8sT1wY" in found


def test_plain_prose_gives_nothing() -> None:
    assert set(extract("Lunch with the team on Friday at noon; bring the slides.")) == set()
    # Short numbers and file names are not values.
    assert set(extract("Page 12 of report.pdf, 3 items")) == set()


def test_dates_are_not_phone_numbers() -> None:
    # A date identifies nobody: "2024-05-19 12:00" must not become the value 2024051912.
    text = "Lunch on 2024-05-19 12:00, review 19.05.2024, due 05-19-2024; call +1 202-555-0123."
    assert set(extract(text)) == {"+12025550123"}
    assert all(map(is_date, ["2022-04-01", "2024-05-19 12", "31.12.2024"]))
    assert not any(map(is_date, ["2024-13-01", "555-123-4567", "0612345678"]))


def test_arguments_are_walked() -> None:
    args = {"recipients": ["Mark.Black-2134@gmail.com"], "amount": 463820, "body": {"url": "https://evil.example.io/x"}}
    found = values_in(args)
    assert {"mark.black-2134@gmail.com", "463820", "https://evil.example.io/x", "evil.example.io"} <= found


def test_an_argument_matches_an_output_value_whatever_surrounds_it() -> None:
    output = set(extract("Send it to the account GB29NWBK60161331926819 today."))
    assert values_in({"recipient": "GB29NWBK60161331926819"}) & output
    assert values_in({"note": "pay GB29 NWBK 6016 1331 9268 19 please"}) & output


@given(st.text(max_size=400))
def test_extraction_never_raises(text: str) -> None:
    for value in extract(text):
        assert value
    values_in({"a": [text, {"b": text}]})


# The implementation before extract() scanned a shadow of the text, kept to check the new one against:
# both must find the same values in every text.
_OLD_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")
_OLD_URL = re.compile(r"\bhttps?://[^\s<>\"'`)\]}|\\^]{1,2000}", re.IGNORECASE)
_OLD_TLDS = ("com|net|org|io|co|ai|app|dev|info|biz|me|xyz|online|site|top|shop|store|tech|cloud|link|live|"
             "email|ru|cn|de|uk|fr|ch|nl|eu|us|ca|au|in|br|jp|it|es|se|no|pl|tk|ml|ga|cf|gq|cc|tv|ly|to|gg")
_OLD_DOMAIN = re.compile(
    rf"(?<![\w@.-])(?:www\.)?(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_OLD_TLDS})(?![\w-])", re.IGNORECASE)
_OLD_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_OLD_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,20}\d(?!\w)")
_OLD_NUMBER = re.compile(r"(?<![\w.])\d{5,32}(?![\w])")
_OLD_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9_+/=-]{16,256}(?![\w+/=-])")


def _old_url_key(raw: str) -> tuple[str, str]:
    url = raw.rstrip(".,;:!?'\"/")
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1].lower().rstrip(".")
    return f"{scheme.lower()}://{host}{slash}{path}".rstrip("/"), host


def _old_extract(text: str) -> Iterator[str]:
    if len(text) > 1_000_000:
        text = text[:1_000_000]
    if "@" in text:
        for m in _OLD_EMAIL.finditer(text):
            yield m.group().lower()
    if "://" in text:
        for m in _OLD_URL.finditer(text):
            url, host = _old_url_key(m.group())
            yield url
            if host:
                yield host.removeprefix("www.")
    if "." in text:
        for m in _OLD_DOMAIN.finditer(text):
            yield m.group().lower().removeprefix("www.")
    if not any(ch.isdigit() for ch in text):
        return
    for m in _OLD_IBAN.finditer(text):
        yield m.group().replace(" ", "")
    for m in _OLD_PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 8 <= len(digits) <= 15 and not is_date(m.group()):
            yield ("+" if m.group().startswith("+") else "") + digits
    for m in _OLD_NUMBER.finditer(text):
        yield m.group()
    for m in _OLD_TOKEN.finditer(text):
        token = m.group()
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            yield token


# Characters outside ASCII that the patterns treat specially: letters _DOMAIN and _URL take as i, i,
# s and k when case is ignored; decimal digits (\d); a digit that is no \d; word characters; spaces
# that \s takes and " " is not; a lone surrogate; and some that are none of these.
_ODD = ("\u0130\u0131\u017f\u212a\u0663\u0669\uff10\u0967\u00b2\u00e9\u00fc\u0416\u4e2d"
        "\u00a0\u2003\u2028\ud800\u2014\u00bb\U0001f600")
_TLD_WORDS = _OLD_TLDS.split("|")


def _word(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet), min_size=min_size, max_size=max_size)


_LABEL = _word("abcxyzABCK09-\u0130\u0131\u017f\u212a", 1, 12)
_TLD = st.one_of(st.sampled_from(_TLD_WORDS), st.sampled_from(_TLD_WORDS).map(str.upper),
                 _word("comnetsiklCOM\u0130\u0131\u017f\u212a", 1, 8))
_DOMAIN_TEXT = st.builds(lambda www, labels, tld: www + "".join(label + "." for label in labels) + tld,
                         st.sampled_from(["", "www.", "WWW.", "ww."]), st.lists(_LABEL, min_size=1, max_size=3), _TLD)
_FRAGMENTS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", _word("aZ09._%+-\u00e9", 0, 70), _DOMAIN_TEXT),
    _DOMAIN_TEXT,
    st.builds(lambda scheme, rest: scheme + rest,
              st.sampled_from(["http://", "https://", "HTTPS://", "http\u017f://", "xhttp://", "://", "https:/"]),
              _word("abc.example/?=&%#:@-_~()[]{}'\"<>| \u00e9\u0663", 0, 40)),
    st.builds(lambda head, body: head + body, _word("ABCDEGRUSb\u0130", 2, 2),
              _word("0123456789 ABCXYZ\u0663", 2, 40)),
    st.lists(st.sampled_from(["DE89", "AB12", "3704", "0044", "X9", "Y", " ", "7", "\u0663"]),
             max_size=12).map("".join),
    st.builds(lambda plus, body: plus + body, st.sampled_from(["", "+", "++"]),
              _word("0123456789 ().-\u0663\u0669", 1, 30)),
    st.lists(st.one_of(_word("0123456789", 1, 4), st.sampled_from([" ", "-", "(", ")", ".", "+", "x", "_", "\u0663"])),
             max_size=16).map("".join),
    _word("0123456789\u0663\uff10\u00b2", 1, 40),
    _word("aB9_+/=-", 1, 300),
    _word(" \t\n{}[]\":,.;!?()<>'`|\\^#@/-+=_", 1, 6),
    _word("thequickbrownfox", 1, 10),
    _word(_ODD, 1, 3),
    st.text(max_size=8),
)
_TEXTS = st.lists(_FRAGMENTS, max_size=25).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_TEXTS)
def test_extract_finds_what_the_patterns_find_over_the_whole_text(text: str) -> None:
    assert set(extract(text)) == set(_old_extract(text))


@settings(max_examples=1500, deadline=None)
@given(st.text(st.sampled_from("a1Z9.@-+ ()/=_:%?xwcomhtps" + _ODD), max_size=160))
def test_extract_matches_the_patterns_on_dense_small_alphabets(text: str) -> None:
    assert set(extract(text)) == set(_old_extract(text))


@pytest.mark.parametrize("text", [
    "a@b.cc.dd-x@e.com", "x@y@z.com", "-x@e.com" + "a" * 70 + "@b.com", "a" * 100 + "@corp.example.com",
    "\u0130stanbul.com \u017fhop.\u017fite \u212aelvin.link \u0131o.com x.\u0130o",
    "caf\u00e9.com \u2014example.org \u00e9example.org",
    "https://a.com://b.com https://x.io/https://y.io http\u017f://z.ru xhttps://q.io",
    "US13 3000 0000 1212 1212 1212 GB29NWBK60161331926819 DE\u0663\u0664NWBK60161331926819",
    "DE89 AB12 3456 7890 1234 56 AB12 3456 7890 1234 5 X", "12345678 9x 12345678 9_ 12345678 9\u00e9 1234567 89x",
    "+1 (555) 123-4567 +41 79 123 45 67 2026-11-20T10:00:00Z 2026-11-20 10:00",
    "\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660 \u0663\u0664\u0665 \u0666\u0667\u0668\u0669\u0660",
    "12345 123456789012345678901234567890123 1.23456 12345.678 x12345 12345x",
    "Zx9kQ2mB7vL4pR8sT1wY " + "a1" * 200 + " Secure-Systems-252.com x" + "b2" * 8 + "\u00e9",
    "page.php?x=1 a.?om \u00e9.com a.b.c.d.e.f.com.",
])
def test_extract_matches_the_patterns_on_known_edges(text: str) -> None:
    assert set(extract(text)) == set(_old_extract(text))


@pytest.mark.parametrize("text", [
    "a." * 50_000, "a@" * 50_000, "1 " * 50_000, "1" * 100_000, "a1" * 50_000, "://" * 33_000,
    "https://" + "a" * 100_000, ("x" * 63 + ".") * 1_600 + "zz", "AA00" * 25_000, "(" * 100_000,
    "\u0663 " * 50_000, "\u0130." * 50_000, "a.com." * 16_000, "a" * 100_000 + "@b.com", "-" * 100_000,
])
def test_extract_stays_linear_on_adversarial_text(text: str) -> None:
    # Linear time is the point; no bound is asserted (that would be flaky), but a quadratic scan of
    # these would not finish in any reasonable time.
    assert set(extract(text)) == set(_old_extract(text))


@pytest.mark.parametrize("letter", ["\u0130", "\u0131", "\u017f", "\u212a"])
@pytest.mark.parametrize("template", ["{}a.com", "a{}.com", "x {}.io", "a.{}e", "a.{}{}", "www.{}.ru", "http{}://x",
                                      "a.co{}", "\u00e9{}a.com", "\u2014{}a.com", "{}\u00e9.com"])
def test_extract_reads_the_letters_outside_ascii_that_patterns_take_as_ascii(letter: str, template: str) -> None:
    text = template.format(letter, letter)
    assert set(extract(text)) == set(_old_extract(text))
