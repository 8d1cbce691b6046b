// Gatehold approval page: live updates over Server-Sent Events.
// Every value from the server goes into the page through textContent (or as a new text node),
// never through innerHTML, so request data can never become markup or script.
"use strict";

(function () {
  const BASE = "/approvals";
  const body = document.body;
  const page = body ? body.dataset.page : "";
  if (page !== "list" && page !== "detail") {
    return;
  }

  function node(tag, className, text) {
    const element = document.createElement(tag);
    if (className) {
      element.className = className;
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  function iso(seconds) {
    return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function status(text) {
    const line = document.getElementById("live");
    if (line) {
      line.textContent = text;
    }
  }

  function signedOut() {
    status("Your session has ended. ");
    const line = document.getElementById("live");
    if (line) {
      const link = node("a", "", "Sign in again");
      link.href = BASE + "/login";
      line.append(link);
    }
  }

  function item(approval) {
    const li = node("li");
    li.dataset.id = approval.id;
    const link = node("a");
    link.href = BASE + "/" + encodeURIComponent(approval.id);
    link.append(
      node("span", "tool", approval.server + " / " + approval.tool), " ",
      node("span", "who", "asked by " + approval.principal), " ",
      node("span", "state state-" + approval.state, approval.state), " ",
      node("time", "", iso(approval.created_at)),
      node("span", "why", approval.reason),
    );
    li.append(link);
    return li;
  }

  function fill(id, approvals) {
    const list = document.getElementById(id);
    if (!list) {
      return;
    }
    const items = approvals.length ? approvals.map(item) : [node("li", "empty", "None")];
    list.replaceChildren(...items);
  }

  async function refresh() {
    if (page !== "list") {
      return;
    }
    let response;
    try {
      response = await fetch(BASE + "/list.json", {
        credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
      });
    } catch (error) {
      status("Cannot reach the gateway; retrying.");
      return;
    }
    if (response.status === 401) {
      signedOut();
      return;
    }
    if (!response.ok) {
      status("Could not refresh the list (" + response.status + ").");
      return;
    }
    const data = await response.json();
    fill("pending", data.pending);
    fill("recent", data.recent);
    status("Live: updated " + iso(Date.now() / 1000) + ".");
  }

  function changed(data) {
    if (page === "list") {
      refresh();
      return;
    }
    if (data.id !== body.dataset.id) {
      return;
    }
    const line = document.getElementById("state");
    if (line) {
      line.textContent = "State: " + data.state + (data.approver ? " by " + data.approver : "");
      line.className = "state state-" + data.state;
    }
    const form = document.getElementById("decide");
    if (form && data.state !== "pending") {
      form.hidden = true;
    }
  }

  const source = new EventSource(BASE + "/events");
  source.addEventListener("open", refresh);
  source.addEventListener("change", function (event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    changed(data);
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      refresh();
      if (page === "detail") {
        const line = document.getElementById("state");
        if (line) {
          line.append(node("span", "muted", " (live updates stopped; reload the page)"));
        }
      }
    } else {
      status("Reconnecting...");
    }
  });
  if (page === "list") {
    window.setInterval(refresh, 30000); // expiry happens without an event
  }
})();
