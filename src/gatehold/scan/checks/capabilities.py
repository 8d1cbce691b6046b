"""What a tool can do, for the data-flow checks: read untrusted content, read private data, send out.

:func:`explain` returns the roles of one tool definition, each with the reason it was given; :func:`classify`
returns only the roles. The roles are the gateway's own flow labels:

- ``untrusted``: the tool returns content that third parties wrote (web pages, search results, email,
  chat messages, issues, comments, reviews, feeds, articles). An instruction hidden in it reaches the
  model as if it were data.
- ``private``: the tool returns the user's own data (files, documents, notes, databases, contacts,
  calendar, mailbox, passwords and secrets, memory stores, repositories, accounts and transactions).
- ``external_sink``: calling the tool moves data or access outside (sends email or messages, posts,
  publishes, comments, uploads, shares, transfers money, invites or grants access, requests a URL the
  caller chooses).

Where a role comes from, in order: the policy's labels for the tool (the operator's statement), then the
annotations the server states (read with the gateway's own :func:`gatehold.policy.labels.from_annotations`:
``openWorldHint: true`` means untrusted, and a sink unless ``readOnlyHint: true``), then **heuristics** on
the tool's name, the first sentence of its description and its parameter names. Every source adds roles;
none removes one, and the first source to give a role supplies its reason.

The heuristics look for a verb and an object together ("read" + "email", "send" + "message"), because
neither alone says what a tool touches: ``get_weather`` reads, but nothing a third party wrote or the
user owns. They are deliberately conservative in the scanner's sense (a capability they miss is a toxic
flow not reported), and they can be wrong both ways; a policy label is the way to state the truth.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from gatehold.policy.labels import from_annotations

__all__ = ["ROLES", "URL_CHANNEL", "classify", "explain"]

ROLES: Final = ("untrusted", "private", "external_sink")
URL_CHANNEL: Final = "data can leave in the URL"  # the end of the reason a URL-taking tool is a sink

# Verbs that bring content in.
_READ: Final = frozenset({
    "get", "read", "list", "fetch", "search", "find", "query", "view", "show", "retrieve", "load", "browse",
    "open", "lookup", "download", "scrape", "crawl", "watch", "poll", "receive", "return", "extract", "export",
    "summarise", "summarize", "dump", "cat", "grep", "visit", "navigate", "tail",
})
# Verbs whose only job is to go out to the web and bring back what is there.
_WEB_READ: Final = frozenset({"fetch", "browse", "scrape", "crawl", "navigate", "visit", "curl", "wget"})
# Verbs that send something, publish it or hand out access.
_SEND: Final = frozenset({
    "send", "post", "publish", "share", "upload", "transfer", "invite", "grant", "tweet", "reply", "forward",
    "notify", "submit", "email", "mail", "broadcast", "pay", "wire", "dm", "push", "comment", "retweet",
    "message", "text", "sms",
})
# Verbs that create or change an object; they are a sink only for objects that live outside.
_WRITE: Final = frozenset({"create", "open", "add", "make", "schedule", "update", "execute", "initiate", "file",
                           "write", "put", "set", "edit", "book"})
# Verbs that run arbitrary commands or code: they can read any local file and reach any host.
_EXEC: Final = frozenset({"execute", "exec", "run", "eval", "evaluate", "shell", "bash", "sh", "powershell",
                          "terminal", "spawn"})
_EXEC_OBJECTS: Final = frozenset({"command", "commands", "shell", "script", "code", "bash", "terminal",
                                  "cmd", "python", "javascript", "js", "sh", "powershell", "process"})

# Objects whose content third parties wrote.
_UNTRUSTED_OBJECTS: Final = frozenset({
    "email", "emails", "mail", "mails", "inbox", "message", "messages", "msg", "msgs", "dm", "dms", "chat",
    "chats", "conversation", "conversations", "thread", "threads", "comment", "comments", "review", "reviews",
    "issue", "issues", "ticket", "tickets", "post", "posts", "tweet", "tweets", "feed", "feeds", "rss", "news",
    "webpage", "webpages", "website", "websites", "web", "html", "url", "urls", "article", "articles",
    "discussion", "discussions", "forum", "replies", "mention", "mentions", "notification", "notifications",
    "pr", "prs", "headlines", "internet", "online",
})
# Search engines: whatever they return was written by someone else.
_SEARCH_ENGINES: Final = frozenset({"google", "bing", "duckduckgo", "brave", "tavily", "serp", "serpapi",
                                    "exa", "perplexity", "searxng", "kagi", "yahoo", "baidu", "yandex"})
# Words that are nouns as often as verbs; see _verb_positions.
_AMBIGUOUS: Final = frozenset({"post", "email", "mail", "message", "text", "comment", "dm", "push", "reply", "file",
                               "tweet", "transfer", "upload", "invite", "sms", "wire", "pay", "schedule", "book",
                               "set", "run", "shell", "bash", "sh", "terminal", "powershell", "export", "list",
                               "return", "open", "watch", "show", "view", "dump", "query"})
# Verbs of no role: present, they are the verb, so a noun-verb next to them is a noun ("delete_email").
_OTHER_VERBS: Final = frozenset({
    "delete", "remove", "cancel", "reschedule", "copy", "change", "reset", "compute", "generate", "check",
    "convert", "calculate", "clear", "close", "archive", "rename", "move", "validate", "parse", "format", "sort",
    "count", "translate", "reserve", "append", "insert", "replace", "mark", "star", "tag", "resize", "render",
    "draw", "describe", "explain", "analyse", "analyze", "compare", "merge", "split", "save", "store", "start",
    "stop", "restart", "kill", "wait", "sleep", "ping", "echo", "add", "subtract", "multiply", "divide",
    "attempt", "perform", "use", "call",
})
# Objects holding the user's own data.
_PRIVATE_OBJECTS: Final = frozenset({
    "file", "files", "document", "documents", "doc", "docs", "note", "notes", "database", "databases", "db",
    "table", "tables", "record", "records", "rows", "sql", "contacts", "calendar", "calendars", "event",
    "events", "appointment", "appointments", "inbox", "email", "emails", "mail", "mails", "message",
    "messages", "dm", "dms", "chat", "chats", "password", "passwords", "secret", "secrets", "credential",
    "credentials", "vault", "keychain", "memory", "memories", "repo", "repos", "repository", "repositories",
    "drive", "balance", "transaction", "transactions", "account", "accounts", "iban", "profile", "history",
    "clipboard", "photo", "photos", "spreadsheet", "spreadsheets", "sheet", "sheets", "attachment",
    "attachments", "snippet", "snippets", "bookmark", "bookmarks", "passport", "diary", "journal",
})
# Directories are private only when the tool lists or reads them, not when it reports the current one.
_DIRECTORY_OBJECTS: Final = frozenset({"directory", "directories", "dir", "folder", "folders", "tree"})
_DIRECTORY_VERBS: Final = frozenset({"list", "read", "search", "browse", "tree", "walk", "scan", "find", "ls"})
# Objects that, created or changed, are seen or acted on outside.
_OUTSIDE_OBJECTS: Final = frozenset({
    "issue", "issues", "pr", "comment", "comments", "post", "posts", "message", "messages", "gist", "invite",
    "invitation", "webhook", "email", "tweet", "payment", "payments", "transfer", "transaction",
    "transactions", "money", "release", "link", "permission", "permissions", "member", "members",
    "collaborator", "collaborators", "participant", "participants", "attendee", "attendees", "user", "users",
    "webpage", "page", "reply",
})
# "add" + one of these grants access ("add_user_to_channel"); "create" + an object above publishes it.
_GRANT_OBJECTS: Final = frozenset({"user", "users", "member", "members", "collaborator", "collaborators",
                                   "participant", "participants", "attendee", "attendees", "permission",
                                   "permissions"})
_BIGRAMS: Final = {("pull", "request"): "pr", ("merge", "request"): "pr", ("web", "page"): "webpage",
                   ("web", "site"): "website", ("address", "book"): "contacts", ("user", "info"): "profile",
                   ("user", "information"): "profile", ("user", "details"): "profile",
                   ("web", "search"): "web", ("search", "web"): "web", ("search", "engine"): "web",
                   ("personal", "information"): "profile", ("personal", "data"): "profile"}
_PUBLISHING_WRITES: Final = frozenset({"create", "open", "file", "make", "put"})
_MONEY: Final = frozenset({"transaction", "transactions", "payment", "payments", "transfer", "money"})
_QUERY_OBJECTS: Final = frozenset({"sql", "query", "queries", "cypher", "database", "db"})
_QUERY_PARAMS: Final = frozenset({"sql", "cypher"})  # a parameter holding a query names what the tool reads
# HTTP verbs and words naming a raw request.
_HTTP: Final = frozenset({"http", "https", "request", "requests", "webhook", "curl", "wget", "api"})
# Parameters that carry a URL the caller picks, and parameters that address other people.
_URL_PARAMS: Final = frozenset({"url", "uri", "urls", "href", "link", "endpoint", "webhook", "webhook_url",
                                "target_url", "page_url", "site", "website"})
_RECIPIENT_PARAMS: Final = frozenset({"recipient", "recipients", "cc", "bcc", "participants", "attendees",
                                      "invitees", "share_with", "send_to"})

_VERBS: Final = _READ | _WEB_READ | _SEND | _WRITE | _EXEC | _OTHER_VERBS
_CAMEL: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_WORD: Final = re.compile(r"[A-Za-z][A-Za-z0-9']*")
_SENTENCE_END: Final = re.compile(r"(?:[.!?](?:\s|$))|\n\s*\n|\n(?=\s*(?:args|arguments|parameters|returns)\b)",
                                  re.IGNORECASE)
_MAX_SENTENCE_WORDS: Final = 40
_VERB_WITHIN: Final = 8  # a description's verb is among its first words ("This tool sends ...")
_OBJECT_WITHIN: Final = 8  # and its object follows closely ("Returns all the unread emails in ...")


def explain(tool: Mapping[str, Any], labels: Sequence[str] = ()) -> dict[str, str]:
    """Each role of ``tool`` (a ``tools/list`` entry) with why it was given; ``labels`` are the policy's."""
    found: dict[str, str] = {}

    def give(role: str, reason: str) -> None:
        if role in ROLES and role not in found:
            found[role] = reason

    for label in labels:
        give(label, f"policy label {label}")
    annotations = tool.get("annotations")
    if isinstance(annotations, Mapping):
        for label in sorted(from_annotations(annotations)):
            hint = "openWorldHint" if label in ("untrusted", "external_sink") else "destructiveHint"
            give(label, f"annotation {hint}: true")
    name = tool.get("name")
    params = _param_names(tool.get("inputSchema"))
    if isinstance(name, str) and name:
        for role, why in _name_roles(name, params):
            give(role, f"name {name!r}: {why}")
    description = tool.get("description")
    if isinstance(description, str) and description.strip():
        sentence = _first_sentence(description)
        for role, why in _sentence_roles(sentence, params):
            give(role, f"description {_quote(sentence)}: {why}")
    return found


