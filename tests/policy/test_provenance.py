from hypothesis import given
from hypothesis import strategies as st

from gatehold.policy.provenance import extract, values_in


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
