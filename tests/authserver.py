"""A real OAuth authorization server for tests, served by uvicorn on 127.0.0.1:<free port>.

It publishes metadata (RFC 8414 and OpenID discovery) and a JWKS of keys generated in-test,
signs JWTs, introspects (RFC 7662), registers clients (RFC 7591) and issues tokens for the
client_credentials, token-exchange (RFC 8693), authorization_code (PKCE S256) and refresh_token
grants. Tests drive it directly (``issue``, ``opaque``, ``add_key``) and inspect what it was asked.

    async with running_auth_server() as auth:
        auth.add_key("ES256")
        token = auth.issue(scope="tools.read")
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.serving import serve_asgi

KeyKind = Literal["RS256", "ES256", "EdDSA", "PS256"]
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DEFAULT_AUDIENCE = "https://mcp.example.test/mcp"
_DEFAULT: Any = object()
WAIT = 20.0


@dataclass
class FakeClock:
    """A settable clock for code that takes ``clock=``; ``advance`` moves it forward."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    @property
    def public(self) -> Any:
        return self.private.public_key()


@dataclass
class Client:
    client_id: str
    secret: str | None
    redirect_uris: tuple[str, ...] = ()
    auth_method: str = "client_secret_basic"


@dataclass
class _CodeGrant:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str | None
    resource: list[str]
    sub: str


