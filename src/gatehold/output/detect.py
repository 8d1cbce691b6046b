"""Prompt-injection detector for tool results and tool metadata: scored, explainable, rule based.

How a scan works
----------------
1. The text is normalised (:mod:`gatehold.output.normalise`): NFKC, invisible characters dropped,
   look-alike letters mapped to ASCII, lower case. Every rule is a regular expression over that form;
   spans are mapped back to the original text for the report.
   Soft line breaks are then read as spaces (same length, so spans still map): a sentence that YAML
   folded or an e-mail wrapped over several lines is matched as one line (see ``_unfold``); only
   ``line_start`` looks at the lines as they are.
2. A rule only runs when one of its trigger words occurs in the text (a set lookup; the text's words
   are collected once), and then only in windows around those words, so a long benign text costs a
   split and a few short regex scans, not a full scan per rule.
3. Encoded payloads get a second pass: base64, hex, percent- and HTML-entity-encoded segments, Unicode
   tag characters, and ROT13 are decoded (a bounded number of segments of bounded size), and the
   decoded text is scanned with the same rules. A hit there is reported as ``encoded.<rule id>`` with
   the span of the encoded segment in the original.
4. The score combines the hits: each distinct rule id counts once, with the weight of its strongest
   hit, as independent evidence (noisy-or)::

       rules = 1 - prod(1 - weight_i)     over distinct rule ids

   With an optional :class:`Classifier`, the score is the blend
   ``(1 - classifier_weight) * rules + classifier_weight * classifier.score(text)``: the model can
   raise a score the rules missed and lower one it disagrees with. ``flagged`` is
   ``score >= threshold``.

Weights are chosen so that a single weak signal (an address after "send", "your password" in an
email, a "[Important]" subject tag) stays below the default threshold of 0.6, two weak signals or one
medium and one weak reach it, and the unambiguous phrasings ("ignore previous instructions", chat
template tokens, "do not tell the user") flag alone.

Long texts: beyond ``max_chars`` only the first and the last ``max_chars // 2`` characters are
scanned, and the finding carries a ``detector.truncated`` hit of weight 0 spanning the part that was
not read. The detector never raises: an internal error yields a ``detector.error`` hit of weight 1
(fail closed).

Metadata: :meth:`InjectionDetector.scan_metadata` scans the text fields of a tool/prompt/resource
definition one by one (see :func:`metadata_fields`). Spans then refer to :func:`metadata_text`, the
fields laid out one per line as ``<path>: <value>``, and each excerpt starts with the field's path.
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gatehold.output.normalise import Normalised, normalise, span_in_original

__all__ = [
    "DEFAULT_THRESHOLD",
    "RULES",
    "Classifier",
    "Finding",
    "Hit",
    "InjectionDetector",
    "Rule",
    "metadata_fields",
    "metadata_text",
]

DEFAULT_THRESHOLD = 0.6
EXCERPT_CHARS = 80
MAX_HITS_PER_RULE = 8
MAX_HITS = 128
MAX_DECODED_SEGMENTS = 16
MAX_SEGMENT_CHARS = 8192
MAX_METADATA_NODES = 5000
MAX_METADATA_DEPTH = 64
MAX_TRIGGER_SITES = 48  # beyond this many trigger sites a rule scans the whole text
ANCHORED_SITES = 256  # the same for anchored rules, whose tries are cheap

Scope = Literal["text", "metadata", "name"]


# --------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule match. ``start``/``end`` index the original text (for metadata: :func:`metadata_text`)."""

    rule: str
    start: int
    end: int
    weight: float
    excerpt: str


# Excerpts of metadata hits start with the field path (see InjectionDetector.scan_metadata).
_FIELD_PREFIXES = ("name: ", "title: ", "description: ", "annotations.", "arguments[", "inputSchema", "outputSchema")


@dataclass(frozen=True, slots=True)
class Finding:
    """The verdict on one text: ``score`` in 0..1, the hits that made it, and ``score >= threshold``."""

    score: float
    hits: tuple[Hit, ...]
    flagged: bool

    def explain(self) -> str:
        """One line for logs and audit: the score and each rule id once, strongest first."""
        best: dict[str, Hit] = {}
        for hit in self.hits:
            if hit.rule not in best or hit.weight > best[hit.rule].weight:
                best[hit.rule] = hit
        if not best:
            return f"score {self.score:.2f}: no rule matched"
        parts = []
        for hit in sorted(best.values(), key=lambda h: (-h.weight, h.start)):
            field, sep, excerpt = hit.excerpt.partition(": ") if hit.excerpt.startswith(_FIELD_PREFIXES) else (
                "", "", hit.excerpt)
            quoted = excerpt if len(excerpt) <= 40 else excerpt[:37] + "..."
            parts.append(f"{hit.rule} ({field}{sep}{quoted!r})" if field else f"{hit.rule} ({quoted!r})")
        return f"score {self.score:.2f}: " + ", ".join(parts)


class Classifier(Protocol):
    """An optional second opinion, e.g. a small fine-tuned model. ``score`` returns 0..1."""

    name: str

    def score(self, text: str) -> float: ...


