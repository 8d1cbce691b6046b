"""The approval page: where a human operator sees exactly what a call would do and approves or denies it.

Served under ``/approvals`` by the gateway, with its own sign-in (operator keys with the ``approve``
power; agent keys never open it) and a server-side session held in memory (a restart signs everyone
out). Defences: the session cookie is HttpOnly, SameSite=Strict and scoped to ``/approvals``; every
state-changing POST carries the session's synchronizer token, and every POST with a foreign
``Origin`` (or a cross-site ``Sec-Fetch-Site``) is refused; every response forbids framing and
inline script through its headers; every value on a page is HTML-escaped, and the script builds
its nodes with ``textContent``. Decisions go through ``Approvals.decide``, which enforces the rules
(no self-approval, pending and unexpired only) and audits every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from urllib.parse import parse_qs, quote, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gatehold.approval.operators import OperatorAuthenticator
from gatehold.approval.service import Approvals
from gatehold.approval.store import Approval
from gatehold.call import Caller, new_correlation_id
from gatehold.errors import ApprovalRejected, AuthenticationFailed, NotGranted

log = logging.getLogger("gatehold.approval.page")

BASE = "/approvals"
COOKIE = "gatehold_approver"
IDLE_SECONDS = 30 * 60.0
ABSOLUTE_SECONDS = 8 * 3600.0
MAX_SESSIONS = 1_000
LOGIN_FAILURES = 10  # failed sign-ins per client address per LOGIN_WINDOW, then 429
LOGIN_WINDOW = 60.0
MAX_CLIENTS = 10_000
MAX_FORM_BYTES = 16 * 1024
MAX_KEY_CHARS = 512
MAX_STREAMS = 100
PING_SECONDS = 15.0
STREAM_SECONDS = 120.0  # then the browser reconnects by itself; keeps shutdowns from waiting on streams
RECENT = 50

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DETAIL_PATH = re.compile(r"^/approvals/[A-Za-z0-9_-]{1,64}$")
_REFUSALS = {
    "approval.self": "Refused: you asked for this call and cannot approve it. Another approver must decide.",
    "approval.unknown": "There is no such request.",
}

Handler = Callable[[Request], Awaitable[Response]]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _iso(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _detail_path(approval_id: str) -> str:
    return f"{BASE}/{quote(approval_id, safe='')}"


@dataclass(slots=True)
class _Session:
    sid: str
    caller: Caller
    csrf: str
    started: float
    seen: float


class _Sessions:
    """Signed-in operators by the SHA-256 of their session id; idle and absolute expiry."""

    def __init__(self) -> None:
        self._items: dict[bytes, _Session] = {}

    def open(self, caller: Caller) -> _Session:
        now = time.monotonic()
        for key, session in list(self._items.items()):
            if self._expired(session, now):
                del self._items[key]
        while len(self._items) >= MAX_SESSIONS:
            del self._items[next(iter(self._items))]  # the oldest sign-in makes room
        sid = secrets.token_urlsafe(32)
        session = _Session(sid, caller, secrets.token_urlsafe(32), now, now)
        self._items[hashlib.sha256(sid.encode()).digest()] = session
        return session

    def get(self, sid: str | None, *, touch: bool) -> _Session | None:
        """The live session ``sid`` names; ``touch`` (a human's request) resets the idle timer."""
        if not sid or len(sid) > 128:
            return None
        key = hashlib.sha256(sid.encode()).digest()
        session = self._items.get(key)
        now = time.monotonic()
        if session is None or self._expired(session, now):
            self._items.pop(key, None)
            return None
        if touch:
            session.seen = now
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self._items.pop(hashlib.sha256(sid.encode()).digest(), None)

    @staticmethod
    def _expired(session: _Session, now: float) -> bool:
        return now - session.seen > IDLE_SECONDS or now - session.started > ABSOLUTE_SECONDS


class _Failures:
    """Failed sign-ins per client address within the last LOGIN_WINDOW seconds."""

    def __init__(self) -> None:
        self._by_client: dict[str, list[float]] = {}

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= LOGIN_FAILURES

    def add(self, client: str) -> None:
        if client not in self._by_client and len(self._by_client) >= MAX_CLIENTS:
            for other in list(self._by_client):
                self._recent(other)  # drops addresses with no recent failure
            while len(self._by_client) >= MAX_CLIENTS:
                del self._by_client[next(iter(self._by_client))]
        self._by_client.setdefault(client, []).append(time.monotonic())

    def _recent(self, client: str) -> list[float]:
        horizon = time.monotonic() - LOGIN_WINDOW
        recent = [t for t in self._by_client.get(client, ()) if t > horizon]
        if recent:
            self._by_client[client] = recent
        else:
            self._by_client.pop(client, None)
        return recent


def _document(title: str, body: str, *, status: int = 200, page: str = "", session: _Session | None = None,
              data_id: str = "") -> HTMLResponse:
    signed_in = "" if session is None else (
        f'<form method="post" action="{BASE}/logout" class="logout"><span>Signed in as '
        f'<strong>{_e(session.caller.principal)}</strong></span>'
        f'<input type="hidden" name="csrf" value="{_e(session.csrf)}"><button type="submit">Sign out</button></form>')
    return HTMLResponse(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)} - Gatehold approvals</title>'
        f'<link rel="stylesheet" href="{BASE}/static/approvals.css">'
        f'<script src="{BASE}/static/approvals.js" defer></script></head>'
        f'<body data-page="{_e(page)}" data-id="{_e(data_id)}"><header><a href="{BASE}" class="brand">'
        f'Gatehold approvals</a>{signed_in}</header><main>{body}</main></body></html>\n', status_code=status)


