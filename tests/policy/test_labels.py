from gatehold.policy.labels import Labeller, from_annotations


def test_globs_and_exact_names_add_up() -> None:
    labeller = Labeller({"mail.send": ("external_sink",), "mail.*": ("private",), "web.*": ("untrusted",)})
    assert labeller.labels("mail.send", None) == {"external_sink", "private"}
    assert labeller.labels("web.fetch", None) == {"untrusted"}
    assert labeller.labels("calc.add", None) == set()


def test_annotations_only_add_labels() -> None:
    labeller = Labeller({"web.fetch": ("untrusted",)})
    # readOnlyHint cannot remove a label the policy gave.
    assert labeller.labels("web.fetch", {"readOnlyHint": True}) == {"untrusted"}
    assert labeller.labels("x.post", {"openWorldHint": True}) == {"untrusted", "external_sink"}
    assert labeller.labels("x.read", {"openWorldHint": True, "readOnlyHint": True}) == {"untrusted"}
    assert labeller.labels("x.rm", {"destructiveHint": True}) == {"destructive"}
    assert labeller.labels("x.rm", {"destructiveHint": True, "readOnlyHint": True}) == set()


def test_only_stated_annotations_count() -> None:
    # The protocol's defaults for absent hints (open world, destructive) would label every tool.
    assert from_annotations({}) == set()
    assert from_annotations({"openWorldHint": False, "destructiveHint": False}) == set()
    assert from_annotations({"openWorldHint": "yes"}) == set()


def test_annotations_can_be_switched_off() -> None:
    labeller = Labeller({}, annotations=False)
    assert labeller.labels("x.post", {"openWorldHint": True}) == set()
