from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.config import ArgConstraint
from gatehold.policy import Violation, check_arguments
from gatehold.policy import constraints as constraints_module


def rules(value: Any, **constraint: Any) -> list[str]:
    """The rules ``value`` violates as argument ``x``."""
    return [v.rule for v in check_arguments({"x": value}, {"x": ArgConstraint(**constraint)})]


# --- general ---------------------------------------------------------------------------------


def test_violation_shape() -> None:
    (violation,) = check_arguments({"n": 11}, {"n": ArgConstraint(max=10)})
    assert violation == Violation("n", "max", violation.message)
    assert violation.message
    with pytest.raises(AttributeError):
        violation.rule = "min"  # type: ignore[misc]


def test_absent_argument_passes_and_unconstrained_ones_are_ignored() -> None:
    assert check_arguments({"other": "/etc/passwd"}, {"path": ArgConstraint(path_within="/srv")}) == []
    assert check_arguments(None, {"path": ArgConstraint(path_within="/srv")}) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("arguments", [[], "x", 5, [{"x": 1}]])
def test_non_object_arguments_violate(arguments: Any) -> None:
    found = check_arguments(arguments, {"x": ArgConstraint(max=1, pattern="a")})
    assert sorted(v.rule for v in found) == ["max", "pattern"]


def test_every_violated_rule_is_reported() -> None:
    found = check_arguments(
        {"x": "abcdef"}, {"x": ArgConstraint(pattern="[a-c]+", max_length=3, enum=("a",))}
    )
    assert sorted(v.rule for v in found) == ["enum", "max_length", "pattern"]


def test_a_crashing_check_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(value: Any, setting: Any) -> str | None:
        raise RuntimeError("bug")

    monkeypatch.setitem(constraints_module._CHECKS, "max", boom)
    (violation,) = check_arguments({"x": 1}, {"x": ArgConstraint(max=10)})
    assert violation.rule == "max"
    assert "RuntimeError" in violation.message


def test_a_constraint_without_a_checker_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(constraints_module._CHECKS, "pattern")
    assert rules("a", pattern="a") == ["pattern"]


def test_a_malformed_constraint_is_a_violation() -> None:
    (violation,) = check_arguments({"x": 1}, {"x": {"max": 10}})  # type: ignore[dict-item]
    assert violation.rule == "constraint"


# --- path_within -----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """base/root (the allowed root) with docs/a.txt, and neighbours outside it."""
    base = Path(os.path.realpath(tmp_path))
    root = base / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("a")
    (base / "outside").mkdir()
    (base / "outside" / "secret").write_text("s")
    (base / "root-evil").mkdir()
    (base / "root-evil" / "x").write_text("x")
    return root


def within(root: Path, value: Any) -> bool:
    return check_arguments({"p": value}, {"p": ArgConstraint(path_within=str(root))}) == []


@pytest.mark.parametrize(
    "value",
    [
        "docs/a.txt",
        ".",
        "docs",
        "docs/../docs/a.txt",
        "./docs//a.txt",
        "new/not/yet.txt",
        "../root/docs",
        "~",
        "~/x",
    ],
)
def test_paths_inside_root_are_allowed(tree: Path, value: str) -> None:
    assert within(tree, value)


def test_absolute_paths_inside_root_are_allowed(tree: Path) -> None:
    assert within(tree, str(tree))
    assert within(tree, str(tree / "docs" / "a.txt"))
    assert within(tree, str(tree / "docs" / "new.txt"))


@pytest.mark.parametrize(
    "value",
    [
        "..",
        "../outside/secret",
        "docs/../../outside",
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "nope/../../x",
    ],
)
def test_traversal_is_rejected(tree: Path, value: str) -> None:
    assert not within(tree, value)


def test_absolute_path_outside_is_rejected(tree: Path) -> None:
    assert not within(tree, str(tree.parent / "outside" / "secret"))
    assert not within(tree, str(tree.parent))


def test_prefix_sibling_is_not_within(tree: Path) -> None:
    assert not within(tree, str(tree.parent / "root-evil" / "x"))
    assert not within(tree, "../root-evil/x")


