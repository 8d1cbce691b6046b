"""IdentityHttp against real servers on 127.0.0.1: scheme rules, size cap, redirects, body checks."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gatehold.auth.outbound import IdentityHttp
from gatehold.errors import OutboundFailed
from tests.serving import serve_asgi

pytestmark = pytest.mark.anyio

CAP = 4096


@dataclass
class Site:
    base: str = ""
    other: str = ""  # another origin (a second server)
    hits: list[str] = field(default_factory=list)


def site_app(site: Site) -> Starlette:
    async def json_ok(request: Request) -> Response:
        site.hits.append(request.url.path)
        return JSONResponse({"ok": True, "method": request.method})

    async def echo_form(request: Request) -> Response:
        site.hits.append(request.url.path)
        form = await request.form()
        header = request.headers.get("authorization", "")
        basic = base64.b64decode(header[6:]).decode() if header.startswith("Basic ") else None
        return JSONResponse({"form": dict(form), "basic": basic, "method": request.method})

    async def big(request: Request) -> Response:
        return JSONResponse({"pad": "x" * (CAP * 2)})

    async def big_stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"pad": "'
            for _ in range(16):
                yield b"x" * 1024
            yield b'"}'
        return StreamingResponse(chunks(), media_type="application/json")

    async def text(request: Request) -> Response:
        return PlainTextResponse("definitely not json")

    async def array(request: Request) -> Response:
        return JSONResponse([1, 2, 3])

    async def empty(request: Request) -> Response:
        return Response(status_code=204)

    async def status_404(request: Request) -> Response:
        return JSONResponse({"error": "not_found"}, status_code=404)

    def redirect(target: str, status: int = 302) -> Route:
        async def endpoint(request: Request) -> Response:
            site.hits.append(request.url.path)
            location = target.format(base=site.base, other=site.other,
                                     port=site.base.rsplit(":", 1)[1])
            return RedirectResponse(location, status_code=status)
        return endpoint  # type: ignore[return-value]

    return Starlette(routes=[
        Route("/json", json_ok, methods=["GET", "POST"]),
        Route("/form", echo_form, methods=["POST", "GET"]),
        Route("/big", big),
        Route("/big-stream", big_stream),
        Route("/text", text),
        Route("/array", array),
        Route("/empty", empty),
        Route("/missing", status_404),
        Route("/same", redirect("/json")),
        Route("/same-absolute", redirect("{base}/json")),
        Route("/cross", redirect("{other}/json")),
        Route("/to-localhost", redirect("http://localhost:{port}/json")),
        Route("/to-https", redirect("https://127.0.0.1:{port}/json")),
        Route("/loop", redirect("/loop")),
        Route("/see-other", redirect("/json", 303), methods=["POST"]),
        Route("/keep-post", redirect("/form", 307), methods=["POST"]),
        Route("/no-location", lambda request: Response(status_code=302)),
    ])


@pytest.fixture
async def sites() -> AsyncIterator[tuple[Site, Site]]:
    first, second = Site(), Site()
    async with serve_asgi(site_app(first), lifespan="off", fast_exit=True) as base_a, \
            serve_asgi(site_app(second), lifespan="off", fast_exit=True) as base_b:
        first.base, first.other = base_a, base_b
        second.base, second.other = base_b, base_a
        yield first, second


@pytest.fixture
async def http() -> AsyncIterator[IdentityHttp]:
    client = IdentityHttp(timeout_seconds=5.0, max_response_bytes=CAP)
    yield client
    await client.aclose()


async def test_json_object_is_returned(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    status, body = await http.get_json(f"{sites[0].base}/json")
    assert (status, body) == (200, {"ok": True, "method": "GET"})


async def test_error_status_is_returned_with_its_body(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    assert await http.get_json(f"{sites[0].base}/missing") == (404, {"error": "not_found"})


@pytest.mark.parametrize("url", [
    "http://example.com/.well-known/jwks.json",
    "http://10.0.0.1/jwks",
    "http://192.168.1.10:8080/jwks",
])
async def test_plain_http_to_a_non_loopback_host_is_refused(http: IdentityHttp, url: str) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(url)
    assert info.value.code == "outbound.https_required"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http://user:pw@127.0.0.1/x", "jwks"])
async def test_other_schemes_and_credentials_in_urls_are_refused(http: IdentityHttp, url: str) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(url)
    assert info.value.code == "outbound.url"


async def test_response_over_the_size_cap_is_refused(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(f"{sites[0].base}/big")
    assert info.value.code == "outbound.too_large"


async def test_streamed_response_over_the_cap_is_refused(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(f"{sites[0].base}/big-stream")
    assert info.value.code == "outbound.too_large"


@pytest.mark.parametrize("path", ["/text", "/array", "/empty"])
async def test_a_body_that_is_not_a_json_object_is_refused(sites: tuple[Site, Site], http: IdentityHttp,
                                                           path: str) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(f"{sites[0].base}{path}")
    assert info.value.code == "outbound.body"


@pytest.mark.parametrize("path", ["/same", "/same-absolute"])
async def test_same_origin_redirect_is_followed(sites: tuple[Site, Site], http: IdentityHttp, path: str) -> None:
    status, body = await http.get_json(f"{sites[0].base}{path}")
    assert (status, body["ok"]) == (200, True)
    assert sites[0].hits == [path, "/json"]


async def test_cross_origin_redirect_is_refused(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    first, second = sites
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(f"{first.base}/cross")
    assert info.value.code == "outbound.redirect"
    assert second.hits == []  # the other origin never sees a request


@pytest.mark.parametrize("path", ["/to-localhost", "/to-https"])
async def test_redirect_to_another_host_name_or_scheme_is_refused(sites: tuple[Site, Site], http: IdentityHttp,
                                                                  path: str) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(f"{sites[0].base}{path}")
    assert info.value.code == "outbound.redirect"
    assert sites[0].hits == [path]


async def test_redirect_loops_stop(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    with pytest.raises(OutboundFailed) as info:
        await http.get_json(f"{sites[0].base}/loop")
    assert info.value.code == "outbound.redirect"
    assert len(sites[0].hits) == 4


async def test_redirect_without_location_is_refused(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    with pytest.raises(OutboundFailed):
        await http.get_json(f"{sites[0].base}/no-location")


async def test_post_form_with_basic_auth(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    status, body = await http.post_form(f"{sites[0].base}/form", {"token": "abc", "hint": "x"},
                                        auth=("client", "s3cret"))
    assert status == 200
    assert body == {"form": {"token": "abc", "hint": "x"}, "basic": "client:s3cret", "method": "POST"}


async def test_303_after_post_becomes_get(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    status, body = await http.post_form(f"{sites[0].base}/see-other", {"a": "1"})
    assert (status, body["method"]) == (200, "GET")


async def test_307_keeps_post_and_form(sites: tuple[Site, Site], http: IdentityHttp) -> None:
    status, body = await http.post_form(f"{sites[0].base}/keep-post", {"a": "1"})
    assert (status, body["method"], body["form"]) == (200, "POST", {"a": "1"})


async def test_unreachable_server_fails() -> None:
    async with serve_asgi(Starlette(), lifespan="off", fast_exit=True) as base:
        dead = base
    client = IdentityHttp(timeout_seconds=2.0)
    try:
        with pytest.raises(OutboundFailed) as info:
            await client.get_json(f"{dead}/json")
        assert info.value.code == "outbound.failed"
    finally:
        await client.aclose()
