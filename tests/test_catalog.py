from gatehold.catalog import Catalog, UpstreamListing


def tool(name: str) -> dict[str, object]:
    return {"name": name, "inputSchema": {"type": "object"}}


def test_namespacing_and_collisions_are_reported_never_overridden() -> None:
    catalog = Catalog({"a": "a", "b": "", "c": ""}, ".")
    catalog.update("a", UpstreamListing(tools=[tool("read")]))
    catalog.update("b", UpstreamListing(tools=[tool("read"), tool("send")]))
    assert sorted(catalog.tools) == ["a.read", "read", "send"]
    collisions = catalog.update("c", UpstreamListing(tools=[tool("send")]))
    assert collisions == ["tool 'send' exposed by b, c"]
    assert "send" not in catalog.tools  # served by neither
    assert catalog.tools["a.read"].definition["name"] == "a.read"
    assert catalog.tools["a.read"].target.name == "read"
    catalog.remove("c")
    assert "send" in catalog.tools


def test_resources_route_by_uri_and_unique_template() -> None:
    catalog = Catalog({"a": "a", "b": "b"}, ".")
    catalog.update("a", UpstreamListing(resources=[{"uri": "file:///x"}],
                                        templates=[{"uriTemplate": "notes://{id}"}]))
    catalog.update("b", UpstreamListing(templates=[{"uriTemplate": "mail://{box}/{id}"},
                                                   {"uriTemplate": "both://{x}"}]))
    catalog.update("a", UpstreamListing(resources=[{"uri": "file:///x"}],
                                        templates=[{"uriTemplate": "notes://{id}"}, {"uriTemplate": "both://{x}"}]))
    entry = catalog.resource_for("file:///x")
    assert entry is not None
    assert entry.target.upstream == "a"
    routed = catalog.resource_for("mail://in/7")
    assert routed is not None
    assert (routed.target.upstream, routed.target.exposed) == ("b", "b.mail://in/7")
    assert catalog.resource_for("both://1") is None  # two upstreams could serve it: route nowhere
    assert catalog.resource_for("unknown://x") is None