# --------------------------------------------------------------------------------------------------
# rules


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection rule.

    ``pattern`` runs on normalised text and only when one of ``triggers`` occurs in it: a trigger is a
    word (looked up in the text's word set) or, when it holds a character other than a letter or a
    digit, a substring (a leading ``~`` is dropped and makes a plain word a substring). Every match of
    ``pattern`` contains a trigger. A match must start a word unless ``infix`` is set (injected text is
    sometimes glued to the word before it: "USAIgnore your previous instructions"). Further conditions:

    * ``scope``: ``text`` rules run everywhere; ``metadata`` rules only on the fields of tool
      definitions; ``name`` rules only on the property names of their schemas.
    * ``negatable``: a match preceded closely by a negation ("never share your password") is dropped.
    * ``line_start``: the match must start a line (after indentation or markdown markers).
    * ``escalate``: ``(rule id, weight, pattern)``: when ``pattern`` also matches in the match or within
      ``context = (before, after)`` characters around it on the same line, the hit is reported under that
      id and weight instead. ``context_end``, when set, also ends that context at its first match after
      the match (e.g. the end of the sentence); ``escalate_if``, when set, must also hold for
      ``(text, start)`` (a look at the document around the match, e.g. "not in a code comment").
    * ``reach``: ``(before, after)``: a match starts at most ``before`` characters before a trigger it
      contains and ends at most ``after`` characters after that trigger's start. The pattern only runs
      in those windows around the triggers (over the whole text when the triggers are many).
    * ``anchored``: every match starts at a trigger, so the pattern is only tried there.
    * ``sites``: a function giving the anchor positions ``reach`` is measured from, instead of the
      triggers' (which then only decide whether the rule runs at all); None means "everywhere".
    * ``near``: for anchored rules, ``near(text, words)(site)`` says whether a match may start at a
      trigger at ``site`` (a cheap look around it); only those sites are tried.
    """

    id: str
    weight: float
    description: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    scope: Scope = "text"
    negatable: bool = False
    line_start: bool = False
    infix: bool = False
    anchored: bool = False
    escalate: tuple[str, float, re.Pattern[str]] | None = None
    context: tuple[int, int] = (0, 0)
    context_end: re.Pattern[str] | None = None
    escalate_if: Callable[[str, int], bool] | None = None
    sites: Callable[[str, set[str]], list[int] | None] | None = None
    near: Callable[[str, set[str]], Callable[[int], bool]] | None = None
    reach: tuple[int, int] = (300, 300)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.VERBOSE)


def _rule(rule_id: str, weight: float, description: str, pattern: str, triggers: str, **kw: Any) -> Rule:
    return Rule(rule_id, weight, description, _rx(pattern), tuple(triggers.split()), **kw)


# Recipients an attacker sends data or money to.
_EMAIL = r"[a-z0-9][a-z0-9._%+-]{0,63}@[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,4}\.[a-z]{2,12}"
_IBAN = r"[a-z]{2}\d{2}(?:\ ?[a-z0-9]{4}){2,7}(?:\ ?[a-z0-9]{1,4})?"
_URL = (r"(?:https?://|www\.)[^\s'\"<>]{2,200}"
        r"|[a-z0-9-]{2,63}\.(?:com|net|org|io|xyz|ru|cn|info|biz|co|me|app|dev|site|online|top|tk|ly|to)\b")
_RECIPIENT = rf"(?:{_EMAIL}|{_URL}|{_IBAN})"

_SENSITIVE = _rx(r"""
    bod(?:y|ies)\b | contents?\b | inbox | attachments?\b
  | all\s+(?:the\s+|my\s+|your\s+|of\s+(?:the\s+|my\s+|your\s+)?)?(?:[a-z]+\s+)?
      (?:messages|e-?mails|files|documents|data|conversations|chats|contacts|transactions|records|notes)
  | (?:conversation|chat|message|browsing|search|transaction|command|call)\s+(?:history|logs?)
  | passwords? | pass\s?codes? | security\s+codes? | verification\s+codes? | credit\s+card | card\s+numbers?
  | passport | phone\s+numbers? | personal\s+(?:information|data|details) | credentials | api\s+keys?
  | access\s+tokens? | private\s+keys? | social\s+security | home\s+address | user'?s\s+[a-z]+
  | scheduled\s+transactions | overview\s+of | transcripts? | secrets?\b
""")

_RESPONSE = r"(?:response|reply|answer|output)s?\b"
_IBAN_WORD = re.compile(r"[a-z]{2}\d{2}[a-z0-9]{11,30}\Z")
_YOUR_RESPONSE = re.compile(r"your\s+(?:[a-z]+\s+)?(?:response|reply|answer|output|message)s?\b")


def _recipient_near(text: str, words: set[str]) -> Callable[[int], bool]:
    """For the exfiltration rule: whether an e-mail address, URL or IBAN may start within 300 characters
    after a verb (so the rule's pattern is only tried there)."""
    ibans: list[str] = []
    if _longest(words) >= 15:
        ibans = [word for word in words if len(word) >= 15 and _IBAN_WORD.match(word)]

    def near(site: int) -> bool:
        hi = site + 300
        return (text.find("@", site, hi) != -1 or text.find("www.", site, hi) != -1
                or text.find("://", site, hi) != -1 or any(text.find(iban, site, hi) != -1 for iban in ibans))

    return near


def _your_response_sites(text: str, words: set[str]) -> list[int] | None:
    """Where "your [word] response/reply/answer/output/message" occurs."""
    sites: list[int] = []
    i = text.find("your")
    while i != -1:
        if _YOUR_RESPONSE.match(text, i):
            sites.append(i)
            if len(sites) > MAX_TRIGGER_SITES:
                return None
        i = text.find("your", i + 4)
    return sites


# What makes a task for the reader an attack: an outside party it is directed at (an e-mail address, IBAN
# or URL that something goes to, someone is invited with, or the reader is sent to: "to 'x@y.z'", "with
# the email x@y.z", "at the link www.x.y"), or a new password it sets (account takeover). A mere mention
# ("renew the certificate of example.com") is not enough.
_TASK_TARGET = _rx(rf"""
    (?:\bto|\bwith|\bat|\bvia|\binto|\bcc|link|url|website|site|page|address|account|iban|e-?mail)\b
    [\s,:;'"`(<\[]*(?:[a-z'-]+[\s,:;'"`(<\[]+){{0,4}}?{_RECIPIENT}
  | (?:change|reset|set|update|modify|replace)\s+(?:[a-z'-]+\s+){{0,5}}?
    (?:password|passcode|passphrase|pin|credentials)\b[^.!?\n]{{0,60}}?\s(?:to|as)\s""")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
# A line of a task list: a task label ("TODO:", "Action items", "Next steps:") or a checkbox item.
_TASK_LIST_LINE = re.compile(r"""[\ \t>*\#\-+]*
    (?:(?:to-?do|to\ do|tasks?|action\s+(?:items?|required|needed)|next\s+steps?|follow-?\s?ups?)s?[\ \t]*(?::|\Z)
      |\[[\ x]\])""", re.VERBOSE)
TASK_LIST_LINES = 6  # lines either side of a task marker that are looked at for a task list


def _lone_task(text: str, start: int) -> bool:
    """For the reader-task rule: whether the task marker at ``start`` stands alone in data, that is, no
    other line within TASK_LIST_LINES lines belongs to a task list (meeting notes, to-do lists: tasks
    their author wrote down for people)."""
    line_start = text.rfind("\n", 0, start) + 1
    before = text[:line_start].split("\n")[-TASK_LIST_LINES - 1:-1] if line_start else []
    line_end = text.find("\n", start)
    after = text[line_end + 1:].split("\n", TASK_LIST_LINES)[:TASK_LIST_LINES] if line_end != -1 else []
    return not any(_TASK_LIST_LINE.match(line) for line in (*before, *after))


_RULE_LIST: list[Rule] = [
    # ---------------------------------------------------------------- role / authority spoofing
    _rule(
        "role.chat_template", 0.8,
        "Chat-template control tokens (<|im_start|>, [INST], <<SYS>>) only make sense inside a model "
        "prompt; in data they try to open a fake system or user turn.",
        r"""<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id
                     |end_header_id|begin_of_text)\s*\|>
          | \[/inst\] | <s>\s*\[inst\] | \[inst\]\s*<<sys>> | <</?sys>> | <(?:start|end)_of_turn>""",
        "<| inst sys turn", reach=(5, 40)),
    _rule(
        "role.system_header", 0.7,
        "A markdown header or parenthesised label posing as a system/developer message "
        "('###(system_message)', '## System prompt:').",
        r"""\#{2,6}\s*(?:\(\s*(?:system|assistant|developer|admin)(?:[\s_-]*(?:message|prompt|instructions?|note))?
                          \s*\)
                      |(?:system|developer|admin)[\s_-]*(?:message|prompt|instructions?|override)\b)""",
        "system developer admin assistant", reach=(20, 50)),
    _rule(
        "role.turn_label", 0.35,
        "A line starting 'System:' / 'Assistant:' / 'Developer message:' imitates a chat turn. Weak alone: "
        "spec sheets and logs have 'System:' lines.",
        r"""(?:system|assistant|developer|admin(?:istrator)?)
            (?:[\s_-]+(?:message|prompt|note|instructions?|override|update|notice))?\s*:(?!//)""",
        "system assistant developer admin administrator", line_start=True, anchored=True, reach=(0, 60)),
    _rule(
        "role.xml_turn", 0.4,
        "<system>, <assistant>, <prompt> tags around text aimed at the model. Medium: <system> also occurs "
        "in some XML (build files).",
        r"""<\s*/?\s*(?:system|assistant|prompt|sys|admin|developer)(?:[_-]?(?:prompt|message|note))?\s*>""",
        "system assistant prompt sys admin developer", reach=(10, 40)),
    _rule(
        "role.message_to_you", 0.55,
        "'An important message from <someone> to you': the framing of the classic injection letter, "
        "addressed to the reader as an agent.",
        r"""(?:message|note|notice|instructions?|request|memo)\s+from\s+[^\n.]{1,60}?\bto\s+you\b(?!\s+all)""",
        "message note notice instruction instructions request memo", anchored=True, reach=(0, 140)),
    _rule(
        "role.authority_claim", 0.45,
        "Claims to speak for the system, the developer or the administrator ('message from the system', "
        "'as your developer').",
        r"""(?:message|note|notice|instructions?|directive|order|update|override)\s+from\s+(?:the\s+|your\s+)?
              (?:system|admin(?:istrator)?|developers?|operators?|creators?|openai|anthropic
                 |model\s+provider|security\s+team)\b
          | (?:as|i\s+am|i'm|this\s+is)\s+your\s+(?:developer|admin(?:istrator)?|creator|operator|owner|programmer
                                                 |master|supervisor|system)\b
          | the\s+(?:user|owner|administrator|admin)\s+(?:has\s+)?(?:already\s+)?(?:authori[sz]ed|approved|granted
              |consented\s+to|permitted|pre-approved)\s+(?:you|this|the\s+(?:assistant|agent|model))\b""",
        "system admin administrator developer developers operator operators creator creators openai anthropic "
        "provider security programmer master supervisor owner user", reach=(80, 60)),
    _rule(
        "role.addressed_to_model", 0.5,
        "Text that addresses the reading AI model directly ('to you, GPT-4', 'Dear AI assistant', 'if you "
        "are an LLM'): tool data has no reason to talk to the model.",
        r"""you\s*,\s*(?:the\s+|an?\s+|dear\s+)?
              (?:gpt[\w.-]*|chatgpt|claude|gemini|llama|mistral|copilot|command\s+r\+?|bard|grok|deepseek|qwen
                 |ai\b|llm|(?:large\s+)?language\s+model|chatbot|ai\s+(?:model|assistant|agent|system)|assistant\b)
          | (?:dear|hey|hi|hello|attention|note\s+to|instructions?\s+for|message\s+for)\s+(?:the\s+)?
              (?:ai|llm|language\s+model|ai\s+(?:assistant|agent|model)|chatbot|gpt|chatgpt)\b
          | (?:if\s+you\s+are|you\s+are\s+now|since\s+you\s+are)\s+an?\s+
              (?:ai|llm|(?:large\s+)?language\s+model|ai\s+(?:assistant|agent|model)|automated\s+(?:agent|assistant))\b
          | ai\s+(?:model|assistant|agent)\s+(?:developed|made|created|trained|built)\s+by
          | (?:ai|llm|language\s+model)s?\s+(?:agents?\s+|assistants?\s+|models?\s+)?
              (?:reading|processing|summari[sz]ing|parsing)\s+this""",
        "gpt chatgpt claude gemini llama mistral copilot command bard grok deepseek qwen ai llm language chatbot "
        "assistant", reach=(60, 80)),
    _rule(
        "role.new_instructions", 0.45,
        "Announces replacement instructions ('new instructions:', 'your new task is', 'from now on you "
        "will').",
        r"""(?:new|updated|revised|real|actual|true|secret|hidden|additional|overriding)\s+(?:system\s+)?
              (?:instructions?|directives?|prompt|rules)\s*(?::|are\b|follow\b|below\b|as\s+follows)
          | your\s+(?:new|real|actual|true|next|only)\s+(?:task|goal|objective|instructions?|role|mission|purpose)
              \s+(?:is|are|will\s+be)\b
          | (?:from\s+now\s+on|henceforth|going\s+forward)\s*,?\s+you\s+(?:will|must|should|are|shall)\b""",
        "instruction instructions directive directives prompt rules task goal objective role mission purpose "
        "henceforth now forward", reach=(40, 60)),
    # ---------------------------------------------------------------- override
    _rule(
        "override.ignore_previous", 0.9,
        "'Ignore/disregard/forget (all) previous instructions' and its variants: the canonical attempt to "
        "cancel the agent's instructions. Tolerates filler words and typos in 'instructions'.",
        r"""(?:ignore|disregard|forget|override|overwrite|bypass|neglect|abandon|discard)\s+
            (?:
              (?:(?:all|any|each|every|the|your|my|these|those|of|previously|other)\s+){0,4}
              (?:(?:previous|prior|above|earlier|preceding|former|original|initial|foregoing|system|safety
                   |developer|user'?s?)\s+){1,2}
              [a-z]*(?:struct|prompt|context|directive|guideline|rule|polic|constraint|guidance|programming)[a-z]*
            | (?:all\s+|any\s+|everything\s+|anything\s+)?(?:(?:the|your|my)\s+)?
              (?:instructions?|prompts?|rules|guidelines|directives)\s+
              (?:(?:you\s+(?:were|have\s+been)\s+(?:given|told)|given|provided|received|stated|written|listed)\s+)?
              (?:above|before|earlier|previously|so\s+far|until\s+now|to\s+you\b)
            | (?:everything|anything|all)\s+(?:(?:you\s+(?:were|have\s+been)\s+told|that\s+was\s+said|you\s+know
                                                |written|said|stated)\s+)?
              (?:above|before|previously|so\s+far|prior|until\s+now)\b
            )""",
        "~ignore ~disregard ~forget override overwrite bypass neglect abandon discard", infix=True, anchored=True,
        reach=(0, 260)),
    _rule(
        "override.task_switch", 0.6,
        "Declares the agent's task finished or replaced ('Task complete. Ignore...', 'instead of the "
        "original task').",
        r"""instead\s+of\s+(?:the|your|doing\s+the)\s+(?:original|previous|initial|current|assigned|user'?s?|given)\s+
              (?:task|request|instructions?|query|question|goal)
          | (?:task|job|request|assignment)\s+(?:is\s+)?(?:complete[d]?|done|finished|accomplished)\s*[.!,:;]?\s*
              (?:now\s*,?\s*)?(?:ignore|disregard|forget|you\s+must|your\s+(?:new|next)|the\s+(?:new|next)
                                |proceed|new\s+(?:task|instructions?))""",
        "instead task job request assignment", anchored=True, reach=(0, 160)),
    _rule(
        "override.task_reference", 0.55,
        "Refers to the task the user gave the agent ('before you can solve the task that I gave you'): "
        "phrasing aimed at an agent mid-task, not at a human reader.",
        r"""(?:task|request|assignment|instructions?)\s+(?:that\s+)?(?:i|the\s+user|your\s+user)\s+
              (?:gave|assigned|asked|set|sent)\s+(?:to\s+)?you
          | (?:before|after)\s+you\s+(?:can\s+|could\s+)?(?:solve|complete|finish|continue|proceed\s+with|answer
                                                         |respond\s+to|do|perform|return\s+to|resume)\s+
              (?:the|your|my|this)\s+(?:original\s+|initial\s+|current\s+|assigned\s+|user'?s\s+)?
              (?:task|request|assignment|query)""",
        "task request assignment instruction instructions before after", reach=(80, 100)),
    _rule(
        "override.strict_adherence", 0.45,
        "Demands strict obedience to what follows ('you must strictly adhere to the following "
        "instruction'). Medium: manuals say similar things.",
        r"""(?:strictly|carefully|exactly|immediately|must|now)\s+(?:adhere|obey|comply|follow)\s+
            (?:to\s+|with\s+)?(?:the\s+|these\s+|my\s+|this\s+|all\s+)?(?:following|new|below)\s+
            (?:instructions?|orders|directives?|commands?)""",
        "adhere obey comply follow", reach=(30, 100)),
    # ---------------------------------------------------------------- hidden blocks
    _rule(
        "hidden.tag_block", 0.6,
        "Pseudo-XML tags that mark a block as being for the model (<IMPORTANT>, <INFORMATION>, "
        "<instructions>, <ai_instructions>); no document format uses them.",
        r"""<\s*/?\s*(?:important|information|instructions?|override
                       |(?:ai|assistant|llm|model|agent)[_-]?(?:instructions?|note|only)
                       |note[_-]?to[_-]?(?:ai|assistant|llm|model|agent)
                       |instructions?[_-]?for[_-]?(?:ai|assistant|llm|model|agent))\s*>""",
        "important information instruction instructions override ai assistant llm model agent note",
        reach=(15, 40)),
    _rule(
        "hidden.tag_weak", 0.35,
        "<secret>, <hidden>, <urgent>, <critical> tags around text: used by injections, but also as "
        "placeholders in documentation ('export TOKEN=<secret>'), so weak.",
        r"""<\s*/?\s*(?:secret|hidden|urgent|critical)\s*>""",
        "secret hidden urgent critical", reach=(15, 30)),
    _rule(
        "hidden.bracket_tag", 0.35,
        "Bracketed markers such as [Important], [SYSTEM], [instructions] that try to give the following text "
        "authority. Weak: '[Important]' is a common subject prefix.",
        r"""\[\s*(?:important|system|instructions?|hidden|secret|note\s+to\s+(?:ai|assistant|llm|model)
                  |ai\s+(?:instructions?|only)|system\s+(?:message|note|prompt|override)|developer\s+(?:note|message))
            \s*\]""",
        "important system admin instruction instructions hidden secret note ai developer assistant", reach=(15, 60)),
    _rule(
        "hidden.shouting", 0.2,
        "'IMPORTANT!!!', 'ATTENTION!!': emphasis that tries to take priority. Weak on its own.",
        r"""(?:important|attention|urgent|critical|warning)\s*!{2,}""",
        "important attention urgent critical warning", anchored=True, reach=(0, 30)),
    # ---------------------------------------------------------------- tool steering
    _rule(
        "tool.must_call", 0.45,
        "Tells the agent it must call a tool or function ('you must use the X tool', 'you should use the "
        "tool `send_email`'). Medium: programming documentation says 'you must call init_app()'.",
        r"""(?:you|assistant|agent|model|ai)\s+(?:must|should|shall|need\s+to|have\s+to|are\s+(?:required|instructed
              |expected)\s+to|will\s+need\s+to)\s+(?:first\s+|always\s+|now\s+|immediately\s+|also\s+|then\s+
              |only\s+)?(?:call|use|invoke|execute|run|trigger|add|include)\s+
            (?:(?:the|this|a|an|that)\s+)?
            (?:(?:tool|function)s?\b|[`'"]?[a-z][a-z0-9]*_[a-z0-9_]+[`'"]?|[`'"][a-z0-9_.-]{2,40}[`'"]\s+(?:tool|function))""",
        "you assistant agent model ai", anchored=True, reach=(0, 160)),
    _rule(
        "tool.named_call", 0.4,
        "An imperative to use a specific, named tool ('use the kill_process tool', 'call the tool "
        "`send_email`'). Medium: real tool descriptions sometimes point to sibling tools.",
        r"""(?:use|call|invoke|execute|run|trigger)\s+(?:the\s+)?
            (?:(?:[`'"][a-z0-9_.-]{2,40}[`'"]|[a-z][a-z0-9]*_[a-z0-9_]+)\s+(?:tool|function)\b
              |(?:tool|function)\s+(?:[`'"][a-z][a-z0-9_.-]{1,40}[`'"]|[a-z][a-z0-9]*_[a-z0-9_]+))""",
        "use call invoke execute run trigger", reach=(80, 60)),
    _rule(
        "tool.with_arguments", 0.35,
        "'... with the following arguments: {...}': a ready-made tool call for the agent to replay.",
        r"""with\s+(?:the\s+)?(?:following\s+)?(?:arguments|parameters|params|args|inputs?)\s*:?\s*[{(\[]""",
        "arguments parameters params args input inputs", reach=(40, 30)),
    _rule(
        "tool.call_markup", 0.6,
        "Function-call markup (<tool_call>, <function_calls>, \"tool_calls\":) forged into data so the agent "
        "treats it as its own call.",
        r"""<\s*/?\s*(?:tool_call|tool_use|function_calls?|invoke\s+name\s*=|antml:invoke)
          | "(?:tool_calls|function_call)"\s*:
          | <\|(?:tool_call|python_tag|tool)\|?>""",
        "<| call calls use invoke antml function tool", reach=(20, 40)),
    _rule(
        "tool.preference", 0.6,
        "Steers tool choice: 'use this tool rather than others', 'always use this tool', 'do not use any "
        "other tool'.",
        r"""(?:use|prefer|choose|select|call|pick)\s+this\s+(?:tool|function|server)\s+
              (?:rather\s+than|instead\s+of|over|in\s+place\s+of|before)\s+(?:any\s+|all\s+|the\s+)?
              (?:others?\b|alternatives?|similar|the\s+other)
          | (?:always|only|exclusively)\s+(?:use|call|prefer|choose)\s+this\s+tool\b
          | (?:do\s+not|don't|never)\s+use\s+(?:any\s+)?(?:other|the\s+other|another|alternative)\s+
              (?:tools?|servers?)\b
          | this\s+tool\s+(?:must|should)\s+(?:always\s+)?be\s+(?:used|called|preferred|chosen)\s+
              (?:instead\s+of|over|rather\s+than|before)\s+(?:any|all|every)\s+other""",
        "tool server tools servers", reach=(60, 100)),
    _rule(
        "tool.unavailable", 0.6,
        "A tool result or description claiming 'this tool is no longer available / has been replaced' "
        "(tool transfer: steering the agent to another, attacker-chosen tool).",
        r"""this\s+tool\s+(?:is|has\s+been)\s+(?:now\s+)?
            (?:no\s+longer\s+(?:available|supported|in\s+use|working|valid)|deprecated|disabled|discontinued
             |removed|retired|replaced|decommissioned|unavailable|out\s+of\s+service)""",
        "tool function", reach=(10, 90)),
    _rule(
        "tool.use_instead", 0.3,
        "'Please use the X tool instead'. Weak alone (error messages say this too).",
        r"""(?:use|call|try|switch\s+to)\s+(?:the\s+)?[^\n.]{1,50}?\s(?:tool|function)\s+instead
          | instead\s*,?\s+(?:use|call)\s+(?:the\s+)?[^\n.]{1,50}?\s(?:tool|function)\b""",
        "instead", reach=(90, 90)),
    _rule(
        "tool.shadowing", 0.6,
        "Hooks this tool onto another ('before executing X, execute this tool', 'after using the check tool, "
        "run this function'): tool shadowing.",
        r"""(?:before|after|prior\s+to|whenever|every\s+time|each\s+time|when)\s+(?:you\s+)?
            (?:use|using|call|calling|execute|executing|invoke|invoking|run|running)\b(?:[^\n.]|\.(?=\S)){0,80}?
            \b(?:call|use|execute|run|invoke|trigger)\s+(?:this|the\s+current|our)\s+(?:tool|function)""",
        "tool function", reach=(220, 20)),
    _rule(
        "tool.output_tamper", 0.5,
        "Asks to alter another tool's result ('modify the wrong result of the check tool', 'replace the "
        "values with').",
        r"""(?:modify|alter|change|replace|overwrite|falsify|fake|manipulate|edit|correct)\s+(?:the\s+)?
            (?:(?:wrong|incorrect|returned|original)\s+)?(?:result|output|response|return\s+value|values?)s?\s+
            (?:of|from|returned\s+by|produced\s+by)\s+(?:the\s+)?(?:[a-z_]+\s+){0,2}(?:tool|function|operation)
          | replace\s+the\s+(?:values?|results?|outputs?)\s+with\s+(?:the\s+|its\s+|this\s+)?
              (?:response|result|output)""",
        "tool function operation response result output", reach=(130, 60)),
    # ---------------------------------------------------------------- credentials
    _rule(
        "secret.path", 0.45,
        "Paths and URIs of credential stores (~/.ssh, id_rsa, authorized_keys, .env, .aws/credentials, "
        "internal://credentials). Medium alone: documentation mentions them.",
        r"""~/\.ssh | \.ssh/ | id_(?:rsa|ed25519|ecdsa|dsa)\b | authorized_keys | /etc/(?:passwd|shadow|sudoers)
          | \.aws/credentials | \.(?:npmrc|pypirc|netrc|git-credentials|pgpass)\b | \.kube/config
          | \.docker/config\.json | \.gnupg | [a-z]+://credentials | (?<![\w.])\.env(?:\.local|\.prod(?:uction)?)?\b
            (?!\.example|\.sample|\.template)""",
        "ssh rsa ed25519 ecdsa dsa authorized passwd shadow sudoers aws npmrc pypirc netrc credentials pgpass "
        "kube docker gnupg env", reach=(20, 40)),
    _rule(
        "secret.key_material", 0.3,
        "An SSH public key to plant (authorized-keys backdoor). Weak alone: keys are published on purpose.",
        r"""ssh-(?:rsa|ed25519|dss|ecdsa[\w-]*)\s+[a-z0-9+/]{20,80}""",
        "ssh", anchored=True, reach=(0, 120)),
    _rule(
        "secret.request", 0.5,
        "Asks to send, reveal or include secrets (API keys, tokens, passwords, security codes, card or "
        "passport numbers). Negations ('never share your password') do not count.",
        r"""(?:send|e-?mail|forward|share|reveal|disclose|provide|give|tell|show|display|print|output|return
             |include|append|attach|post|paste|leak|expose|read|dump|list|copy|write|retrieve|extract|collect
             |fetch|access)\s+
            (?:me\s+|us\s+)?(?:(?:the|your|all|any|my|their|his|her|user'?s?|stored|saved|current)\s+){0,3}
            (?:[a-z]+\s+){0,2}?
            (?:api[\s_-]?keys?|access[\s_-]?tokens?|auth(?:entication)?[\s_-]?(?:tokens?|codes?)|bearer\s+tokens?
             |secret[\s_-]?keys?|private[\s_-]?keys?|passwords?|passphrases?|credentials|security\s+codes?
             |verification\s+codes?|2fa\s+codes?|otp(?:\s+codes?)?|(?:session|auth|login)\s+(?:tokens?|cookies?)
             |ssh\s+keys?|credit\s+card(?:\s+(?:numbers?|details|info(?:rmation)?))?|cvv|seed\s+phrases?
             |recovery\s+(?:phrases?|codes?)|mnemonic|bank\s+(?:details|account\s+(?:numbers?|details))
             |passport(?:\s+(?:numbers?|details))?|social\s+security\s+numbers?|ssn)\b""",
        "api tokens token auth authentication bearer secret private passwords password passphrase passphrases "
        "credentials security verification 2fa otp session login ssh credit cvv seed recovery mnemonic bank "
        "passport social ssn",
        negatable=True, reach=(110, 60)),
    _rule(
        "secret.include_in_output", 0.7,
        "Asks to put secrets into the reply or a request ('include the API keys in your response').",
        r"""(?:include|put|insert|embed|append|add|place)\s+(?:the\s+|your\s+|all\s+|any\s+)?
            (?:api[\s_-]?keys?|tokens?|passwords?|credentials|secrets?|private\s+keys?|session\s+cookies?)\s+
            (?:in|into|to|within)\s+(?:your|the)\s+(?:response|reply|answer|output|message|url|request|query|link)""",
        "key keys token tokens password passwords credentials secret secrets cookie cookies",
        negatable=True, reach=(40, 80)),
    # ---------------------------------------------------------------- concealment
    _rule(
        "conceal.from_user", 0.65,
        "Hides an action from the user ('do not tell the user', 'without informing the user', 'the user must "
        "not know'): data never needs the agent to keep secrets from its principal. (Softer verbs such as "
        "'do not warn the user' are left out: software documentation says that.)",
        r"""(?:do\s+not|don't|dont|never|without)\s+(?:ever\s+)?
              (?:tell(?:ing)?|mention(?:ing)?\s+(?:(?:this|it|that|anything)\s+)?to|mention(?:ing)?|inform(?:ing)?
               |notify(?:ing)?|reveal(?:ing)?(?:\s+(?:this|it|that|anything))?\s+to|disclos(?:e|ing)\s+(?:this|it|that
               |anything)\s+to|report(?:ing)?\s+(?:this|it|that)\s+to|let(?:ting)?)\s+
              (?:the|your)\s+(?:user|human|operator|requester|principal)s?\b
          | the\s+(?:user|human)\s+(?:must|should|need|shall)\s*(?:not|n't|never)\s+
              (?:know|see|find\s+out|notice|learn|be\s+(?:told|informed|aware|notified))
          | without\s+(?:the\s+)?(?:user'?s?|human'?s?)\s+(?:knowledge|knowing|noticing|awareness)""",
        "user users human humans operator requester principal", reach=(80, 90)),
    _rule(
        "conceal.weak", 0.3,
        "Softer secrecy ('don't tell anyone', 'keep this between us', 'without asking me'). Weak: surprise "
        "parties exist.",
        r"""(?:do\s+not|don't|never|without)\s+(?:tell(?:ing)?|inform(?:ing)?|notify(?:ing)?|reveal(?:ing)?
                                               |mention(?:ing)?)\s+(?:anyone|anybody|them|him|her)\b
          | keep\s+(?:this|it|that)\s+(?:a\s+)?(?:secret|hidden|between\s+us|to\s+yourself|quiet)
          | without\s+asking\s+(?:me|the\s+user|for\s+(?:confirmation|permission|approval))
          | (?:do\s+not|don't|never)\s+(?:ask|wait)\s+for\s+(?:confirmation|permission|approval)""",
        "tell telling inform informing notify notifying reveal revealing mention mentioning keep asking ask wait",
        reach=(40, 70)),
    _rule(
        "conceal.silent_action", 0.5,
        "Asks to act covertly or hide the instruction ('do not mention that you...', 'present it as if', "
        "'silently send', 'then delete the sent email').",
        r"""(?:do\s+not|don't|never)\s+(?:explicitly\s+|directly\s+|ever\s+)?
              (?:mention|say|state|reveal|disclose|indicate|acknowledge|admit|report)\s+
              (?:that\s+you|(?:that\s+)?you(?:'re|\s+are|\s+have|\s+were)|this\s+(?:instruction|message|step|action)
               |these\s+instructions|anything\s+about\s+(?:this|these)|the\s+(?:instructions?|above))
          | present\s+(?:the\s+)?(?:information|it|this|the\s+(?:result|data|output))\s+as\s+if
          | (?:silently|secretly|quietly|covertly|discreetly|stealthily)\s+
              (?:send|forward|add|copy|execute|run|call|delete|transfer|include|append|insert|upload|e-?mail|post
               |invoke|use)
          | delete\s+(?:the\s+|this\s+|that\s+|both\s+|all\s+)?(?:sent\s+(?:e-?mails?|messages?)
              |(?:e-?mails?|messages?)\s+(?:you\s+(?:have\s+)?(?:just\s+)?sent|that\s+you\s+(?:have\s+)?(?:just\s+)?sent))""",
        "mention say state reveal disclose indicate acknowledge admit report present silently secretly quietly "
        "covertly discreetly stealthily delete", reach=(50, 100)),
    # ---------------------------------------------------------------- a task for the reader
    _rule(
        "task.reader_action", 0.3,
        "A task label ('TODO:', 'Your task:', 'Note to the assistant:') followed at once by an imperative "
        "(send, delete, book, visit...): a task set for whoever reads the text. Not in code comments "
        "('# TODO: remove'), which are for developers; weak elsewhere, as notes have TODOs too. 'TODO' may "
        "be glued to the word before it ('USATODO:'), as injected text sometimes is. (Labels of e-mails to "
        "people, such as 'Action required:' or 'Next step:', are left out.)",
        r"""(?<!\#)(?<!\#\ )(?<!//)(?<!//\ )(?<!/\*)(?<!\*\ )(?<!--)(?<!--\ )(?<!;\ )  # not in a code comment
            (?:to-?do|(?<![\w-])(?:to\s+do|your\s+(?:new\s+|next\s+|real\s+|actual\s+)?task
                                  |(?:task|note|instructions?|message)\s+(?:for|to)\s+(?:the\s+)?(?:ai\s+|llm\s+)?
                                   (?:assistant|agent|ai|llm|model|bot)))s?
            [\ \t]*[:\u2013\u2014-][\ \t]*
            (?:(?:please|kindly|now|first|immediately|just)[\ \t,]+)*
            (?:(?:you\s+)?(?:must|should|need\s+to|have\s+to)\s+|(?:make\s+sure|remember|don't\s+forget)\s+to\s+)?
            (?:send|e-?mail|forward|reply|transfer|wire|pay|post|upload|share|submit|publish|invite|add|delete
             |remove|erase|create|make|book|reserve|schedule|cancel|change|update|modify|reset|set|visit|open
             |click|go\s+to|navigate|browse|download|install|run|execute|get|fetch|retrieve|read|tell|give|say
             |write|concatenate|collect|copy|move|grant|buy|purchase|order|message|contact|call|notify|follow
             |subscribe|rename|edit|list|find|search|look\s+up|check|include|attach|text)(?=\s)""",
        "~todo ~to-do ~to do your task note instruction instructions message", anchored=True, infix=True,
        reach=(0, 200),
        escalate=("task.directed", 0.6, _TASK_TARGET), context=(0, 240), context_end=_SENTENCE_END,
        escalate_if=_lone_task),
    # ---------------------------------------------------------------- exfiltration
    _rule(
        "exfil.send_to_address", 0.3,
        "An imperative to send/forward/transfer something to an e-mail address, IBAN or URL. Weak alone "
        "(invoices say 'transfer to DE89...'); escalated when what is sent is private data.",
        rf"""(?:send|e-?mail|forward|transfer|wire|post|upload|share|mail|submit|leak|exfiltrate|deliver|copy)
             \s[^\n]{{0,160}}?\bto\s*
             (?:[a-z'-]+\s+){{0,4}}?
             (?:(?:e-?mail\s+)?(?:address|account|iban|website|url|endpoint|link|recipient|server|webhook|number)\s*)?
             [\s,:'"`(<\[]*{_RECIPIENT}""",
        "send email e-mail forward transfer wire post upload share mail submit leak exfiltrate deliver copy",
        escalate=("exfil.private_data", 0.6, _SENSITIVE), context=(120, 140), anchored=True, near=_recipient_near,
        reach=(0, 520)),
    _rule(
        "exfil.markdown_image", 0.5,
        "A markdown image whose URL carries a query parameter left to be filled in ('![](https://x/?d={chat})'): "
        "rendering it sends data to that host without a click.",
        r"""!\[[^\]\n]{0,100}\]\(\s*<?(?:https?:)?//[^\s)]{1,200}?[?&][a-z0-9_.-]{1,30}=
            (?:\{|<|\[|\$|%7b|%3c|%5b|%24)""",
        "](", reach=(110, 260)),
    # ---------------------------------------------------------------- harvesting the agent's context
    _rule(
        "harvest.agent_context", 0.55,
        "Asks for the agent's own context: its tool list, system prompt, instructions or conversation "
        "history.",
        r"""(?:save|write|send|list|print|output|reveal|tell|show|share|dump|include|append|e-?mail|post|give
             |provide|enumerate|report|repeat|copy|leak|return)\s[^\n.]{0,40}?
            (?:(?:tools|functions|plugins|capabilities)\s+(?:that\s+)?
                (?:you\s+(?:can\s+(?:use|call|access|invoke)|have\s+(?:access\s+to|available)|are\s+(?:able\s+to\s+(?:use
                    |call)|allowed\s+to\s+use))|available\s+to\s+you|at\s+your\s+disposal)
             |(?:your|the)\s+(?:system\s+prompt|initial\s+(?:prompt|instructions)|hidden\s+(?:prompt|instructions)
                |original\s+instructions|(?:full\s+)?(?:conversation|chat)\s+(?:history|log|transcript)|previous\s+messages
                |context\s+window|instructions\s+(?:you\s+were\s+given|above)))""",
        "tools functions plugins capabilities prompt instructions history log transcript messages window",
        reach=(140, 80)),
    _rule(
        "harvest.model_identity", 0.55,
        "Asks which model is running ('the name of the llm model that calls this tool', 'tell me who you "
        "are'): out-of-scope data collection.",
        r"""(?:name|version|type|identity|vendor|provider)\s+of\s+(?:the\s+|your\s+)?
              (?:llm|ai|(?:large\s+)?language\s+model|model|assistant|agent|ai\s+(?:model|assistant|agent))(?:\s+model)?\s+
              (?:that|which|who)\s+(?:is\s+)?(?:call|calling|calls|use|uses|using|invoke|invokes|invoking|run|runs
                                              |running|access|accesses)
          | (?:tell|say|state|report|include|append|reveal|disclose|write)\s+(?:me\s+|us\s+)?(?:who|what|which)\s+
              (?:model\s+|llm\s+|ai\s+)?(?:you\s+are|are\s+you)\b
          | (?:which|what)\s+(?:llm|ai|(?:large\s+)?language\s+model|ai\s+model)\s+(?:you\s+are|are\s+you|is\s+
              (?:calling|using|running))""",
        "llm ai model assistant agent language who what which", reach=(80, 100)),
    _rule(
        "harvest.param_name", 0.6,
        "A parameter named for the calling model's identity or the agent's tool list (llm_model_name, "
        "llm_name, tools_list): an out-of-scope parameter that harvests agent data. Property names only.",
        r"""\A(?:llm(?:[\s_-]?model)?(?:[\s_-]?(?:name|version|type|id|identity|provider|vendor))
           |(?:ai|assistant|agent|language)[\s_-]?model[\s_-]?(?:name|version|type|identity|provider)
           |model[\s_-]?identity
           |(?:available[\s_-]?|all[\s_-]?|agent[\s_-]?)?tools?[\s_-]?(?:list|names)
           |list[\s_-]?of[\s_-]?(?:available[\s_-]?)?tools|available[\s_-]?tools)\Z""",
        "",
        scope="name"),
    _rule(
        "harvest.param_context", 0.35,
        "A parameter named for the agent's context (system_prompt, conversation_history, previous_messages). "
        "Weak: tools that wrap a model legitimately take these.",
        r"""\A(?:(?:your|the|agent|assistant|current)[\s_-]?)?
           (?:system[\s_-]?prompt|(?:conversation|chat|message)[\s_-]?history|previous[\s_-]?messages
           |context[\s_-]?window|assistant[\s_-]?instructions)\Z""",
        "",
        scope="name"),
    # ---------------------------------------------------------------- metadata-only
    _rule(
        "preference.superlative", 0.6,
        "A tool description praising itself ('This is the best tool in the world'): preference "
        "manipulation aimed at the model's tool choice. Metadata only (product reviews praise things).",
        r"""(?:this|it)\s+is\s+the\s+(?:best|greatest|most\s+(?:powerful|reliable|accurate|advanced|trusted|secure
                                        |efficient|useful)|only|ultimate|number\s+one|\#1|top|finest|perfect)\s+
              (?:[a-z]+\s+){0,2}(?:tool|function|server|option|choice|solution|api)\b
          | (?:best|greatest|ultimate)\s+(?:tool|function|server)\s+in\s+the\s+(?:world|universe|market)
          | (?:better|superior)\s+(?:than|to)\s+(?:all|any)\s+(?:the\s+)?(?:other|alternative)\s+(?:tools|functions)""",
        "this it best greatest ultimate better superior",
        scope="metadata", anchored=True, reach=(0, 140)),
    # ---------------------------------------------------------------- response manipulation (task drift)
    _rule(
        "response.transform", 0.6,
        "Tells the reader to transform *its* answer ('modify your answer to...', 'render your response in "
        "Portuguese', 'express your answer using emojis', 'augment your reply'): instructions for an answer "
        "generator, not for a person reading a document.",
        rf"""(?:modify|enhance|augment|alter|rewrite|render|express|embellish|infuse|scramble|encode|reverse
             |restructure|transform|spice\s+up|translate|reformat|obfuscate)\s+(?:all\s+)?your\s+(?:[a-z]+\s+)?
            (?:{_RESPONSE}|messages?\b)""",
        "response reply answer output message responses replies answers outputs messages",
        sites=_your_response_sites, reach=(40, 40)),
    _rule(
        "response.inject", 0.6,
        "Asks to work given content into the reader's answer ('integrate a statement in your reply', "
        "'allude to ... in your response', 'promote ... in your answer'): content injection aimed at an "
        "answer generator.",
        rf"""(?:integrate|incorporate|embed|inject|weave|allude\s+to|hint\s+at|promote|advertise|plug)
            (?:\s[^\n.]{{0,100}}?)?\s(?:in|into|within|throughout|to)\s+your\s+(?:[a-z]+\s+)?{_RESPONSE}""",
        "response reply answer output responses replies answers outputs", sites=_your_response_sites,
        reach=(130, 40)),
    _rule(
        "response.directive", 0.4,
        "Other directions about the reader's reply ('add \"...\" to your reply', 'in your response, include', "
        "'provide your answer in'). Below the threshold alone: 'include your order number in your reply' is "
        "ordinary correspondence.",
        rf"""(?:add|include|insert|append|put|place|mention|reference|suggest|recommend|share|state|use)
            (?:\s[^\n.]{{0,100}}?)?\s(?:in|into|to|within|throughout|at\s+the\s+end\s+of)\s+your\s+(?:[a-z]+\s+)?
            {_RESPONSE}
          | (?:in|within|throughout|at\s+the\s+(?:end|start|beginning)\s+of)\s+your\s+(?:[a-z]+\s+)?{_RESPONSE}
            \s*,\s*(?:please\s+)?(?:include|add|mention|suggest|recommend|state|write|say|insert|use|promote|tell
                                  |remind|provide|reference|integrate)
          | (?:provide|deliver|give|write|compose|craft|present|structure|format|begin|start|end|conclude|finish
             |sign)\s+(?:all\s+)?your\s+(?:[a-z]+\s+)?{_RESPONSE}""",
        "response reply answer output responses replies answers outputs", sites=_your_response_sites,
        reach=(170, 60)),
]

RULES: tuple[Rule, ...] = tuple(_RULE_LIST)

# Rules the detector adds itself (no pattern): documented here for the rule table's readers.
ENCODED_TEXT_WEIGHT = 0.3
UNICODE_TAGS_WEIGHT = 0.6
ROT13_MIN_WEIGHT = 0.45  # ROT13 of ordinary text is gibberish; only strong rules are believed there

# (id, weight or None for "the inner rule's", why)
SYNTHETIC_RULES: tuple[tuple[str, float | None, str], ...] = (
    ("encoded.<rule id>", None, "a rule matched inside a decoded base64/hex/percent/entity/ROT13/tag segment "
                                "(ROT13: rules of weight >= 0.45 only); the span is the encoded segment's"),
    ("encoded.text", ENCODED_TEXT_WEIGHT, "a base64 or hex segment decodes to readable prose: hidden text is a "
                                          "stealth-injection technique, but also how some APIs return files"),
    ("hidden.unicode_tags", UNICODE_TAGS_WEIGHT, "a run of 8+ Unicode tag characters (invisible ASCII look-alikes; "
                                                 "emoji flag sequences are shorter): text hidden from a human"),
    ("detector.truncated", 0.0, "the text was longer than max_chars; its middle was not scanned"),
    ("detector.error", 1.0, "the detector failed internally; the finding fails closed"),
    ("classifier.<name>", None, "the classifier's own score, blended in per classifier_weight (span 0, 0)"),
    ("detector.classifier_error", 0.0, "the classifier raised or returned NaN; the rules alone decide"),
)


def _index_rules(rules: Iterable[Rule]) -> tuple[dict[str, list[Rule]], list[tuple[str, Rule]], list[Rule]]:
    by_word: dict[str, list[Rule]] = {}
    by_substring: list[tuple[str, Rule]] = []
    always: list[Rule] = []
    for rule in rules:
        if not rule.triggers:
            always.append(rule)
        for trig in rule.triggers:
            if trig.isalnum():
                by_word.setdefault(trig, []).append(rule)
            else:
                by_substring.append((trig.removeprefix("~"), rule))
    return by_word, by_substring, always


_BY_WORD, _BY_SUBSTRING, _ALWAYS = _index_rules(RULES)
_TRIGGER_WORDS = frozenset(_BY_WORD)
_ORDER = {rule.id: i for i, rule in enumerate(RULES)}
_PUNCTUATION = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_NOT_WORD = bytes.maketrans(_PUNCTUATION, b" " * len(_PUNCTUATION))
_NEGATION = re.compile(r"\b(?:not|never|no|nor|avoid|without|n't|don't|dont|doesn't|won't|cannot)\b[^.\n]{0,20}\Z")
_LINE_PREFIX = re.compile(r"[\s>*#_\-\[(|`]*\Z")

_SCOPES: dict[str, frozenset[str]] = {
    "text": frozenset({"text"}),
    "metadata": frozenset({"text", "metadata"}),
    "name": frozenset({"text", "metadata", "name"}),
}


class _Words(set[str]):
    """The ASCII words of a normalised text, and (computed once, on demand) the length of the longest."""

    __slots__ = ("longest",)

    def __init__(self, words: Iterable[str]) -> None:
        super().__init__(words)
        self.longest = -1


def _words(text: str) -> _Words:
    """The ASCII words of normalised ``text``: what trigger words are looked up in."""
    return _Words(text.encode("ascii", "replace").translate(_NOT_WORD).decode("ascii").split())


def _longest(words: set[str]) -> int:
    """The length of the longest word (cached on a :class:`_Words`)."""
    if isinstance(words, _Words):
        if words.longest < 0:
            words.longest = max(map(len, words), default=0)
        return words.longest
    return max(map(len, words), default=0)


def _trigger_sites(text: str, words: set[str], rule: Rule, limit: int = MAX_TRIGGER_SITES) -> list[int] | None:
    """Where ``rule``'s triggers occur in ``text``; None when so often (over ``limit``) that scanning
    everything is cheaper."""
    if rule.sites is not None:
        return rule.sites(text, words)
    sites: list[int] = []
    steps = 0
    size = len(text)
    for trig in rule.triggers:
        whole_word = trig.isalnum()
        trig = trig.removeprefix("~")
        if whole_word and trig not in words:
            continue
        i = text.find(trig)
        while i != -1:
            steps += 1
            if steps > 4 * limit:
                return None
            j = i + len(trig)
            if not whole_word or ((i == 0 or not text[i - 1].isalnum()) and (j >= size or not text[j].isalnum())):
                sites.append(i)
                if len(sites) > limit:
                    return None
            i = text.find(trig, j)
    return sites


def _windows(text: str, words: set[str], rule: Rule) -> list[tuple[int, int]]:
    """The parts of ``text`` a match of ``rule`` can lie in: its ``reach`` around each trigger."""
    sites = _trigger_sites(text, words, rule) if rule.triggers else None
    if sites is None:
        return [(0, len(text))]
    merged: list[tuple[int, int]] = []
    for site in sorted(sites):
        lo, hi = max(0, site - rule.reach[0]), min(len(text), site + rule.reach[1])
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _candidate_rules(text: str, words: set[str], scopes: frozenset[str]) -> list[Rule]:
    """The rules whose triggers occur in ``text`` (normalised; ``words`` its word set), in table order."""
    chosen: dict[str, Rule] = {}
    for word in _TRIGGER_WORDS.intersection(words):
        for rule in _BY_WORD[word]:
            chosen[rule.id] = rule
    for trig, rule in _BY_SUBSTRING:
        if rule.id not in chosen and trig in text:
            chosen[rule.id] = rule
    for rule in _ALWAYS:
        chosen[rule.id] = rule
    return sorted((r for r in chosen.values() if r.scope in scopes), key=lambda r: _ORDER[r.id])


def _finditer(rule: Rule, text: str, words: set[str]) -> Iterator[re.Match[str]]:
    """The matches of ``rule`` in ``text``, looking only where its triggers allow a match."""
    if rule.anchored and rule.triggers:
        sites = _trigger_sites(text, words, rule, ANCHORED_SITES)
        if sites is not None and rule.near is not None:
            sites = list(filter(rule.near(text, words), sites))
        if sites is not None:
            last_end = 0
            for site in sorted(set(sites)):
                if site < last_end:
                    continue
                m = rule.pattern.match(text, site, min(len(text), site + rule.reach[1]))
                if m is not None:
                    last_end = m.end()
                    yield m
            return
    for lo, hi in _windows(text, words, rule):
        yield from rule.pattern.finditer(text, lo, hi)


@dataclass(slots=True)
class _RawHit:
    rule: str
    start: int  # in the normalised text
    end: int
    weight: float


# A line break that only wraps a line: the line before ends in a word or punctuation other than ":" (up to
# three spaces may follow it) and the next line, after its indentation, starts no list item, heading,
# quote, table row, code fence, bracket or tag (code and markup), or "key:" field (up to three words:
# "Action items:"). YAML folds long
# strings this way (tool results are often rendered as YAML), and e-mails and text files are wrapped at a
# fixed width. (The pattern starts with its literal "\n", so the regex engine can skip to each line end.)
_SOFT_BREAK = re.compile(r"""\n(?:(?<=[^\s:]\n)|(?<=[^\s:][\ \t\r]\n)|(?<=[^\s:][\ \t\r]{2}\n)|(?<=[^\s:][\ \t\r]{3}\n))
    (?=[\ \t]{0,40}
       (?!(?:[-*+=>\#|`_~{}\[\]<]|\d{1,3}[.)]\s|[\w.'"@-]{1,40}+(?:\ [\w.'"@-]{1,20}+){0,2}+:(?:\s|\Z)))
       \S)""", re.VERBOSE)
# An escaped line break in a double-quoted YAML string: "\" ends the line, and the next line's indentation
# is followed by "\ " when the break was at a space.
_ESCAPED_BREAK = re.compile(r"\\\n[\ \t]{0,40}(?:\\(?=\ ))?")


def _unfold(text: str) -> str:
    """``text`` with soft line breaks (see _SOFT_BREAK, _ESCAPED_BREAK) turned into spaces, so a sentence
    wrapped over several lines reads as one line. The length is unchanged, so spans stay valid."""
    if "\n" not in text:
        return text
    if "\\\n" in text:
        text = _ESCAPED_BREAK.sub(lambda m: " " * (m.end() - m.start()), text)
    return _SOFT_BREAK.sub(" ", text)


def _match_rules(text: str, scopes: frozenset[str], words: set[str] | None = None) -> list[_RawHit]:
    """Every rule match in normalised ``text`` (spans in ``text``).

    Patterns run on the unfolded text (see :func:`_unfold`); ``line_start`` is judged on the lines of
    ``text`` itself."""
    out: list[_RawHit] = []
    words = _words(text) if words is None else words
    lines = text
    text = _unfold(text)
    for rule in _candidate_rules(text, words, scopes):
        count = 0
        for m in _finditer(rule, text, words):
            start, end = m.span()
            if start == end:
                continue
            if not rule.infix and start > 0 and text[start].isalnum() and text[start - 1].isalnum():
                continue  # the match starts inside a word
            if rule.negatable and _NEGATION.search(text, max(0, start - 30), start):
                continue
            if rule.line_start and not _LINE_PREFIX.match(lines, lines.rfind("\n", 0, start) + 1, start):
                continue
            rule_id, weight = rule.id, rule.weight
            if rule.escalate is not None:
                esc_id, esc_weight, esc_pattern = rule.escalate
                lo = max(text.rfind("\n", 0, start) + 1, start - rule.context[0])
                hi = text.find("\n", end)
                hi = min(len(text) if hi == -1 else hi, end + rule.context[1])
                stop = rule.context_end.search(text, end, hi) if rule.context_end is not None else None
                hi = hi if stop is None else stop.start()
                if esc_pattern.search(text, lo, hi) and (rule.escalate_if is None or rule.escalate_if(lines, start)):
                    rule_id, weight = esc_id, esc_weight
            out.append(_RawHit(rule_id, start, end, weight))
            count += 1
            if count >= MAX_HITS_PER_RULE:
                break
    return out


# --------------------------------------------------------------------------------------------------
# encoded payloads

# No leading look-behind and no trailing look-ahead: both would make long runs quadratic.
_B64 = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){16,}|(?:\\x[0-9A-Fa-f]{2}){8,}")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_SPACE = re.compile(r"\s")
_ENTITY = re.compile(r"(?:&#(?:[0-9]{1,7}|[xX][0-9A-Fa-f]{1,6});?){4,}")
_UNICODE_ESCAPE = re.compile(r"(?:\\u[0-9A-Fa-f]{4}){4,}")
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")
# ROT13 of words most strong rules need; only when one occurs is a ROT13 pass worth running.
_ROT13_HINTS = frozenset(w.translate(_ROT13) for w in (
    "ignore", "disregard", "forget", "instructions", "instruction", "system", "previous", "password", "assistant",
    "important", "user", "tool", "function", "secret", "send", "email"))
_PROSE = re.compile(r"[a-z][a-z'-]*")


def _readable(decoded: str) -> bool:
    """Decoded bytes that look like text a model would read (not binary, not a hash)."""
    if len(decoded) < 8:
        return False
    printable = sum(1 for c in decoded if c.isprintable() or c in "\n\r\t")
    return printable >= 0.95 * len(decoded) and sum(1 for c in decoded if c.isalpha()) >= 0.5 * len(decoded)


def _prose(decoded: str) -> bool:
    words = _PROSE.findall(decoded.lower())
    return len(words) >= 4 and sum(len(w) for w in words) >= 0.6 * len(decoded)


def _decode_base64(segment: str) -> str | None:
    if not (any(c.isupper() for c in segment) and any(c.islower() for c in segment)):
        return None
    body = segment.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return text if _readable(text) else None


def _decode_hex(segment: str) -> str | None:
    digits = segment.replace("\\x", "")
    try:
        text = bytes.fromhex(digits).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return text if _readable(text) else None


def _long_tokens(text: str) -> Iterator[tuple[int, str]]:
    """Whitespace-separated tokens of 24 characters or more, with their positions: where encodings hide.

    (Splitting is much cheaper than running the base64 and hex patterns over every position.)
    """
    cursor = 0
    for token in [t for t in text.split() if len(t) >= 24]:
        pos = text.find(token, cursor)
        yield pos, token
        cursor = pos + len(token)


def _encoded_segments(text: str, long_words: bool = True) -> Iterator[tuple[int, int, str, bool]]:
    """(start, end, decoded text, is-a-binary-encoding) for encoded segments of the original ``text``.

    ``long_words`` False (the text has no run of 16 letters and digits) skips base64 and hex: every
    segment worth decoding has such a run, unless its alphabet's punctuation breaks it up every few
    characters, which a speed-up accepts missing.
    """
    count = 0
    attempts = 0
    for pos, token in _long_tokens(text) if long_words else ():
        for pattern, decode in ((_B64, _decode_base64), (_HEX, _decode_hex)):
            for m in pattern.finditer(token):
                attempts += 1
                if attempts > 8 * MAX_DECODED_SEGMENTS:
                    break
                decoded = decode(m.group()[:MAX_SEGMENT_CHARS])
                if decoded is not None:
                    yield pos + m.start(), pos + m.end(), decoded, True
                    count += 1
                    if count >= MAX_DECODED_SEGMENTS:
                        return
    if "%" in text:
        token_end = -1
        for m in _PERCENT_ESCAPE.finditer(text):
            if m.start() < token_end:
                continue
            space = _SPACE.search(text, m.end())
            token_end = len(text) if space is None else space.start()
            token_start = m.start()
            floor = max(0, m.start() - MAX_SEGMENT_CHARS)
            while token_start > floor and not text[token_start - 1].isspace():
                token_start -= 1
            segment = text[token_start:min(token_end, token_start + MAX_SEGMENT_CHARS)]
            if segment.count("%") < 4:
                continue
            decoded = urllib.parse.unquote_plus(segment, errors="replace")
            yield token_start, token_end, decoded, False
            count += 1
            if count >= MAX_DECODED_SEGMENTS:
                return
    if "&#" in text:
        for m in _ENTITY.finditer(text):
            yield m.start(), m.end(), html.unescape(m.group()[:MAX_SEGMENT_CHARS]), False
            count += 1
            if count >= MAX_DECODED_SEGMENTS:
                return
    if "\\u" in text:
        for m in _UNICODE_ESCAPE.finditer(text):
            segment = m.group()[:MAX_SEGMENT_CHARS]
            decoded = "".join(chr(int(segment[i + 2:i + 6], 16)) for i in range(0, len(segment) - 5, 6))
            yield m.start(), m.end(), decoded, False
            count += 1
            if count >= MAX_DECODED_SEGMENTS:
                return


# --------------------------------------------------------------------------------------------------
# the detector


def _excerpt(text: str, start: int, end: int) -> str:
    """The matched text, cut to EXCERPT_CHARS (ending in "..." when cut), on one line: line breaks and
    tabs become spaces, invisible characters are left out."""
    piece = text[start:start + EXCERPT_CHARS - 3] + "..." if end - start > EXCERPT_CHARS else text[start:end]
    if piece.isprintable():
        return piece
    return "".join(c if c.isprintable() else " " if c.isspace() else "" for c in piece)


@dataclass(slots=True)
class _Collector:
    """Hits of one scan, in original coordinates, with per-rule and total caps."""

    hits: list[Hit] = field(default_factory=list)
    per_rule: dict[str, int] = field(default_factory=dict)

    def add(self, hit: Hit) -> None:
        n = self.per_rule.get(hit.rule, 0)
        if n >= MAX_HITS_PER_RULE or len(self.hits) >= MAX_HITS:
            return
        self.per_rule[hit.rule] = n + 1
        self.hits.append(hit)


def combine(hits: Iterable[Hit]) -> float:
    """Noisy-or over distinct rule ids, each at the weight of its strongest hit."""
    best: dict[str, float] = {}
    for hit in hits:
        if hit.weight > best.get(hit.rule, 0.0):
            best[hit.rule] = hit.weight
    remaining = 1.0
    for weight in best.values():
        remaining *= 1.0 - min(max(weight, 0.0), 1.0)
    return 1.0 - remaining


class InjectionDetector:
    """Scores text for prompt injection. Thread-safe and stateless after construction."""

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, classifier: Classifier | None = None,
                 classifier_weight: float = 0.5, max_chars: int = 200_000) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if not 0.0 <= classifier_weight <= 1.0:
            raise ValueError("classifier_weight must be in [0, 1]")
        if max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        self.threshold = threshold
        self.classifier = classifier
        self.classifier_weight = classifier_weight
        self.max_chars = max_chars

    # ---------------------------------------------------------------- public API

    def scan(self, text: str) -> Finding:
        """Score one tool result (or any text). Never raises."""
        try:
            if not isinstance(text, str):
                text = str(text)
            collector = _Collector()
            self._scan_document(text, collector, _SCOPES["text"], offset=0, prefix="")
            return self._finish(collector.hits, text)
        except Exception:  # noqa: BLE001 - the detector must never break the gateway; fail closed
            return self._failed()

    def scan_metadata(self, definition: Mapping[str, Any]) -> Finding:
        """Score a tool/prompt/resource definition as listed. Never raises.

        Every text field is scanned on its own (see :func:`metadata_fields`); hit spans index
        :func:`metadata_text` of the same definition, and excerpts start with the field path.
        """
        try:
            collector = _Collector()
            offset = 0
            budget = self.max_chars
            truncated = False
            for path, kind, value in metadata_fields(definition):
                line_start = offset + len(path) + 2
                if budget <= 0:
                    truncated = True
                    break
                scanned = value[:budget]
                budget -= len(scanned)
                if len(scanned) < len(value):
                    truncated = True
                if kind == "name" or path == "name" or path.endswith("].name"):
                    # identifiers: read "ignore_previous_instructions" as words
                    scanned = scanned.replace("_", " ").replace("-", " ")
                self._scan_document(scanned, collector, _SCOPES[kind], offset=line_start, prefix=f"{path}: ",
                                    original=value[:len(scanned)])
                offset = line_start + len(value) + 1
            if truncated:
                collector.add(Hit("detector.truncated", 0, offset, 0.0, "metadata longer than max_chars"))
            return self._finish(collector.hits, metadata_text(definition) if self.classifier else "")
        except Exception:  # noqa: BLE001 - see scan
            return self._failed()

    # ---------------------------------------------------------------- internals

    def _failed(self) -> Finding:
        hit = Hit("detector.error", 0, 0, 1.0, "internal detector error")
        return Finding(1.0, (hit,), True)

    def _finish(self, hits: list[Hit], text: str) -> Finding:
        hits.sort(key=lambda h: (h.start, -h.weight, h.rule))
        score = combine(hits)
        if self.classifier is not None:
            try:
                opinion = float(self.classifier.score(text))
                if math.isnan(opinion):
                    raise ValueError("classifier returned NaN")
                opinion = min(max(opinion, 0.0), 1.0)
                score = (1.0 - self.classifier_weight) * score + self.classifier_weight * opinion
                hits.append(Hit(f"classifier.{self.classifier.name}", 0, 0, opinion, f"classifier score {opinion:.2f}"))
            except Exception:  # noqa: BLE001 - a broken model must not break scanning; rules still decide
                hits.append(Hit("detector.classifier_error", 0, 0, 0.0, "classifier failed; rules only"))
        score = min(max(score, 0.0), 1.0)
        return Finding(score, tuple(hits), score >= self.threshold)

    def _scan_document(self, text: str, collector: _Collector, scopes: frozenset[str], *, offset: int,
                       prefix: str, original: str | None = None) -> None:
        """Scan ``text`` (``original`` is what excerpts quote; default ``text``), honouring max_chars."""
        source = text if original is None else original
        if len(text) <= self.max_chars:
            self._scan_part(text, source, 0, collector, scopes, offset, prefix)
            return
        half = self.max_chars // 2
        tail_start = len(text) - half
        self._scan_part(text[:half], source[:half], 0, collector, scopes, offset, prefix)
        self._scan_part(text[tail_start:], source[tail_start:], tail_start, collector, scopes, offset, prefix)
        collector.add(Hit("detector.truncated", offset + half, offset + tail_start, 0.0,
                          f"{prefix}{len(text)} chars; scanned the first and last {half}"))

    def _scan_part(self, text: str, source: str, base: int, collector: _Collector, scopes: frozenset[str],
                   offset: int, prefix: str) -> None:
        """Scan one part of a document; ``base`` is its position in the document."""
        n = normalise(text)
        shift = offset + base

        def emit(rule: str, start: int, end: int, weight: float) -> None:
            collector.add(Hit(rule, shift + start, shift + end, weight, prefix + _excerpt(source, start, end)))

        words = _words(n.text)
        for raw in _match_rules(n.text, scopes, words):
            start, end = span_in_original(n, raw.start, raw.end)
            emit(raw.rule, start, end, raw.weight)
        self._scan_encoded(text, n, words, scopes, emit)

    def _scan_encoded(self, text: str, n: Normalised, words: set[str], scopes: frozenset[str],
                      emit: Callable[[str, int, int, float], None]) -> None:
        """The second pass: decode encoded segments of ``text`` and scan what they hide."""
        long_words = _longest(words) >= 16
        for start, end, decoded, binary in _encoded_segments(text, long_words):
            inner = normalise(decoded)
            found = False
            for raw in _match_rules(inner.text, scopes):
                emit("encoded." + raw.rule, start, end, raw.weight)
                found = True
            if binary and (found or _prose(inner.text)):
                emit("encoded.text", start, end, ENCODED_TEXT_WEIGHT)
        if not text.isascii():
            for m in _TAG_RUN.finditer(text):
                run = m.group()
                hidden = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
                if len(hidden) >= 8:
                    emit("hidden.unicode_tags", m.start(), m.end(), UNICODE_TAGS_WEIGHT)
                    for raw in _match_rules(normalise(hidden).text, scopes):
                        emit("encoded." + raw.rule, m.start(), m.end(), raw.weight)
        if not words.isdisjoint(_ROT13_HINTS):
            rotated = n.text.translate(_ROT13)
            for raw in _match_rules(rotated, scopes):
                if raw.weight >= ROT13_MIN_WEIGHT:
                    start, end = span_in_original(n, raw.start, raw.end)
                    emit("encoded." + raw.rule, start, end, raw.weight)