def classify(tool: Mapping[str, Any], labels: Sequence[str] = ()) -> frozenset[str]:
    """The roles of ``tool`` (a subset of :data:`ROLES`); see :func:`explain` for the reasons."""
    return frozenset(explain(tool, labels))


def _name_roles(name: str, params: frozenset[str]) -> Iterable[tuple[str, str]]:
    """Roles from an identifier: its verbs, with every word of it as an object."""
    words = _words(name)
    positions = _verb_positions(words)
    objects = frozenset(_with_bigrams(_before_key(words))) | (params & _QUERY_PARAMS)
    return _roles([v for _, v in positions], objects, params)


def _sentence_roles(sentence: str, params: frozenset[str]) -> Iterable[tuple[str, str]]:
    """Roles from a description's first sentence: its verbs, with the few words after each as objects."""
    words = _sentence_words(sentence)
    positions = _verb_positions(words[:_VERB_WITHIN])
    objects: set[str] = set()
    for i, _ in positions:
        window = words[i + 1:i + 1 + _OBJECT_WITHIN]
        objects.update(_with_bigrams(_before_key(window)))
    return _roles([v for _, v in positions], frozenset(objects), params, description=True)


def _verb_positions(words: Sequence[str]) -> list[tuple[int, str]]:
    """The verbs of ``words``: every unambiguous one; a word that is also a noun only when there is none.

    ``post``, ``message`` or ``file`` name a thing as often as an action (``get_post``,
    ``read_channel_messages``), so they count as the verb only where no other verb is present
    (``post_webpage``, ``slack_post_message``), and then only the first of them.
    """
    found = [(i, v) for i, v in ((i, _verb(w)) for i, w in enumerate(words)) if v is not None]
    strong = [(i, v) for i, v in found if v not in _AMBIGUOUS]
    return strong or found[:1]


