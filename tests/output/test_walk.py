from gatehold.output.walk import TOO_DEEP, rewrite_result, texts


def cut(text: str) -> str:
    return text.replace("secret", "[R]")


def test_every_string_is_visited_wherever_an_upstream_put_it() -> None:
    result = {"content": [{"type": "text", "text": "a secret"}, "bare secret",
                          {"type": "resource", "resource": {"uri": "u/secret", "text": "secret"}}],
              "structuredContent": {"secret": ["secret"]}, "_meta": {"note": "secret"}, "extra": "secret"}
    out = rewrite_result(result, cut)
    assert out["content"][0]["text"] == "a [R]"
    assert out["content"][1] == "bare [R]"  # malformed items are not waved through
    assert out["content"][2]["resource"] == {"uri": "u/[R]", "text": "[R]"}
    assert out["structuredContent"] == {"[R]": ["[R]"]}
    assert out["_meta"] == {"note": "[R]"}
    assert out["extra"] == "[R]"
    assert result["extra"] == "secret"  # the input is never changed


def test_binary_payloads_are_left_alone_but_a_data_field_elsewhere_is_not() -> None:
    result = {"content": [{"type": "image", "data": "secret", "mimeType": "image/png"},
                          {"type": "resource", "resource": {"uri": "f", "blob": "secret"}}],
              "structuredContent": {"data": "secret"}}
    out = rewrite_result(result, cut)
    assert out["content"][0]["data"] == "secret"
    assert out["content"][1]["resource"]["blob"] == "secret"
    assert out["structuredContent"] == {"data": "[R]"}


def test_unchanged_results_are_returned_as_they_are() -> None:
    result = {"content": [{"type": "text", "text": "plain"}]}
    assert rewrite_result(result, cut) is result


def test_too_deep_is_cut_not_passed_unread() -> None:
    deep: object = "secret"
    for _ in range(80):
        deep = [deep]
    out = rewrite_result({"structuredContent": deep}, cut)
    assert TOO_DEEP in str(out)
    assert "secret" not in str(out)
    assert "secret" not in texts(out)