# --------------------------------------------------------------------------------------------------
# metadata

# Schema keywords whose string values are structure, not prose.
_STRUCTURAL_KEYS = frozenset({"type", "format", "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "pattern",
                              "contentEncoding", "contentMediaType", "required"})


def metadata_fields(definition: Mapping[str, Any]) -> list[tuple[str, Literal["metadata", "name"], str]]:
    """The text fields of a tool/prompt/resource definition, as ``(path, kind, value)``.

    In order: ``name``, ``title``, ``description``, ``annotations.title``; for prompts each
    ``arguments[i].name/title/description``; then ``inputSchema`` and ``outputSchema`` depth first:
    every property name (path ``<schema path>.properties.<name> (name)``, kind ``name``: the only
    fields the parameter-name rules look at) and every string that is not schema structure
    (``description``, ``title``, ``default``, ``examples``, ``enum``, ``const``, vendor keys; not
    ``type``, ``format``, ``$ref``, ``pattern``...), kind ``metadata``. Identifiers (the name, argument
    and property names) are scanned with ``_`` and ``-`` read as spaces.
    Traversal is bounded (depth, node count) and tolerates cycles and odd types.
    """
    fields: list[tuple[str, Literal["metadata", "name"], str]] = []
    if not isinstance(definition, Mapping):
        return fields
    name = definition.get("name")
    if isinstance(name, str):
        fields.append(("name", "metadata", name))
    for key in ("title", "description"):
        value = definition.get(key)
        if isinstance(value, str):
            fields.append((key, "metadata", value))
    annotations = definition.get("annotations")
    if isinstance(annotations, Mapping) and isinstance(annotations.get("title"), str):
        fields.append(("annotations.title", "metadata", annotations["title"]))
    arguments = definition.get("arguments")
    if isinstance(arguments, Sequence) and not isinstance(arguments, str | bytes):
        for i, argument in enumerate(arguments[:MAX_METADATA_NODES]):
            if not isinstance(argument, Mapping):
                continue
            for key in ("name", "title", "description"):
                value = argument.get(key)
                if isinstance(value, str):
                    fields.append((f"arguments[{i}].{key}", "metadata", value))
    for key in ("inputSchema", "outputSchema"):
        schema = definition.get(key)
        if isinstance(schema, Mapping | list):
            fields.extend(_schema_fields(schema, key))
    return fields