def test_symlink_inside_root_pointing_outside_is_rejected(tree: Path) -> None:
    (tree / "link").symlink_to(tree.parent / "outside")
    (tree / "dangling").symlink_to(tree.parent / "outside" / "not-yet-created")
    assert not within(tree, "link")
    assert not within(tree, "link/secret")
    assert not within(tree, "link/new-file")
    assert not within(tree, "dangling")  # creating through it would write outside


def test_symlinked_directory_components_are_resolved(tree: Path) -> None:
    (tree / "alias").symlink_to(tree / "docs")
    (tree / "up").symlink_to(tree.parent)
    assert within(tree, "alias/a.txt")
    assert within(tree, "up/root/docs/a.txt")  # leaves through the link but lands back inside
    assert not within(tree, "up/outside/secret")
    assert not within(tree, "alias/../../outside")  # '..' applies to the link target, like the kernel


def test_symlinked_root_is_canonicalised(tree: Path) -> None:
    root_link = tree.parent / "root-link"
    root_link.symlink_to(tree)
    assert within(root_link, "docs/a.txt")
    assert within(root_link, str(tree / "docs"))
    assert not within(root_link, "../outside/secret")


@pytest.mark.parametrize("value", ["docs/a\x00.txt", "\x00", "", 5, None, ["docs"], {"p": "docs"}, True])
def test_bad_path_values_are_rejected(tree: Path, value: Any) -> None:
    assert not within(tree, value)


def test_filesystem_root_allows_everything() -> None:
    assert within(Path("/"), "/etc/passwd")
    assert within(Path("/"), "../../x")


# --- url_hosts -------------------------------------------------------------------------------

HOSTS = ("allowed.com", "*.example.com", "bücher.de", "127.0.0.1", "[::1]", "Upper.ORG.")


@pytest.mark.parametrize(
    "url",
    [
        "http://allowed.com/",
        "https://allowed.com:8443/path?q=1#frag",
        "HTTPS://ALLOWED.COM/",
        "http://allowed.com./",
        "http://api.example.com/",
        "http://a.b.example.com/x",
        "http://bücher.de/",
        "http://BÜCHER.de/",
        "http://xn--bcher-kva.de/",
        "http://127.0.0.1:8080/",
        "http://[::1]/",
        "http://[0:0:0:0:0:0:0:1]/",
        "http://upper.org/",
        "http://allowed.com/@evil.com",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert rules(url, url_hosts=HOSTS) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://allowed.com@evil.com/",
        "http://user:pass@allowed.com/",
        "http://@allowed.com/",
        "http://evil.com\\@allowed.com",
        "http://evil.com\\allowed.com",
        "http://allowed.com.evil.com/",
        "http://evilallowed.com/",
        "http://example.com/",  # '*.example.com' is subdomains only
        "http://evil.com/.example.com",
        "javascript:alert(1)//allowed.com",
        "file:///etc/passwd",
        "file://allowed.com/etc/passwd",
        "ftp://allowed.com/",
        "//allowed.com/",
        "allowed.com",
        "http:allowed.com",
        "http:///allowed.com",
        "http://allowed.com:bad/",
        "http://allowed.com%2eevil.com/",
        "http://allowed.com /",
        " http://allowed.com/",
        "http://allowed.com/\n",
        "http://allo\twed.com/",
        "http://allowed.com\u200b/",
        "http://allowed\u3002com/",
        "http://\uff41\uff4c\uff4c\uff4f\uff57\uff45\uff44.com/",  # fullwidth letters
        "http://faß.de/",
        "http://127.0.0.2/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://[::2]/",
        "http://[127.0.0.1]/",
        "http://[allowed.com]/",
        "http://allowed..com/",
        "http://.allowed.com/",
    ],
)
def test_rejected_urls(url: str) -> None:
    assert rules(url, url_hosts=HOSTS) == ["url_hosts"]


@pytest.mark.parametrize("value", [5, None, ["http://allowed.com/"], {"url": "http://allowed.com/"}, b"x"])
def test_non_string_url_is_rejected(value: Any) -> None:
    assert rules(value, url_hosts=HOSTS) == ["url_hosts"]