def _message(title: str, text: str, *, status: int, session: _Session | None = None,
             back: str = BASE) -> HTMLResponse:
    return _document(title, f'<h1>{_e(title)}</h1><p class="notice">{_e(text)}</p>'
                            f'<p><a href="{_e(back)}">Back</a></p>', status=status, session=session)


def _item(approval: Approval) -> str:
    return (f'<li data-id="{_e(approval.id)}"><a href="{_e(_detail_path(approval.id))}">'
            f'<span class="tool">{_e(approval.server)} / {_e(approval.tool)}</span> '
            f'<span class="who">asked by {_e(approval.principal)}</span> '
            f'<span class="state state-{_e(approval.state)}">{_e(approval.state)}</span> '
            f'<time>{_e(_iso(approval.created_at))}</time>'
            f'<span class="why">{_e(approval.reason)}</span></a></li>')


def _items(approvals: list[Approval]) -> str:
    return "".join(_item(a) for a in approvals) or '<li class="empty">None</li>'


async def _form(request: Request) -> dict[str, str] | Response:
    """The urlencoded form of a POST, each field once; anything else is a 4xx response."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != \
            "application/x-www-form-urlencoded":
        return _message("Unsupported form", "Send the form from the page.", status=415)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _message("Form too large", "The form is too large.", status=413)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except ValueError:  # not UTF-8, or too many fields
        return _message("Bad form", "The form could not be read.", status=400)
    if any(len(values) != 1 for values in fields.values()):
        return _message("Bad form", "A field was sent twice.", status=400)
    return {name: values[0] for name, values in fields.items()}


class _Page:
    def __init__(self, approvals: Approvals, operators: OperatorAuthenticator, *, secure_cookies: bool):
        self.approvals = approvals
        self.operators = operators
        self.secure = secure_cookies
        self.sessions = _Sessions()
        self.failures = _Failures()
        self.streams = 0

    # -- checks ----------------------------------------------------------------------------------

    def _session(self, request: Request, *, touch: bool = True) -> _Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), touch=touch)

    def _foreign(self, request: Request) -> bool:
        """True when a POST comes from another site: a cross-site fetch, or an Origin not our own."""
        site = request.headers.get("sec-fetch-site")
        if site not in (None, "same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        if origin is None:
            return False
        if origin == "null":
            # Our own ``Referrer-Policy: no-referrer`` makes browsers send ``Origin: null`` on the page's
            # form posts; accept that only when the browser also vouches the post is same-origin.
            return site != "same-origin"
        parts = urlsplit(origin)
        schemes = {request.url.scheme, "https"} if self.secure else {request.url.scheme}
        host = request.headers.get("host", "").lower()
        return not (parts.scheme in schemes and host and parts.netloc.lower() == host and not parts.path)

    def _audit_login(self, request: Request, caller: Caller | None, *, allowed: bool, reason: str,
                     code: str | None = None) -> None:
        client = request.client.host if request.client else "-"
        self.approvals.auditor.request(correlation_id=new_correlation_id(), caller=caller, method="approval/login",
                                       decision="allow" if allowed else "deny", reason=reason, code=code,
                                       detail={"client": client, "channel": "page"})

    # -- sign-in ---------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if self._session(request) is not None:
            return RedirectResponse(BASE, status_code=303)
        return self._login_page(request.query_params.get("next", ""))

    def _login_page(self, target: str, *, error: str = "", status: int = 200) -> HTMLResponse:
        target = target if _DETAIL_PATH.match(target) else ""  # only our own detail pages: no open redirect
        notice = f'<p class="notice">{_e(error)}</p>' if error else ""
        return _document("Sign in", (
            f'<h1>Sign in to decide approval requests</h1>{notice}'
            f'<form method="post" action="{BASE}/login" class="login">'
            f'<input type="hidden" name="next" value="{_e(target)}">'
            '<label for="key">Operator key</label>'
            '<input id="key" name="key" type="password" autocomplete="current-password" required>'
            '<button type="submit">Sign in</button></form>'), status=status, page="login")

    async def login(self, request: Request) -> Response:
        if self._foreign(request):
            return _message("Refused", "Cross-site request refused.", status=403)
        client = request.client.host if request.client else "-"
        if self.failures.blocked(client):
            self._audit_login(request, None, allowed=False, reason="too many failed sign-ins",
                              code="approval.login_limited")
            response = _message("Too many attempts", "Too many failed sign-ins; wait a minute.", status=429,
                                back=f"{BASE}/login")
            response.headers["Retry-After"] = str(int(LOGIN_WINDOW))
            return response
        form = await _form(request)
        if isinstance(form, Response):
            return form
        key = form.get("key", "").strip()
        try:
            if not key or len(key) > MAX_KEY_CHARS:
                raise AuthenticationFailed("no usable key given", code="auth.missing")
            # scrypt takes tens of milliseconds: off the event loop
            caller = await asyncio.to_thread(self.operators.authenticate, f"Bearer {key}", needs="approve")
        except (AuthenticationFailed, NotGranted) as exc:
            self.failures.add(client)
            self._audit_login(request, None, allowed=False, reason=exc.detail, code=exc.code)
            return self._login_page(form.get("next", ""), error="That key is not an approver's key.", status=401)
        # audited before the session exists: if the audit log refuses, nobody is signed in (fail closed)
        self._audit_login(request, caller, allowed=True, reason=f"{caller.principal} signed in to the approval page")
        self.sessions.close(request.cookies.get(COOKIE))
        session = self.sessions.open(caller)
        target = form.get("next", "")
        signed_in = RedirectResponse(target if _DETAIL_PATH.match(target) else BASE, status_code=303)
        signed_in.set_cookie(COOKIE, session.sid, path=BASE, secure=self.secure, httponly=True, samesite="strict")
        return signed_in

    async def logout(self, request: Request) -> Response:
        if self._foreign(request):
            return _message("Refused", "Cross-site request refused.", status=403)
        session = self._session(request)
        if session is not None:
            form = await _form(request)
            if isinstance(form, Response):
                return form
            if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
                return _message("Refused", "The form was stale or forged; reload the page.", status=403)
            self.sessions.close(session.sid)
        response = RedirectResponse(f"{BASE}/login", status_code=303)
        response.delete_cookie(COOKIE, path=BASE, secure=self.secure, httponly=True, samesite="strict")
        return response

    # -- pages -----------------------------------------------------------------------------------

    def _listed(self) -> tuple[list[Approval], list[Approval]]:
        everything = self.approvals.store.list()
        decided = sorted((a for a in everything if a.state != "pending"),
                         key=lambda a: a.decided_at or a.created_at, reverse=True)
        return [a for a in everything if a.state == "pending"], decided[:RECENT]

    async def index(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return RedirectResponse(f"{BASE}/login", status_code=303)
        pending, recent = self._listed()
        return _document("Requests", (
            '<h1>Approval requests</h1><p id="live" class="muted">Updates appear here as they happen.</p>'
            f'<section><h2>Pending</h2><ul id="pending" class="requests">{_items(pending)}</ul></section>'
            f'<section><h2>Recently decided</h2><ul id="recent" class="requests">{_items(recent)}</ul>'
            '</section>'), page="list", session=session)

    async def detail(self, request: Request) -> Response:
        approval_id = request.path_params["id"]
        session = self._session(request)
        if session is None:
            target = _detail_path(approval_id)
            return RedirectResponse(f"{BASE}/login?next={quote(target, safe='')}" if _DETAIL_PATH.match(target)
                                    else f"{BASE}/login", status_code=303)
        a = self.approvals.store.get(approval_id)
        if a is None:
            return _message("Not found", "There is no such request.", status=404, session=session)
        rows = [("Server", a.server), ("Tool", a.tool), ("Asked by", a.principal),
                ("Why it needs approval", a.reason), ("Rule", a.rule_id), ("Policy version", a.policy_version),
                ("Arguments digest (SHA-256)", a.digest), ("Correlation id", a.correlation_id),
                ("Created", _iso(a.created_at)), ("Expires", _iso(a.expires_at))]
        if a.approver is not None:
            rows += [("Decided by", a.approver), ("Decided at", _iso(a.decided_at)), ("Comment", a.comment)]
        arguments = orjson.dumps(a.arguments, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        decided_by = f" by {a.approver}" if a.approver else ""
        form = "" if a.state != "pending" else (
            f'<form method="post" action="{_e(_detail_path(a.id))}/decide" class="decide" id="decide">'
            f'<input type="hidden" name="csrf" value="{_e(session.csrf)}">'
            '<label for="comment">Comment (kept in the audit log)</label>'
            '<textarea id="comment" name="comment" maxlength="2000" rows="3"></textarea><div class="buttons">'
            '<button type="submit" name="decision" value="approve" class="approve">Approve</button>'
            '<button type="submit" name="decision" value="deny" class="deny">Deny</button></div></form>')
        return _document(f"Request {a.id}", (
            f'<h1>{_e(a.server)} / {_e(a.tool)}</h1>'
            f'<p class="plain">If approved, <strong>{_e(a.principal)}</strong> may call the tool '
            f'<strong>{_e(a.tool)}</strong> on the server <strong>{_e(a.server)}</strong> once, with exactly '
            'the arguments below.</p>'
            f'<p id="state" class="state state-{_e(a.state)}">State: {_e(a.state)}{_e(decided_by)}</p>'
            '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + '</dl>'
            '<h2>Arguments</h2><p class="muted">Every argument the call will carry; secret values show as '
            f'redacted.</p><pre id="arguments">{_e(arguments)}</pre>{form}'),
            page="detail", session=session, data_id=a.id)

    async def decide(self, request: Request) -> Response:
        if self._foreign(request):
            return _message("Refused", "Cross-site request refused.", status=403)
        session = self._session(request)
        if session is None:
            return _message("Sign in first", "Sign in to decide requests.", status=403, back=f"{BASE}/login")
        form = await _form(request)
        if isinstance(form, Response):
            return form
        if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            return _message("Refused", "The form was stale or forged; reload the page.", status=403,
                            session=session)
        approval_id = request.path_params["id"]
        back = _detail_path(approval_id)
        if self.approvals.store.get(approval_id) is None:
            return _message("Not found", "There is no such request.", status=404, session=session)
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            return _message("Bad form", "Choose approve or deny.", status=400, session=session, back=back)
        try:
            self.approvals.decide(approval_id, approve=decision == "approve", operator=session.caller,
                                  comment=form.get("comment", "")[:2000], channel="page")
        except ApprovalRejected as exc:  # already audited by decide
            state = exc.code.removeprefix("approval.")
            text = _REFUSALS.get(exc.code, f"This request is {state} and can no longer be decided.")
            return _message("Not decided", text, status=409, session=session, back=back)
        return RedirectResponse(back, status_code=303)

    # -- data for the script ---------------------------------------------------------------------

    async def listing(self, request: Request) -> Response:
        if self._session(request, touch=False) is None:
            return Response(b'{"error":"sign in"}', status_code=401, media_type="application/json")
        pending, recent = self._listed()
        return Response(orjson.dumps({"pending": [a.public() for a in pending],
                                      "recent": [a.public() for a in recent]}), media_type="application/json")

    async def events(self, request: Request) -> Response:
        session = self._session(request, touch=False)
        if session is None:
            return Response(b"sign in\n", status_code=401, media_type="text/plain")
        if self.streams >= MAX_STREAMS:
            return Response(b"too many live views\n", status_code=503, media_type="text/plain")
        return StreamingResponse(self._stream(session), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    async def _stream(self, session: _Session) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

        def offer(message: bytes) -> None:
            # when full, drop: the browser re-reads the whole list on any event, the queued ones suffice
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

        def listener(event: str, approval: Approval) -> None:
            data = orjson.dumps({"event": event, "id": approval.id, "state": approval.state,
                                 "approver": approval.approver})
            loop.call_soon_threadsafe(offer, b"event: change\ndata: " + data + b"\n\n")

        store = self.approvals.store
        store.listeners.append(listener)
        self.streams += 1
        try:  # the finally runs when the client goes away too: the server cancels this generator
            yield b"retry: 3000\n: connected\n\n"
            deadline = time.monotonic() + STREAM_SECONDS
            while (left := deadline - time.monotonic()) > 0 and \
                    self.sessions.get(session.sid, touch=False) is session:
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=min(PING_SECONDS, left))
                except TimeoutError:
                    yield b": ping\n\n"
        finally:
            self.streams -= 1
            if listener in store.listeners:
                store.listeners.remove(listener)


def _static(name: str, media_type: str) -> Handler:
    body = files("gatehold.approval").joinpath("static", name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type)
    return serve


async def _not_found(request: Request) -> Response:
    return _message("Not found", "There is no such page.", status=404)


def _guarded(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except Exception:
            # FAIL CLOSED: any fault ends in a bare 500. Decisions are made only inside
            # ``Approvals.decide``, the last step of a POST, so a fault before it decides nothing.
            log.exception("approval page failed on %s %s", request.method, request.url.path)
            response = _message("Error", "Something went wrong; reload the request to see its state.", status=500)
        response.headers.update(HEADERS)
        return response
    return endpoint


def approval_routes(approvals: Approvals, operators: OperatorAuthenticator, *,
                    secure_cookies: bool) -> list[BaseRoute]:
    """The approval page's routes, all under ``/approvals``, for the gateway's Starlette app."""
    page = _Page(approvals, operators, secure_cookies=secure_cookies)
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    table: list[tuple[str, Handler, list[str]]] = [
        (f"{BASE}/login", page.login_form, ["GET"]),
        (f"{BASE}/login", page.login, ["POST"]),
        (f"{BASE}/logout", page.logout, ["POST"]),
        (f"{BASE}/events", page.events, ["GET"]),
        (f"{BASE}/list.json", page.listing, ["GET"]),
        (f"{BASE}/static/approvals.js", _static("approvals.js", "text/javascript; charset=utf-8"), ["GET"]),
        (f"{BASE}/static/approvals.css", _static("approvals.css", "text/css; charset=utf-8"), ["GET"]),
        (BASE, page.index, ["GET"]),
        (BASE + "/{id}", page.detail, ["GET"]),
        (BASE + "/{id}/decide", page.decide, ["POST"]),
        (BASE, _not_found, every),  # unknown paths and methods still get the headers
        (BASE + "/{rest:path}", _not_found, every),
    ]
    return [Route(path, _guarded(handler), methods=methods) for path, handler, methods in table]