def new_private_key(kind: str) -> Any:
    if kind in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def public_jwk(private: Any, kind: str, kid: str) -> dict[str, Any]:
    encoder = {"RS256": RSAAlgorithm, "PS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[kind]
    jwk: dict[str, Any] = encoder.to_jwk(private.public_key(), as_dict=True)  # type: ignore[attr-defined]
    return {**jwk, "kid": kid, "use": "sig", "alg": kind}


def _error(status: int, error: str, description: str = "") -> JSONResponse:
    body = {"error": error, **({"error_description": description} if description else {})}
    return JSONResponse(body, status_code=status)


def _same(expected: str | None, given: str) -> bool:
    return expected is not None and secrets.compare_digest(expected.encode(), given.encode())


def _one_or_list(values: list[str]) -> str | list[str] | None:
    return None if not values else values[0] if len(values) == 1 else values


@dataclass
class AuthServer:
    """In-test authorization server; ``issuer`` and endpoint URLs are set once it listens."""

    path: str = ""
    base: str = ""
    default_audience: str = DEFAULT_AUDIENCE
    user: str = "alice"  # who approves at /authorize
    token_lifetime: int = 300
    scopes_supported: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    requests: list[tuple[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    token_auth: list[tuple[str | None, str]] = field(default_factory=list)  # (client_id, method) per token call
    registrations: list[dict[str, Any]] = field(default_factory=list)
    introspection_requests: list[dict[str, Any]] = field(default_factory=list)  # form (no secret) + "_auth"
    fail: dict[str, int] = field(default_factory=dict)  # endpoint name -> forced HTTP status
    metadata_overrides: dict[str, Any] = field(default_factory=dict)
    extra_jwks: list[Any] = field(default_factory=list)  # raw entries published after the keys
    clients: dict[str, Client] = field(default_factory=dict)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    _opaque: dict[str, dict[str, Any]] = field(default_factory=dict)
    _codes: dict[str, _CodeGrant] = field(default_factory=dict)
    _refresh: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.base + self.path

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def registration_endpoint(self) -> str:
        return f"{self.issuer}/register"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/authorize"

    # -- driving it from a test ------------------------------------------------------------

    def add_key(self, kind: KeyKind, kid: str | None = None) -> str:
        """Generate a key, publish its public JWK; later ``issue`` calls sign with it by default."""
        kid = kid or f"{kind.lower()}-{secrets.token_hex(4)}"
        private = new_private_key(kind)
        self.keys[kid] = SigningKey(kid, kind, private, public_jwk(private, kind, kid))
        return kid

    def remove_key(self, kid: str) -> None:
        del self.keys[kid]

    def register_client(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = Client(client_id, secret)

    def signing_key(self, kid: str | None = None) -> SigningKey:
        if kid is not None:
            return self.keys[kid]
        if not self.keys:
            self.add_key("RS256")
        return list(self.keys.values())[-1]

    def claims(self, *, sub: str = "alice", aud: str | list[str] | None = _DEFAULT, scope: str | None = None,
               lifetime: float = 300, extra: dict[str, Any] | None = None, omit: Iterable[str] = ()) -> dict[str, Any]:
        """The claims ``issue`` would sign."""
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": sub, "iat": now, "exp": int(now + lifetime),
                                  "jti": secrets.token_hex(8)}
        audience = self.default_audience if aud is _DEFAULT else aud
        if audience is not None:
            claims["aud"] = audience
        if scope is not None:
            claims["scope"] = scope
        claims.update(extra or {})
        for name in omit:
            claims.pop(name, None)
        return claims

    def issue(self, *, sub: str = "alice", aud: str | list[str] | None = _DEFAULT, scope: str | None = None,
              lifetime: float = 300, kid: str | None = None, alg: str | None = None,
              extra: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
              omit: Iterable[str] = ()) -> str:
        """A JWT signed with a published key (the newest unless ``kid``); ``headers={"kid": None}`` drops kid."""
        claims = self.claims(sub=sub, aud=aud, scope=scope, lifetime=lifetime, extra=extra, omit=omit)
        return self.sign(claims, kid=kid, alg=alg, headers=headers)

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, alg: str | None = None,
             headers: dict[str, Any] | None = None) -> str:
        key = self.signing_key(kid)
        merged = {"kid": key.kid, **(headers or {})}
        if merged.get("kid") is None:
            merged.pop("kid")
        return jwt.encode(claims, key.private, algorithm=alg or key.alg, headers=merged)

    def opaque(self, claims: dict[str, Any]) -> str:
        """An opaque token that introspects as ``{"active": true, **claims}``."""
        token = f"opq_{secrets.token_urlsafe(24)}"
        self._opaque[token] = {"active": True, **claims}
        return token

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": self.token_endpoint,
            "introspection_endpoint": self.introspection_endpoint,
            "registration_endpoint": self.registration_endpoint,
            "authorization_endpoint": self.authorization_endpoint,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(self.scopes_supported),
            **self.metadata_overrides,
        }

    def verify_own(self, token: str) -> dict[str, Any] | None:
        """Claims of a live token this server issued (JWT or opaque), else None."""
        if token in self._opaque:
            return dict(self._opaque[token])
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys[str(kid)]
            claims: dict[str, Any] = jwt.decode(token, key.public, algorithms=[key.alg],
                                                options={"verify_aud": False, "verify_exp": False,
                                                         "verify_iat": False, "verify_nbf": False})
        except (jwt.PyJWTError, KeyError, TypeError):
            return None
        exp = claims.get("exp")
        if claims.get("iss") != self.issuer or not isinstance(exp, int | float) or exp <= self.clock():
            return None
        return claims

    # -- HTTP endpoints --------------------------------------------------------------------

    def app(self) -> Any:
        p = self.path
        routes = [
            Route(f"/.well-known/oauth-authorization-server{p}", self._metadata_endpoint("metadata")),
            Route(f"/.well-known/openid-configuration{p}", self._metadata_endpoint("oidc")),
            Route(f"{p}/jwks", self._jwks),
            Route(f"{p}/token", self._token, methods=["POST"]),
            Route(f"{p}/introspect", self._introspect, methods=["POST"]),
            Route(f"{p}/register", self._register, methods=["POST"]),
            Route(f"{p}/authorize", self._authorize),
        ]
        if p:
            routes.append(Route(f"{p}/.well-known/openid-configuration", self._metadata_endpoint("oidc")))
        inner = Starlette(routes=routes)

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.requests.append((scope["method"], scope["path"]))
            await inner(scope, receive, send)

        return recording

    def reset(self) -> None:
        """Forget requests, forced failures, overrides, tokens and clients; keys stay (for shared servers)."""
        for log in (self.requests, self.token_requests, self.token_auth, self.registrations, self.extra_jwks,
                    self.introspection_requests):
            log.clear()
        for table in (self.fail, self.metadata_overrides, self.clients, self._opaque, self._codes, self._refresh):
            table.clear()
        self.default_audience, self.user, self.clock = DEFAULT_AUDIENCE, "alice", time.time
        self.token_lifetime, self.scopes_supported = 300, []

    def count(self, path_suffix: str, method: str = "GET") -> int:
        """How many requests hit a path ending in ``path_suffix`` (e.g. "/jwks")."""
        return sum(1 for m, p in self.requests if m == method and p.endswith(path_suffix))

    def _forced(self, name: str) -> Response | None:
        status = self.fail.get(name)
        return _error(status, "server_error", f"{name} forced to fail") if status else None

    def _metadata_endpoint(self, name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return self._forced(name) or JSONResponse(self.metadata())

        return endpoint

    async def _jwks(self, request: Request) -> Response:
        keys = [key.jwk for key in self.keys.values()] + list(self.extra_jwks)
        return self._forced("jwks") or JSONResponse({"keys": keys})

    def _client(self, request: Request, form: FormData) -> tuple[Client | None, str]:
        """The authenticated client and how it authenticated; (None, reason) when it did not."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                raw = base64.b64decode(header[6:]).decode()
            except ValueError:
                return None, "malformed basic"
            basic_id, _, basic_secret = raw.partition(":")
            client = self.clients.get(unquote(basic_id))
            ok = client is not None and _same(client.secret, unquote(basic_secret))
            return (client, "client_secret_basic") if ok else (None, "bad basic credentials")
        form_id, form_secret = form.get("client_id"), form.get("client_secret")
        client = self.clients.get(str(form_id)) if form_id else None
        if client is None:
            return None, "unknown client"
        if form_secret is not None:
            ok = _same(client.secret, str(form_secret))
            return (client, "client_secret_post") if ok else (None, "bad client_secret")
        return (client, "none") if client.auth_method == "none" else (None, "client authentication required")

    async def _introspect(self, request: Request) -> Response:
        form = await request.form()
        client, method = self._client(request, form)
        record = {name: str(value) for name, value in form.items() if name != "client_secret"}
        self.introspection_requests.append({**record, "_auth": method})
        forced = self._forced("introspect")
        if forced:
            return forced
        if client is None or client.secret is None:
            return _error(401, "invalid_client")
        claims = self.verify_own(str(form.get("token", "")))
        if claims is None:
            return JSONResponse({"active": False})
        return JSONResponse({"active": True, **claims})

    async def _register(self, request: Request) -> Response:
        forced = self._forced("register")
        if forced:
            return forced
        body = await request.json()
        if not isinstance(body, dict):
            return _error(400, "invalid_client_metadata")
        method = body.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in ("client_secret_basic", "client_secret_post", "none"):
            return _error(400, "invalid_client_metadata", f"unsupported auth method {method}")
        client = Client(f"dyn-{secrets.token_hex(6)}", None if method == "none" else secrets.token_urlsafe(24),
                        tuple(body.get("redirect_uris") or ()), method)
        self.clients[client.client_id] = client
        self.registrations.append(body)
        answer = {**body, "client_id": client.client_id, "client_id_issued_at": int(self.clock()),
                  "token_endpoint_auth_method": method,
                  "grant_types": body.get("grant_types") or ["authorization_code", "refresh_token"],
                  "response_types": body.get("response_types") or ["code"]}
        if client.secret is not None:
            answer.update(client_secret=client.secret, client_secret_expires_at=0)
        return JSONResponse(answer, status_code=201)

    async def _authorize(self, request: Request) -> Response:
        forced = self._forced("authorize")
        if forced:
            return forced
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None or (client.redirect_uris and redirect_uri not in client.redirect_uris) or not redirect_uri:
            return _error(400, "invalid_request", "unknown client or redirect_uri")
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get(
                "code_challenge"):
            return _error(400, "invalid_request", "response_type code with PKCE S256 required")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _CodeGrant(client.client_id, redirect_uri, q["code_challenge"], q.get("scope"),
                                       q.getlist("resource"), self.user)
        params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=302)

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        record: dict[str, Any] = {}
        for name in form:
            values = [str(v) for v in form.getlist(name)]
            if name != "client_secret":
                record[name] = values[0] if len(values) == 1 else values
        self.token_requests.append(record)
        client, method = self._client(request, form)
        self.token_auth.append((client.client_id if client else None, method))
        forced = self._forced("token")
        if forced:
            return forced
        if client is None:
            return _error(401, "invalid_client", method)
        grant = form.get("grant_type")
        handler = {"client_credentials": self._client_credentials, TOKEN_EXCHANGE: self._token_exchange,
                   "authorization_code": self._authorization_code, "refresh_token": self._refresh_grant}.get(
            str(grant))
        if handler is None:
            return _error(400, "unsupported_grant_type")
        return handler(client, form)

    def _audience(self, form: FormData, fallback: list[str] | None = None) -> str | list[str] | None:
        values = [str(v) for v in form.getlist("resource")] or [str(v) for v in form.getlist("audience")]
        return _one_or_list(values or (fallback or [])) or self.default_audience

    def _answer(self, claims: dict[str, Any], **extra: Any) -> JSONResponse:
        body = {"access_token": self.sign(claims), "token_type": "Bearer", "expires_in": self.token_lifetime,
                **extra}
        if claims.get("scope"):
            body["scope"] = claims["scope"]
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _client_credentials(self, client: Client, form: FormData) -> Response:
        if client.secret is None:
            return _error(401, "invalid_client", "confidential client required")
        scope = form.get("scope")
        claims = self.claims(sub=client.client_id, aud=self._audience(form), lifetime=self.token_lifetime,
                             scope=str(scope) if scope else None, extra={"client_id": client.client_id})
        return self._answer(claims)

    def _token_exchange(self, client: Client, form: FormData) -> Response:
        if client.secret is None:
            return _error(401, "invalid_client", "confidential client required")
        subject = self.verify_own(str(form.get("subject_token", "")))
        if form.get("subject_token_type") not in (ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt"):
            return _error(400, "invalid_request", "unsupported subject_token_type")
        if subject is None or subject.get("active") is False or not isinstance(subject.get("sub"), str):
            return _error(400, "invalid_grant", "subject_token is not a live token of this server")
        scope = form.get("scope") or subject.get("scope")
        claims = self.claims(sub=subject["sub"], aud=self._audience(form), lifetime=self.token_lifetime,
                             scope=str(scope) if scope else None,
                             extra={"client_id": client.client_id, "act": {"sub": client.client_id}})
        return self._answer(claims, issued_token_type=ACCESS_TOKEN_TYPE)

    def _authorization_code(self, client: Client, form: FormData) -> Response:
        grant = self._codes.pop(str(form.get("code", "")), None)
        if grant is None or grant.client_id != client.client_id:
            return _error(400, "invalid_grant", "unknown code or another client's")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _error(400, "invalid_grant", "redirect_uri differs from the authorization request")
        verifier = str(form.get("code_verifier", ""))
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if not verifier or not secrets.compare_digest(computed, grant.challenge):
            return _error(400, "invalid_grant", "PKCE code_verifier does not match")
        return self._user_tokens(client, grant.sub, grant.scope, self._audience(form, grant.resource))

    def _refresh_grant(self, client: Client, form: FormData) -> Response:
        held = self._refresh.pop(str(form.get("refresh_token", "")), None)
        if held is None or held["client_id"] != client.client_id:
            return _error(400, "invalid_grant", "unknown refresh token")
        return self._user_tokens(client, held["sub"], held["scope"], self._audience(form, held["resource"]))

    def _user_tokens(self, client: Client, sub: str, scope: str | None, aud: str | list[str] | None) -> Response:
        claims = self.claims(sub=sub, aud=aud, scope=scope, lifetime=self.token_lifetime,
                             extra={"client_id": client.client_id})
        refresh = secrets.token_urlsafe(24)
        resource = [aud] if isinstance(aud, str) else list(aud or [])
        self._refresh[refresh] = {"client_id": client.client_id, "sub": sub, "scope": scope, "resource": resource}
        return self._answer(claims, refresh_token=refresh)


@asynccontextmanager
async def running_auth_server(*, path: str = "") -> AsyncIterator[AuthServer]:
    """An AuthServer listening on loopback; ``path`` (e.g. "/tenant") makes an issuer with a path."""
    auth = AuthServer(path=path.rstrip("/"))
    async with serve_asgi(auth.app(), lifespan="off", fast_exit=True) as base:
        auth.base = base
        yield auth