def test_unusable_allowlist_entries_match_nothing() -> None:
    assert rules("http://faß.de/", url_hosts=("faß.de",)) == ["url_hosts"]
    assert rules("http://fass.de/", url_hosts=("faß.de", "")) == ["url_hosts"]
    assert rules("http://a.com/", url_hosts=()) == ["url_hosts"]


# --- enum, pattern, lengths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "allowed", "ok"),
    [
        ("a", ("a", "b"), True),
        ("c", ("a", "b"), False),
        (1, (1,), True),
        (1.0, (1,), True),
        (True, (1,), False),
        (1, (True,), False),
        (0, (False,), False),
        (False, (False,), True),
        ("1", (1,), False),
        (None, (None,), True),
        (None, (0, "", False), False),
        ([1, 2], ([1, 2],), True),
        ([True], ([1],), False),
        ({"a": True}, ({"a": 1},), False),
        ({"a": [1]}, ({"a": [1]},), True),
        ({"a": 1, "b": 2}, ({"a": 1},), False),
        (math.nan, (math.nan,), False),
    ],
)
def test_enum_is_type_strict(value: Any, allowed: tuple[Any, ...], ok: bool) -> None:
    assert (rules(value, enum=allowed) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("abbc", True),
        ("ac", False),
        ("abcd", False),
        ("abc\n", False),
        ("xabc", False),
        (5, False),
        (None, False),
    ],
)
def test_pattern_must_match_the_whole_string(value: Any, ok: bool) -> None:
    assert (rules(value, pattern="ab+c$") == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("abcd", False),
        ("ééé", True),
        ("😀😀😀", True),
        ([1, 2, 3], True),
        ([1] * 4, False),
        ({"a": 1}, False),
        (123, False),
        (None, False),
    ],
)
def test_max_length_counts_code_points_or_items(value: Any, ok: bool) -> None:
    assert (rules(value, max_length=3) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [([], True), ([1, 2], True), ([1, 2, 3], False), ("ab", False), ({}, False)]
)
def test_max_items(value: Any, ok: bool) -> None:
    assert (rules(value, max_items=2) == []) is ok


# --- min / max -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (0, True),
        (10, True),
        (5.5, True),
        (-1, False),
        (10.0001, False),
        (11, False),
        (True, False),
        (False, False),
        ("5", False),
        (None, False),
        (math.nan, False),
        (math.inf, False),
        (-math.inf, False),
        (2**53 + 1, False),
        (10**400, False),
    ],
)
def test_min_max_are_inclusive_numeric_bounds(value: Any, ok: bool) -> None:
    assert (rules(value, min=0, max=10) == []) is ok


def test_nan_bound_denies() -> None:
    assert rules(5, max=math.nan) == ["max"]
    assert rules(5, max=math.inf) == []


def test_exact_comparison_beyond_float_precision() -> None:
    assert rules(2**53 + 1, max=2**53) == ["max"]
    assert rules(2**53, max=2**53) == []


# --- properties ------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)

CONSTRAINTS = st.builds(
    ArgConstraint,
    path_within=st.none() | st.sampled_from(["/", "/srv/docs", "/nonexistent/root"]),
    url_hosts=st.none()
    | st.lists(st.sampled_from(["a.com", "*.b.org", "::1", "[::1]", "ß.de", "", "*."])).map(tuple),
    enum=st.none() | st.lists(JSON, max_size=3).map(tuple),
    pattern=st.none() | st.sampled_from(["a+", ".*", "[0-9]{2,3}", "(a|b)*c"]),
    max_length=st.none() | st.integers(0, 5),
    min=st.none() | st.floats(),
    max=st.none() | st.floats(),
    max_items=st.none() | st.integers(0, 5),
)
NAMES = st.text(max_size=10)


