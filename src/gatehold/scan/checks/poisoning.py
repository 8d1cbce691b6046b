"""Tool poisoning: metadata that talks to the model, and parameters that collect what is not theirs.

``tool-poisoning`` scores every definition (tool, prompt, resource, template) with the gateway's own
injection detector, exactly as the gateway screens metadata at list time
(:class:`gatehold.output.screen.MetadataScreen`): every ``description`` and ``title`` is sanitised
first, then :meth:`~gatehold.output.detect.InjectionDetector.scan_metadata` reads the text fields.
Where sanitising removed something, the definition as listed is scored too and the higher score
counts, so text hidden in an HTML comment is read rather than dropped unread. Content hidden from a
person (HTML comments, hidden elements) is itself reported even when the detector finds no
instruction in it: a description has no honest use for it. A definition larger than the detector
reads is reported as unreadable (fail closed).

``suspicious-parameter`` looks at each required input of a tool: a parameter that asks the
calling model for itself (its model name, its system prompt, its tool list, the conversation, other
tools' outputs) or for credential material the tool has no use for. Two kinds of evidence count:

* the parameter's description (or, failing that, the ``Args:`` text of the tool's description)
  refers to the *caller*: "the llm model that calls this tool", "your system prompt", "tools
  available to you", "the calling agent"...;
* the parameter's name is one only the caller's own context could fill (``llm_model_name``,
  ``tools_list``, ``conversation_history``, ``system_prompt``...), and nothing says the tool itself
  drives a model (no mention of generation, completions, an LLM or a model vendor in the tool's own
  text) or that the parameter is a setting (an ``enum``, ``const`` or ``default``, or a description
  saying it selects what to use).

Credential material counts when the parameter names private keys, SSH keys, seed phrases, cookies
or dotfiles of credentials, or another vendor's key, and the tool's own text never mentions it.
Prompt arguments are not judged: the user picks a prompt and fills its arguments, not the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gatehold.output.detect import Finding as DetectorFinding
from gatehold.output.detect import Hit, InjectionDetector
from gatehold.output.sanitise import Sanitiser
from gatehold.scan.checks.fields import Parameter, exceeds_bounds, field_at, parameters, visible
from gatehold.scan.model import CheckInfo, Finding, ItemKind, ScanInput, ServerSnapshot, Severity

__all__ = ["CHECKS", "SUSPICIOUS_PARAMETER", "TOOL_POISONING", "run"]

TOOL_POISONING = CheckInfo(
    id="tool-poisoning",
    title="Instructions aimed at the model in tool, prompt or resource metadata",
    severity="high",
    rationale=(
        "A model reads every tool description, parameter description and title of every connected server "
        "as trusted context, before the user asks anything. A server that writes instructions there (ignore "
        "previous instructions, read a credentials file, prefer this tool, do not tell the user) steers the "
        "agent without any tool being called. Text hidden from people (HTML comments, hidden elements) in "
        "metadata serves only that purpose."),
    remediation=(
        "Do not connect the server until its metadata is rewritten: descriptions should say what the tool "
        "does and nothing to the model. Report the text to the server's maintainer. Behind Gatehold, "
        "`output.injection.metadata: quarantine` withholds flagged definitions until a human accepts them."),
)

SUSPICIOUS_PARAMETER = CheckInfo(
    id="suspicious-parameter",
    title="Required parameter asks the calling model for its own context or unrelated credentials",
    severity="medium",
    rationale=(
        "A required parameter is filled in by the model on every call, so a parameter that asks for the "
        "model's name, its system prompt, its list of tools, the conversation or other tools' results "
        "makes the agent hand its context to the server. None of these is needed to search, read or write "
        "anything; collecting them profiles the agent and leaks the user's conversation. The same holds for "
        "credentials of something other than what the tool wraps."),
    remediation=(
        "Remove the parameter from the tool (or do not connect the server). If the server needs to know its "
        "client, it can read the client's name from the MCP `initialize` request, not from the model."),
)

CHECKS: tuple[CheckInfo, ...] = (TOOL_POISONING, SUSPICIOUS_PARAMETER)

_DETECTOR = InjectionDetector()
_SANITISER = Sanitiser()
_TEXT_KEYS = frozenset({"description", "title"})
_HIDING = ("html_comment", "hidden_html")
_MAX_DEPTH = 32  # as the gateway's screen: a deeper definition is not passed unread
_EVIDENCE_RULES = 3


def run(scan: ScanInput) -> Iterator[Finding]:
    for server in scan.servers:
        for kind, name, definition in server.items():
            yield from _poisoning(server, kind, name, definition)
            yield from _suspicious_parameters(server, kind, name, definition)


# --------------------------------------------------------------------------------------------------
# tool-poisoning


@dataclass(frozen=True, slots=True)
class _Screened:
    definition: Mapping[str, Any]  # with descriptions and titles sanitised
    hidden: dict[str, list[str]]  # field path -> hiding classes the sanitiser removed there
    too_deep: bool


def _screen(definition: Mapping[str, Any]) -> _Screened:
    hidden: dict[str, list[str]] = {}
    too_deep = False

    def walk(node: Any, path: str, depth: int) -> Any:
        nonlocal too_deep
        if depth > _MAX_DEPTH:
            too_deep = True
            return node
        if isinstance(node, list):
            return [walk(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node)]
        if not isinstance(node, Mapping):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if key in _TEXT_KEYS and isinstance(value, str):
                cleaned = _SANITISER.clean(value)
                classes = sorted(k for k in cleaned.removed if k in _HIDING)
                if classes:
                    hidden[child] = classes
                out[key] = cleaned.text
            else:
                out[key] = walk(value, child, depth + 1)
        return out

    return _Screened(walk(definition, "", 0), hidden, too_deep)


def _poisoning(server: ServerSnapshot, kind: ItemKind, name: str,
               definition: Mapping[str, Any]) -> Iterator[Finding]:
    if exceeds_bounds(definition):
        yield Finding(TOOL_POISONING.id, "high",
                      f"{kind} {visible(name, 60)!r} is nested too deep or too large for the metadata scan to read "
                      "whole; review it by hand", server.at(kind, name))
        return
    screened = _screen(definition)
    if screened.too_deep:
        yield Finding(TOOL_POISONING.id, "high",
                      f"{kind} {visible(name, 60)!r} is nested deeper than {_MAX_DEPTH} levels; its text was not "
                      "screened", server.at(kind, name))
        return
    scanned: Mapping[str, Any] = screened.definition
    verdict = _DETECTOR.scan_metadata(scanned)
    if screened.hidden:
        raw = _DETECTOR.scan_metadata(definition)
        if raw.score > verdict.score:
            scanned, verdict = definition, raw
    if verdict.flagged:
        yield _injection_finding(server, kind, name, scanned, verdict, screened.hidden)
    elif screened.hidden:
        path, classes = next(iter(screened.hidden.items()))
        text = _text_at(definition, path)
        start = text.find("<")
        yield Finding(TOOL_POISONING.id, "high",
                      f"{kind} {visible(name, 60)!r}: content hidden from the user in {path} "
                      f"({', '.join(classes)})",
                      server.at(kind, name, path), visible(text[max(start, 0):], 160))


def _injection_finding(server: ServerSnapshot, kind: ItemKind, name: str, scanned: Mapping[str, Any],
                       verdict: DetectorFinding, hidden: Mapping[str, list[str]]) -> Finding:
    best: dict[str, Hit] = {}
    for hit in verdict.hits:
        if hit.weight > 0 and (hit.rule not in best or hit.weight > best[hit.rule].weight):
            best[hit.rule] = hit
    strongest = sorted(best.values(), key=lambda h: (-h.weight, h.start))[:_EVIDENCE_RULES]
    field = field_at(scanned, strongest[0].start) if strongest else None
    parts = []
    for hit in strongest:
        path = field_at(scanned, hit.start)
        excerpt = hit.excerpt
        if path is not None:
            for prefix in (f"{path} (name): ", f"{path}: "):
                excerpt = excerpt.removeprefix(prefix)
        parts.append(f"{hit.rule} in {path or '?'}: {visible(excerpt, 60)!r}")
    rules = ", ".join(hit.rule for hit in strongest) or "detector"
    message = f"{kind} {visible(name, 60)!r}: suspected instructions to the model (score {verdict.score:.2f}: {rules})"
    if hidden:
        places = "; ".join(f"{path} ({', '.join(classes)})" for path, classes in sorted(hidden.items()))
        message += f"; content hidden from the user in {places}"
    severity: Severity = "critical" if verdict.score >= 0.9 else "high"
    return Finding(TOOL_POISONING.id, severity, message, server.at(kind, name, field), "; ".join(parts))


def _text_at(definition: Mapping[str, Any], path: str) -> str:
    """The string at a dotted path such as ``inputSchema.properties.x.description`` (``""`` if none)."""
    node: Any = definition
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("[") and isinstance(node, list):
            index = int(part[1:-1])
            node = node[index] if index < len(node) else None
        elif isinstance(node, Mapping):
            node = node.get(part)
        else:
            return ""
    return node if isinstance(node, str) else ""


# --------------------------------------------------------------------------------------------------
# suspicious-parameter

_MODEL = r"(?:llms?|ais?|(?:large\s+)?language\s+models?|models?|assistants?|agents?|chatbots?|bots?)"
_CALLS = r"(?:call|calls|calling|called|invoke|invokes|invoking|use|uses|using|run|runs|running|access|accesses)"

def _patterns(*pairs: tuple[str, str], flags: int = re.I | re.X) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((subject, re.compile(pattern, flags)) for subject, pattern in pairs)


# What a description says when it asks the caller about itself, naming the caller: (subject, pattern).
_CALLER_TEXT = _patterns(
    ("the calling model's identity", rf"""
        \b(?:name|version|type|identity|vendor|provider|id)\s+of\s+(?:the\s+|your\s+|this\s+)?{_MODEL}
          (?:\s+model)?\s+(?:that|which|who)\s+(?:is\s+|are\s+)?{_CALLS}\s+(?:this|the)\s+(?:tool|function|server)
      | \b(?:calling|invoking|requesting)\s+{_MODEL}(?:'s)?\s+(?:model\s+)?(?:name|identity|version|vendor|provider)
      | \b(?:which|what)\s+(?:model|llm|ai)\s+(?:you\s+are|are\s+you)\b | \bwho\s+you\s+are\b"""),
    ("the agent's system prompt", r"""
        \b(?:system\s+prompt|instructions)\s+of\s+(?:the\s+)?(?:calling\s+)?(?:llm|ai|assistant|agent|model|caller)\b
      | \b(?:calling|invoking)\s+(?:llm|ai|assistant|agent|model)(?:'s)?\s+(?:system\s+)?(?:prompt|instructions)"""),
    ("the agent's tool list", r"""
        \b(?:tools|functions)\s+(?:that\s+)?(?:you\s+(?:can\s+(?:use|call|access)|have(?:\s+access\s+to)?
            |are\s+able\s+to)|available\s+to\s+you|at\s+your\s+disposal)
      | \b(?:list|names)\s+of\s+(?:all\s+)?(?:the\s+)?(?:available\s+)?tools\s+(?:of|available\s+to)\s+
            (?:the\s+)?(?:calling\s+)?(?:llm|ai|assistant|agent|model|caller)"""),
    ("the conversation", r"""
        \b(?:conversation|chat|dialog(?:ue)?)\s+(?:so\s+far|up\s+to\s+now|until\s+now)\b
      | \b(?:entire|full|whole|complete)\s+(?:conversation|chat)\s+(?:history|transcript)\b"""),
    ("other tools' outputs", r"""
        \b(?:outputs?|results?|responses?)\s+(?:of|from)\s+(?:the\s+|all\s+|any\s+)?(?:other|previous|prior|earlier)
          \s+(?:tools?|tool\s+calls?|function\s+calls?)\b"""),
)

# The same in the second person ("your system prompt"): the reader of a description is the model, but
# "your model" can also be the user's own model on a model-hosting tool, so these count only where the
# tool does not deal in models itself (as the names below).
_YOUR_TEXT = _patterns(
    ("the calling model's identity", r"""
        \byour\s+(?:own\s+)?(?:model|llm)(?:\s+(?:name|version|identity|vendor|provider))?\b | \byour\s+identity\b"""),
    ("the agent's system prompt", r"""
        \byour\s+(?:own\s+)?(?:system\s+prompt|(?:initial|original|hidden|system)\s+(?:prompt|instructions))\b"""),
    ("the agent's tool list", r"\byour\s+(?:available\s+)?(?:tools|functions|tool\s+list)\b"),
    ("the conversation", r"""
        \byour\s+(?:conversation|chat)(?:\s+(?:history|log|transcript))?\b
      | \byour\s+(?:previous|prior|earlier)\s+(?:messages|turns)\b"""),
    ("other tools' outputs",
     r"\byour\s+(?:previous|prior|last|earlier)\s+(?:outputs?|results?|responses?|tool\s+calls?)\b"),
)

# Names only the caller's own context fills, by subject. Names are compared in snake_case.
_CALLER_NAMES = _patterns(
    ("the calling model's identity", r"""
        (?:llm|(?:ai|assistant|agent|caller|calling|your)_(?:model|llm))(?:_model)?
          (?:_(?:name|id|identity|version|provider|vendor|type))?
      | (?:assistant|agent|caller|calling|your)_(?:name|identity) | model_identity"""),
    ("the agent's system prompt", r"""
        (?:system|assistant|agent|your|developer)_(?:prompt|instructions|message)"""),
    ("the agent's tool list", r"""
        (?:available|all|agent|assistant|your|current|other)_(?:tools|functions|tool_names|tool_list)
      | tools?_list | list_of_(?:available_|all_)?tools | tool_names"""),
    ("the conversation", r"""
        (?:conversation|chat|message|dialog|dialogue)_(?:history|log|transcript)
      | (?:previous|prior|past|earlier)_(?:messages|conversation|turns) | context_window"""),
    ("other tools' outputs", r"""
        (?:previous|prior|last|other|earlier)_(?:tools?_)?(?:outputs?|results?|responses?)
      | (?:other_)?tools?_(?:outputs|results|responses)"""),
    flags=re.X,
)

# The tool drives a model itself, so model settings, prompts and message lists are its own business.
_MODEL_WRAPPER = re.compile(r"""
    \b(?:llms?|language\s+models?|chat\s*completions?|completions?|generate[sd]?|generating|generation|generative
      |inference|embeddings?|openai|anthropic|ollama|gpt[\w.-]*|claude|gemini|mistral|llama|hugging\s*face
      |summari[sz]e[sd]?|translate[sd]?|assistants?|agents?|sub-?agents?|chatbots?|prompts?)\b""", re.I | re.X)
# The parameter is a setting: it picks what to use.
_SETTING = re.compile(r"""
    \b(?:to\s+use|which\s+(?:model|llm|prompt|tools?)\s+to|select(?:s|ed)?|choose|chosen|pick(?:s|ed)?
      |use\s+for|used\s+for|override)\b""", re.I | re.X)

# Credential material a tool rarely needs: (what, pattern over the parameter's name and description).
_MATERIAL = re.compile(r"""
    (?:~|\$home)?/?\.ssh\b | \bid_(?:rsa|dsa|ecdsa|ed25519)\b | \.aws/credentials | \.netrc\b | \.npmrc\b
  | \bmcp\.json\b | \b(?:ssh|gpg|pgp|wallet)[\s_-]*(?:private[\s_-]*)?keys?\b | \bprivate[\s_-]*keys?\b
  | \b(?:seed|recovery)[\s_-]*phrases?\b | \bmnemonic\b | \b(?:session[\s_-]*)?cookies?\b | \bkeychain\b
  | \bbrowser[\s_-]*(?:passwords?|cookies)\b""", re.I | re.X)
_VENDORS = ("openai", "anthropic", "claude", "gemini", "google", "gcp", "aws", "azure", "github", "gitlab",
            "slack", "stripe", "huggingface", "hf", "twilio", "sendgrid", "discord", "telegram", "notion")
_VENDOR_CREDENTIAL = re.compile(
    rf"\b({'|'.join(_VENDORS)})[\s_-]*(?:api[\s_-]*)?(?:key|token|secret|credentials?|password|pat)s?\b", re.I)
_ARGS_SECTION = re.compile(r"^[ \t]*(?:args|arguments|parameters|params)[ \t]*:[ \t]*$", re.I | re.M)


@dataclass(frozen=True, slots=True)
class _Verdict:
    subject: str
    evidence: str  # why: "description" or "name"


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _own_text(definition: Mapping[str, Any]) -> str:
    """The tool's name and description without its Args: section (which describes the parameters)."""
    description = definition.get("description")
    text = description if isinstance(description, str) else ""
    section = _ARGS_SECTION.search(text)
    if section is not None:
        text = text[:section.start()]
    name = definition.get("name")
    title = definition.get("title")
    return " ".join(t for t in (name.replace("_", " ") if isinstance(name, str) else "",
                                title if isinstance(title, str) else "", text) if t)


def _judge(parameter: Parameter, own: str) -> _Verdict | None:
    text = " ".join(t for t in (parameter.description, parameter.title) if t)
    for subject, pattern in _CALLER_TEXT:
        if pattern.search(text):
            return _Verdict(subject, "description")
    snake = _snake(parameter.name)
    schema = parameter.schema
    setting = (any(k in schema for k in ("enum", "const", "default")) or _SETTING.search(text) is not None
               or _MODEL_WRAPPER.search(own) is not None)
    if not setting:
        for subject, pattern in _YOUR_TEXT:
            if pattern.search(text):
                return _Verdict(subject, "description")
        for subject, pattern in _CALLER_NAMES:
            if pattern.fullmatch(snake):
                return _Verdict(subject, "name")
    named = f"{parameter.name.replace('_', ' ')} {text}"
    material = _MATERIAL.search(named)
    if material is not None and not _MATERIAL.search(own):
        return _Verdict(f"credential material ({material.group().strip()})", "name and description")
    vendor = _VENDOR_CREDENTIAL.search(named)
    if vendor is not None and not re.search(rf"\b{re.escape(vendor.group(1))}\b", own, re.I):
        return _Verdict(f"a {vendor.group(1)} credential the tool does not otherwise use", "name and description")
    return None


def _suspicious_parameters(server: ServerSnapshot, kind: ItemKind, name: str,
                           definition: Mapping[str, Any]) -> Iterable[Finding]:
    if kind != "tool":
        return
    own = _own_text(definition)
    for parameter in parameters(definition):
        if not parameter.required:
            continue
        verdict = _judge(parameter, own)
        if verdict is None:
            continue
        shown = parameter.description or parameter.title
        yield Finding(
            SUSPICIOUS_PARAMETER.id, SUSPICIOUS_PARAMETER.severity,
            f"{kind} {visible(name, 60)!r}: required parameter {visible(parameter.name, 60)!r} asks for "
            f"{verdict.subject} (judged by its {verdict.evidence})",
            server.at(kind, name, parameter.path),
            visible(f"{parameter.name}: {shown}" if shown else parameter.name, 160))
