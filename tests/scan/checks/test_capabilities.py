from typing import Any

import pytest

from gatehold.scan.checks.capabilities import ROLES, classify, explain


def tool(name: str, description: str = "", **params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "description": description}
    if params:
        out["inputSchema"] = {"type": "object", "properties": {k: {"type": "string"} for k in params}}
    return out


@pytest.mark.parametrize("definition", [
    tool("get_weather", "Get the current weather for a city.", city=1),
    tool("add_numbers", "Add two numbers and return the sum.", a=1, b=1),
    tool("get_current_time", "Returns the current time in the given timezone.", timezone=1),
    tool("get_current_directory", "Get current working directory"),
    tool("create_document", "Create a new Word document with optional metadata.", filename=1),
    tool("delete_email", "Deletes the email with the given id from the inbox.", email_id=1),
    tool("update_user_info", "Update the user information.", first_name=1),
    tool("generateImageUrl", "Generate an image URL from a text prompt", prompt=1),
    tool("convert_currency", "Convert an amount from one currency to another.", to=1),
    tool("reserve_hotel", "Makes a reservation for a hotel with the provided details."),
])
def test_ordinary_tools_have_no_role(definition: dict[str, Any]) -> None:
    assert classify(definition) == frozenset(), explain(definition)


def test_read_file_is_private_only() -> None:
    assert classify(tool("read_file", "Read the complete contents of a file.", path=1)) == {"private"}


def test_fetch_with_a_url_is_untrusted_and_can_carry_data_out() -> None:
    fetch = tool("fetch", "Fetches a URL from the internet and extracts its contents as markdown.", url=1)
    roles = explain(fetch)
    assert set(roles) == {"untrusted", "external_sink"}
    assert "URL" in roles["external_sink"]


def test_send_email_is_a_sink() -> None:
    assert classify(tool("send_email", "Sends an email.", recipients=1, body=1)) == {"external_sink"}


def test_read_email_is_untrusted_and_private() -> None:
    assert classify(tool("read_email", "Read an email from the inbox.", id=1)) == {"untrusted", "private"}


@pytest.mark.parametrize(("name", "description", "expected"), [
    ("slack_post_message", "", {"external_sink"}),
    ("github_create_pull_request", "", {"external_sink"}),
    ("create_issue", "Create a new issue in a repository.", {"external_sink"}),
    ("brave_web_search", "Performs a web search.", {"untrusted"}),
    ("search_query", "Search DuckDuckGo and return formatted results.", {"untrusted"}),
    ("get_rating_reviews_for_hotels", "Get the rating and reviews for the given hotels.", {"untrusted"}),
    ("list_directory", "List the entries of a directory.", {"private"}),
    ("search_contacts_by_email", "Finds contacts in the contact list by email.", {"private"}),
    ("send_money", "Sends a transaction to the recipient.", {"external_sink"}),
    ("add_user_to_channel", "Add a user to a given channel.", {"external_sink"}),
    ("execute_command", "Execute terminal command and return results", {"private", "external_sink"}),
    ("run_sql", "", {"private"}),
])
def test_verb_and_object_give_roles(name: str, description: str, expected: set[str]) -> None:
    assert classify(tool(name, description)) == expected, explain(tool(name, description))


def test_a_noun_that_is_also_a_verb_is_a_noun_next_to_a_verb() -> None:
    # "message" sends in message_user, but in read_channel_messages it is what is read.
    assert classify(tool("read_channel_messages")) == {"untrusted", "private"}
    assert "external_sink" not in classify(tool("get_post"))
    assert classify(tool("email_search")) == {"untrusted", "private"}


def test_recipients_make_a_sink() -> None:
    event = tool("create_calendar_event", "Creates a new calendar event.", title=1, participants=1)
    assert classify(event) == {"external_sink"}
    assert "participants" in explain(event)["external_sink"]


def test_description_verbs_count_when_the_name_says_nothing() -> None:
    assert classify(tool("do_it", "Posts a webpage at a given URL with the given content.", url=1)) \
        == {"external_sink"}
    assert classify(tool("zap", "Returns all the unread emails in the inbox.")) == {"untrusted", "private"}
    # The verb is looked for at the start: a later "returns" does not hide the leading "Posts".
    late = tool("zap", "Posts the given text to the channel and then it returns the id of the new post.")
    assert classify(late) == {"external_sink"}


def test_policy_labels_come_first_and_add_to_the_rest() -> None:
    roles = explain(tool("get_weather"), labels=("untrusted", "destructive"))
    assert roles == {"untrusted": "policy label untrusted"}  # destructive is not a flow role here
    mixed = explain(tool("send_email"), labels=("private",))
    assert set(mixed) == {"private", "external_sink"}
    first = explain(tool("fetch", url=1), labels=("untrusted",))
    assert first["untrusted"] == "policy label untrusted"


def test_annotations_use_the_gateways_semantics() -> None:
    open_world = {"name": "lookup", "annotations": {"openWorldHint": True}}
    assert classify(open_world) == {"untrusted", "external_sink"}
    read_only = {"name": "lookup", "annotations": {"openWorldHint": True, "readOnlyHint": True}}
    assert classify(read_only) == {"untrusted"}
    assert explain(read_only)["untrusted"] == "annotation openWorldHint: true"
    assert classify({"name": "lookup", "annotations": {"openWorldHint": "yes"}}) == frozenset()


def test_malformed_definitions_do_not_raise() -> None:
    assert classify({}) == frozenset()
    assert classify({"name": 3, "description": None, "inputSchema": []}) == frozenset()
    assert classify({"name": "x", "inputSchema": {"properties": "nope"}}) == frozenset()


def test_roles_are_the_flow_labels() -> None:
    assert set(ROLES) == {"untrusted", "private", "external_sink"}