@settings(max_examples=200, deadline=None)
@given(
    constraints=st.dictionaries(NAMES, CONSTRAINTS, max_size=4),
    arguments=JSON | st.dictionaries(NAMES, JSON, max_size=4),
    data=st.data(),
)
def test_check_arguments_never_raises(
    constraints: dict[str, ArgConstraint], arguments: Any, data: st.DataObject
) -> None:
    if isinstance(arguments, dict) and constraints:
        # also aim values straight at the constrained names
        for name in data.draw(st.lists(st.sampled_from(sorted(constraints)), unique=True)):
            arguments[name] = data.draw(JSON | st.text(alphabet="./\x00~ab:@\\h", max_size=30))
    found = check_arguments(arguments, constraints)
    assert isinstance(found, list)
    assert all(isinstance(v, Violation) and v.message for v in found)


@settings(max_examples=200, deadline=None)
@given(
    value=st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.booleans() | JSON,
    low=st.none() | st.floats(allow_nan=True) | st.integers(-(10**6), 10**6),
    high=st.none() | st.floats(allow_nan=True) | st.integers(-(10**6), 10**6),
)
def test_accepted_numbers_are_within_bounds(value: Any, low: float | None, high: float | None) -> None:
    if check_arguments({"n": value}, {"n": ArgConstraint(min=low, max=high)}):
        return
    if low is None and high is None:
        return  # no numeric rule configured: nothing to check
    assert isinstance(value, int | float)
    assert not isinstance(value, bool)
    assert math.isfinite(value)
    assert low is None or low <= value
    assert high is None or value <= high


SEGMENTS = st.sampled_from(
    ["..", ".", "", "a", "b", "root", "outside", "secret", "file", "x", "out", "up", "in"]
)


@pytest.fixture(scope="module")
def plain_tree() -> Iterator[Path]:
    """base/root/a/b with no symlinks, plus base/outside; module scope so Hypothesis can share it."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(os.path.realpath(tmp))
        (base / "root" / "a" / "b").mkdir(parents=True)
        (base / "outside").mkdir()
        yield base / "root"


@pytest.fixture(scope="module")
def linked_tree() -> Iterator[Path]:
    """Like plain_tree, with files and symlinks inside root leading out, up and back in."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(os.path.realpath(tmp))
        root = base / "root"
        (root / "a" / "b").mkdir(parents=True)
        (root / "a" / "file").write_text("f")
        (base / "outside").mkdir()
        (base / "outside" / "secret").write_text("s")
        (base / "secret").write_text("s")
        (root / "out").symlink_to(base / "outside")
        (root / "up").symlink_to(base)
        (root / "in").symlink_to(root / "a")
        (root / "a" / "x").symlink_to("../../outside/secret")
        yield root


@settings(max_examples=200, deadline=None)
@given(segments=st.lists(SEGMENTS, min_size=1, max_size=8))
def test_path_acceptance_matches_lexical_resolution_without_symlinks(
    plain_tree: Path, segments: list[str]
) -> None:
    relative = "/".join(segments)
    lexical = os.path.normpath(os.path.join(plain_tree, relative))  # no symlinks: lexical == real
    inside = os.path.commonpath([str(plain_tree), lexical]) == str(plain_tree)
    assert within(plain_tree, relative) is (inside and relative != "")


def _inodes_under(root: Path) -> set[tuple[int, int]]:
    found = {(root.stat().st_dev, root.stat().st_ino)}
    for folder, dirs, files in os.walk(root):  # does not follow symlinks
        for name in dirs + files:
            st_ = os.lstat(os.path.join(folder, name))
            found.add((st_.st_dev, st_.st_ino))
    return found


@settings(max_examples=200, deadline=None)
@given(segments=st.lists(SEGMENTS, min_size=1, max_size=8))
def test_accepted_paths_resolve_inside_root_per_the_kernel(linked_tree: Path, segments: list[str]) -> None:
    relative = "/".join(segments)
    if not within(linked_tree, relative):
        return
    try:
        target = os.stat(os.path.join(linked_tree, relative))  # the kernel's own resolution
    except OSError:
        return  # does not exist (or not traversable): nothing to open
    assert (target.st_dev, target.st_ino) in _inodes_under(linked_tree)