def _roles(verbs: Sequence[str], objects: frozenset[str], params: frozenset[str], *,
           description: bool = False) -> Iterable[tuple[str, str]]:
    """(role, why) from the verbs and objects of a name or of a description's first sentence."""
    takes_url = bool(params & _URL_PARAMS)
    reads = [v for v in verbs if v in _READ or v in _WEB_READ]
    sends = [v for v in verbs if v in _SEND]
    writes = [v for v in verbs if v in _WRITE]
    runs = [v for v in verbs if v in _EXEC]

    if reads:
        verb = reads[0]
        third_party = sorted(objects & _UNTRUSTED_OBJECTS)
        engines = sorted(objects & _SEARCH_ENGINES)
        web_verb = next((v for v in reads if v in _WEB_READ), None)
        if third_party:
            yield "untrusted", f"{verb} + {third_party[0]}: content written by third parties"
        elif engines:
            yield "untrusted", f"{verb} + {engines[0]}: search results from the web"
        elif web_verb is not None and (takes_url or not description):
            yield "untrusted", f"{web_verb}: content from the web"
        elif takes_url:
            yield "untrusted", f"{verb} with a URL parameter: content from the web"
        private = sorted(objects & _PRIVATE_OBJECTS)
        directories = sorted(objects & _DIRECTORY_OBJECTS)
        if private:
            yield "private", f"{verb} + {private[0]}: the user's own data"
        elif directories and any(v in _DIRECTORY_VERBS for v in reads):
            yield "private", f"{verb} + {directories[0]}: the user's own files"
    if sends:
        yield "external_sink", f"{sends[0]}: sends data or access outside"
    elif writes:
        outside = sorted(objects & _OUTSIDE_OBJECTS)
        grants = writes[0] == "add" and objects & _GRANT_OBJECTS
        if outside and (writes[0] in _PUBLISHING_WRITES or objects & _MONEY or grants):
            yield "external_sink", f"{writes[0]} + {outside[0]}: seen or acted on outside"
    if runs:
        code = sorted(objects & _EXEC_OBJECTS)
        if code:
            why = f"{runs[0]} + {code[0]}: arbitrary commands"
            yield "private", f"{why} can read any local file"
            yield "external_sink", f"{why} can reach any host"
        elif objects & _QUERY_OBJECTS:
            yield "private", f"{runs[0]} + {sorted(objects & _QUERY_OBJECTS)[0]}: database queries"
    if takes_url and (reads or sends or objects & _HTTP):
        yield "external_sink", f"requests a URL the caller chooses: {URL_CHANNEL}"
    if params & _RECIPIENT_PARAMS:
        yield "external_sink", f"takes {sorted(params & _RECIPIENT_PARAMS)[0]!r}: addresses other people"


