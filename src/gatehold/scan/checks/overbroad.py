"""Over-broad tools: a capability far wider than any one task needs.

``overbroad-tool`` judges each tool from its name, description and input schema, and reports five
capabilities, each naming the parameter that carries it:

* **shell** (high): the tool runs shell or terminal commands and a parameter takes the command as free
  text (``command``, ``cmd``, ``script``..., or a parameter described as the command to run);
* **code** (high): the tool runs or evaluates program code (Python, JavaScript...) given as free text;
* **sql** (medium): a parameter takes raw SQL (named ``sql``, or described as an SQL query or statement,
  or a ``query``/``statement`` parameter of a tool that says it executes SQL queries);
* **filesystem** (medium): a tool that reads, writes, lists or deletes files takes a path with no
  restriction in its schema (no ``enum``, ``const`` or ``pattern``) and no stated root ("relative to
  the workspace", "within allowed directories"), or says it reaches any path, absolute paths or the
  entire file system;
* **fetch** (medium): a tool that fetches, requests or browses takes a URL with no ``enum``, ``const``
  or ``pattern`` and no stated host restriction. (``format: uri`` does not count: it says the value
  is a URL, not which hosts it may reach, and cloud metadata endpoints are URLs too.)

A free parameter alone is not enough: ``search(query)`` is not SQL, ``run_tests(pattern: enum)`` is
not a shell; both the tool's text and the parameter must point at the capability.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gatehold.scan.checks.fields import Parameter, parameters, visible
from gatehold.scan.model import CheckInfo, Finding, ScanInput, ServerSnapshot, Severity

__all__ = ["CHECKS", "OVERBROAD_TOOL", "Capability", "capabilities", "free_text", "run"]

OVERBROAD_TOOL = CheckInfo(
    id="overbroad-tool",
    title="Tool capability far wider than a task needs (shell, code, SQL, any path, any URL)",
    severity="medium",
    rationale=(
        "A hijacked agent can do whatever its tools allow, not what the user meant. A tool that runs any "
        "shell command or code is full control of the host; raw SQL reaches every table; an unrestricted "
        "path reaches SSH keys and credentials files; a fetch of any URL reaches cloud metadata endpoints "
        "and internal services and is a ready exfiltration channel. Least privilege means narrow tools."),
    remediation=(
        "Prefer narrow tools (a fixed set of commands, parameterised queries, one directory, an allow-list "
        "of hosts). Where the broad tool must stay, constrain its arguments in the gateway's policy "
        "(`path_within`, URL host allow-lists, `enum`, `regex`), require human approval for it, and run the "
        "server sandboxed."),
)

CHECKS: tuple[CheckInfo, ...] = (OVERBROAD_TOOL,)


@dataclass(frozen=True, slots=True)
class Capability:
    name: str  # shell | code | sql | filesystem | fetch
    parameter: Parameter
    reason: str  # one line: why


_I = re.I | re.X
_SHELL_TEXT = re.compile(r"""
    \b(?:shell|bash|zsh|powershell|terminal|console|system|os|cli|command[\s-]line)\s+commands?\b
  | \b(?:execute|executes|executing|run|runs|running|exec)
      \s+(?:an?\s+|any\s+|arbitrary\s+|the\s+(?:given|provided|specified)\s+)?
      (?:shell|terminal|bash|sh|zsh|powershell|cmd|system|os|command[\s-]line|cli)\b
  | \barbitrary\s+commands?\b | \bsubprocess\b | \bcommand\s+(?:execution|runner|executor)\b""", _I)
_SHELL_PARAM_NAME = re.compile(r"(?:command|cmd|commands|cmdline|command_line|shell_command|bash_command|shell|bash"
                               r"|script|shell_script|bash_script|argv)")
_SHELL_PARAM_TEXT = re.compile(r"""
    \b(?:shell|terminal|bash|sh|zsh|powershell|command[\s-]line|cli)\s+(?:commands?|scripts?)\b
  | \bcommands?\s+(?:line\s+)?(?:to\s+(?:run|execute)|that\s+will\s+be\s+(?:run|executed))\b""", _I)

_LANGUAGES = r"(?:python|javascript|js|node(?:\.js)?|typescript|ts|ruby|perl|php|lua|julia|deno|bun|r)"
_CODE_TEXT = re.compile(rf"""
    \b(?:execute|executes|executing|run|runs|running|evaluate|evaluates|evaluating|eval|exec|interpret|interprets)
      \s+(?:arbitrary\s+|any\s+|the\s+(?:given|provided|specified)\s+|some\s+)?(?:{_LANGUAGES}\s+)?
      (?:code|scripts?|snippets?|programs?)\b
  | \b{_LANGUAGES}\s+(?:code|snippets?|repl|interpreter|sandbox|expressions?)\b
  | \beval\s*\( | \bjupyter\b | \bnotebook\s+cells?\b | \brepl\b""", _I)
_CODE_PARAM_NAME = re.compile(rf"(?:code|source|source_code|snippet|program|script|{_LANGUAGES}(?:_code|_script)?)")
_CODE_PARAM_TEXT = re.compile(rf"""
    \b(?:{_LANGUAGES}\s+)?(?:code|script|snippet|program)\s+to\s+(?:run|execute|evaluate|eval)\b
  | \b{_LANGUAGES}\s+(?:code|script|snippet|source)\b""", _I)

_SQL_TEXT = re.compile(r"""\bsql\b | \bsqlite\b | \bpostgres(?:ql)?\b | \bmysql\b | \bmariadb\b | \bmssql\b
                           | \b(?:select|insert|update|delete)\s+(?:statements?|quer(?:y|ies))\b""", _I)
_SQL_EXECUTES = re.compile(r"""
    \b(?:execute|executes|executing|run|runs|running|perform|performs|issue|issues|submit|submits)\b[^.\n]{0,30}?
      \b(?:quer(?:y|ies)|statements?|commands?)\b
  | \bsql\s+(?:quer(?:y|ies)|statements?|commands?)\b""", _I)
_SQL_PARAM_NAME = re.compile(r"(?:sql|sql_\w+|\w+_sql|raw_query|query_sql)")
_SQL_PARAM_TEXT = re.compile(r"""
    \bsql\s+(?:quer(?:y|ies)|statements?|commands?|code|to\s+(?:run|execute))\b
  | \b(?:quer(?:y|ies)|statements?)\s+(?:in|written\s+in)\s+sql\b
  | \b(?:select|insert|update|delete)\s+(?:statements?|quer(?:y|ies))\b""", _I)
_SQL_GENERIC_NAME = re.compile(r"(?:query|statement|stmt|query_string|raw|expression)")
_READ_ONLY = re.compile(r"\bread[\s-]?only\b|\bonly\s+select\b|\bselect\s+(?:statements?|quer(?:y|ies))\s+only\b", re.I)

_FILE_TEXT = re.compile(r"""
    \b(?:read|reads|write|writes|delete|deletes|remove|removes|move|moves|copy|copies|rename|renames|list|lists|edit
      |edits|create|creates|append|appends|overwrite|overwrites|upload|uploads|download|downloads|open|opens|save
      |saves|search|searches|find|finds|glob|stat|chmod|cat|tail|head|get|gets|modify|modifies|change|changes)\b
    [^.\n]{0,40}?\b(?:files?|director(?:y|ies)|folders?|paths?|file\s*system|disk)\b
  | \b(?:file|directory|folder|path|fs)[\s_](?:read|write|delete|remove|move|copy|list|edit|create|search)\b""", _I)
_PATH_NAME = re.compile(r"(?:path|paths|\w+_path|path_\w+|filepath|file_path|pathname|dir|dirs|\w+_dir|directory"
                        r"|\w+_directory|directories|folder|\w+_folder|file|files|cwd|root|location)")
_PATH_TEXT = re.compile(r"\b(?:paths?|director(?:y|ies)|folders?)\b", re.I)
_PATH_ROOTED = re.compile(r"""
    \b(?:relative\s+to|within|inside|under|restricted\s+to|limited\s+to|confined\s+to|only\s+(?:works\s+)?(?:in|within
      |under|inside))\s+(?:the\s+|an?\s+|one\s+of\s+the\s+)?(?:allowed|permitted|configured|workspace|project|root|base
      |sandbox|working|current|approved|specified|designated|shared)\b
  | \ballowed\s+director(?:y|ies)\b | \bsandbox(?:ed)?\b""", _I)
_PATH_ANYWHERE = re.compile(r"""
    \bany\s+(?:file|path|director(?:y|ies)|folder|location)\b | \babsolute\s+paths?\b
  | \b(?:entire|whole|full)\s+(?:file\s*system|disk|drive|machine|computer)\b
  | \banywhere\s+on\s+(?:the\s+|your\s+)?(?:file\s*system|disk|machine|system|computer)\b""", _I)

_FETCH_TEXT = re.compile(r"""
    \b(?:fetch|fetches|fetching|request|requests|browse|browses|browsing|download|downloads|scrape|scrapes|crawl
      |crawls|visit|visits|open|opens|get|gets|retrieve|retrieves|load|loads|read|reads|call|calls|send|sends|post
      |posts|access|accesses|navigate|navigates|returns?)\b
    [^.\n]{0,40}?\b(?:urls?|web\s*pages?|websites?|web\s+sites?|sites?|links?|https?|endpoints?|apis?|the\s+web)\b
  | \bhttp\s+(?:requests?|client|get|post|calls?)\b | \bweb\s+(?:fetch|request|scrap\w*|brows\w*)\b""", _I)
_URL_NAME = re.compile(r"(?:url|urls|uri|uris|\w+_url|url_\w+|\w+_uri|link|links|href|endpoint|\w+_endpoint|website"
                       r"|webpage|web_page|page_url|address)")
_URL_TEXT = re.compile(r"\b(?:urls?|uris?|web\s+address(?:es)?|https?://)\b", re.I)
_URL_RESTRICTED = re.compile(r"""
    \b(?:only|restricted\s+to|limited\s+to|must\s+(?:be|start\s+with|point\s+to)|allowed|allow-?listed|whitelisted)\b
    [^.\n]{0,50}?(?:\bdomains?\b|\bhosts?\b|https?://[a-z0-9]|\b[a-z0-9-]+\.(?:com|org|io|net|dev|gov|edu)\b)""", _I)


def run(scan: ScanInput) -> Iterator[Finding]:
    for server in scan.servers:
        for tool in server.tools:
            yield from _findings(server, tool)


def _findings(server: ServerSnapshot, tool: Mapping[str, Any]) -> Iterator[Finding]:
    name = str(tool.get("name", ""))
    for capability in capabilities(tool):
        severity: Severity = "high" if capability.name in ("shell", "code") else "medium"
        parameter = capability.parameter
        yield Finding(OVERBROAD_TOOL.id, severity,
                      f"tool {visible(name, 60)!r}: {capability.name} capability through parameter "
                      f"{visible(parameter.name, 60)!r}: {capability.reason}",
                      server.at("tool", name, parameter.path),
                      visible(f"{parameter.name}: {parameter.description or parameter.title}", 160))


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _tool_text(tool: Mapping[str, Any]) -> str:
    parts = []
    for key in ("name", "title", "description"):
        value = tool.get(key)
        if isinstance(value, str):
            parts.append(_snake(value).replace("_", " ") if key == "name" else value)
    annotations = tool.get("annotations")
    if isinstance(annotations, Mapping) and isinstance(annotations.get("title"), str):
        parts.append(annotations["title"])
    return "\n".join(parts)


def free_text(schema: Mapping[str, Any], depth: int = 0) -> bool:
    """Whether a parameter's schema accepts arbitrary text: a string (or no type at all) with no ``enum``,
    ``const`` or ``pattern``; for ``anyOf``/``oneOf``, any branch that does; for an array, its items."""
    if depth > 8 or any(key in schema for key in ("enum", "const", "pattern")):
        return False
    branches = [b for key in ("anyOf", "oneOf") for b in _list(schema.get(key)) if isinstance(b, Mapping)]
    if branches:
        return any(free_text(b, depth + 1) for b in branches if b.get("type") != "null")
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else {k for k in _list(kind) if isinstance(k, str)}
    if not kinds:
        return "$ref" not in schema and "properties" not in schema and "items" not in schema
    if "string" in kinds:
        return True
    if "array" in kinds:
        items = schema.get("items")
        return isinstance(items, Mapping) and free_text(items, depth + 1)
    return False


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else []


def capabilities(tool: Mapping[str, Any]) -> list[Capability]:
    """The over-broad capabilities of one tool definition, at most one per capability."""
    text = _tool_text(tool)
    params = [p for p in parameters(tool) if free_text(p.schema)]
    found: list[Capability] = []

    def first(kind: str, reason: str, match: Any) -> None:
        for parameter in params:
            if match(parameter):
                found.append(Capability(kind, parameter, reason))
                return

    shell_text = _SHELL_TEXT.search(text)
    first("shell", "accepts any shell command as free text (no enum or pattern)",
          lambda p: _SHELL_PARAM_TEXT.search(p.description) is not None or (
              shell_text is not None and (_SHELL_PARAM_NAME.fullmatch(_snake(p.name)) is not None
                                          or re.search(r"\bcommands?\b", p.description, re.I) is not None)))
    code_text = _CODE_TEXT.search(text)
    first("code", "accepts program code to run or evaluate as free text",
          lambda p: _CODE_PARAM_TEXT.search(p.description) is not None or (
              code_text is not None and (_CODE_PARAM_NAME.fullmatch(_snake(p.name)) is not None
                                         or re.search(r"\b(?:code|script)\b", p.description, re.I) is not None)))
    sql_text = _SQL_TEXT.search(text) if _SQL_EXECUTES.search(text) else None
    read_only = _READ_ONLY.search(text) is not None
    first("sql", "accepts raw SQL" + (" (read-only by its description)" if read_only else ""),
          lambda p: _SQL_PARAM_NAME.fullmatch(_snake(p.name)) is not None
          or _SQL_PARAM_TEXT.search(p.description) is not None
          or (sql_text is not None and _SQL_GENERIC_NAME.fullmatch(_snake(p.name)) is not None))
    if _FILE_TEXT.search(text) or _PATH_ANYWHERE.search(text):
        anywhere = _PATH_ANYWHERE.search(text)
        rooted = _PATH_ROOTED.search(text)

        def path_param(p: Parameter) -> bool:
            if not (_PATH_NAME.fullmatch(_snake(p.name)) or _PATH_TEXT.search(p.description)):
                return False
            return anywhere is not None or _PATH_ANYWHERE.search(p.description) is not None or (
                rooted is None and _PATH_ROOTED.search(p.description) is None)

        reason = ("says it reaches any path" if anywhere else
                  "takes any file-system path (no enum, pattern or stated root)")
        first("filesystem", reason, path_param)
    if _FETCH_TEXT.search(text):
        restricted = _URL_RESTRICTED.search(text)
        first("fetch", "fetches any URL (no enum, pattern or host restriction)",
              lambda p: (_URL_NAME.fullmatch(_snake(p.name)) is not None or _URL_TEXT.search(p.description) is not None)
              and restricted is None and _URL_RESTRICTED.search(p.description) is None)
    return found