def _schema_fields(schema: Any, root: str) -> list[tuple[str, Literal["metadata", "name"], str]]:
    out: list[tuple[str, Literal["metadata", "name"], str]] = []
    stack: list[tuple[Any, str, int, bool]] = [(schema, root, 0, False)]
    seen: set[int] = set()
    nodes = 0
    while stack and nodes < MAX_METADATA_NODES:
        node, path, depth, structural = stack.pop()
        nodes += 1
        if isinstance(node, str):
            if not structural:
                out.append((path, "metadata", node))
            continue
        if not isinstance(node, Mapping | list) or depth >= MAX_METADATA_DEPTH or id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[Any, str, int, bool]] = []
        if isinstance(node, Mapping):
            for key, value in node.items():
                key_text = str(key)
                child_path = f"{path}.{key_text}"
                if key_text == "properties" and isinstance(value, Mapping):
                    for prop, sub in value.items():
                        prop_text = str(prop)
                        out.append((f"{child_path}.{prop_text} (name)", "name", prop_text))
                        children.append((sub, f"{child_path}.{prop_text}", depth + 2, False))
                else:
                    children.append((value, child_path, depth + 1, key_text in _STRUCTURAL_KEYS))
        else:
            for i, value in enumerate(node):
                children.append((value, f"{path}[{i}]", depth + 1, structural))
        stack.extend(reversed(children))
    return out


def metadata_text(definition: Mapping[str, Any]) -> str:
    """The document metadata hit spans refer to: one ``<path>: <value>`` line per field, in order."""
    return "".join(f"{path}: {value}\n" for path, _kind, value in metadata_fields(definition))