def _before_key(words: Sequence[str]) -> Sequence[str]:
    """``words`` up to "by": what follows is the lookup key, not what is read (``get_contact_by_email``)."""
    return words[:words.index("by")] if "by" in words else words


def _verb(word: str) -> str | None:
    """``word`` as a known verb (``sends`` -> ``send``, ``fetches`` -> ``fetch``), or None."""
    if word in _VERBS:
        return word
    for ending in ("es", "s", "ing"):
        if word.endswith(ending) and word[:-len(ending)] in _VERBS:
            return word[:-len(ending)]
    return None


def _words(name: str) -> list[str]:
    """The words of an identifier: ``gmail_sendMessage`` -> ``gmail``, ``send``, ``message``."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", name) for w in _CAMEL.findall(part)]


def _sentence_words(sentence: str) -> list[str]:
    return [w.lower().strip("'") for w in _WORD.findall(sentence)][:_MAX_SENTENCE_WORDS]


def _with_bigrams(words: Sequence[str]) -> list[str]:
    out = list(words)
    for first, second in itertools.pairwise(words):
        joined = _BIGRAMS.get((first, second))
        if joined is not None:
            out.append(joined)
    return out


def _first_sentence(description: str) -> str:
    text = description.strip()
    m = _SENTENCE_END.search(text)
    return (text[:m.start()] if m else text).strip()


def _quote(sentence: str) -> str:
    flat = " ".join(sentence.split())
    return repr(flat if len(flat) <= 60 else flat[:57] + "...")


def _param_names(schema: Any) -> frozenset[str]:
    """Top-level property names of an input schema, lower-cased."""
    if not isinstance(schema, Mapping):
        return frozenset()
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return frozenset()
    return frozenset(str(k).lower() for k in properties)
