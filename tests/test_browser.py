"""The browser side, in real Chromium: `dottxt demo --web` and `dottxt-stream.js`.

Runs Debian's chromium (/usr/bin/chromium) through Playwright from PyPI; skipped
when either is missing. Screenshots of the finished demo page are saved under
$DOTTXT_TEST_ARTIFACTS (default: pytest's temp directory, `browser/`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from dottxt import DotTxt
from dottxt._demo import TRIAGE
from dottxt.testing import FakeGateway
from dottxt.web import JS_PATH, sse_events
from dottxt.web._demo_server import DemoServer

from .conftest import TEST_KEY

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for this file, the only one that drives it.

    Module-scoped, not session-scoped: Playwright's sync API runs an event loop on the
    main thread while it is alive, and later tests' `asyncio.run` would find it running.
    """
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    with DemoServer(op_delay=0.1) as server:
        yield server.start()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("DOTTXT_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.getbasetemp() / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == []


# Records, on every change to a field or the status, what the page shows at that moment.
WATCH_FIELDS = """() => {
  window.seen = [];
  const take = () => {
    const row = { status: document.querySelector("[data-status]").textContent };
    for (const el of document.querySelectorAll("[data-field]")) row[el.dataset.field] = el.textContent;
    window.seen.push(row);
  };
  new MutationObserver(take).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


# True once every finite animation (a card landing, the result rising) has finished.
SETTLED = (
    "document.getAnimations().every((a) => a.effect.getTiming().iterations === Infinity || a.playState !== 'running')"
)


def triage(page: Any, demo: DemoServer) -> list[dict[str, str]]:
    """Open the demo, send the built-in ticket, wait for `done`; what the page showed along the way."""
    page.goto(demo.url)
    page.evaluate(WATCH_FIELDS)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-status='done']")
    return page.evaluate("window.seen")  # type: ignore[no-any-return]


def test_the_ticket_fills_in_field_by_field_and_ends_done(page: Any, demo: DemoServer) -> None:
    seen = triage(page, demo)
    assert any(row["intent"] == "billing" and row["reply"] == "" for row in seen), "intent only with the reply"
    statuses = [row["status"] for row in seen]
    assert statuses.index("streaming") < statuses.index("done")
    assert page.text_content("[data-status]") == "done"
    for field in ("intent", "urgency", "reply"):
        assert page.text_content(f"[data-field='{field}']") == TRIAGE[field]
        assert page.text_content(f"[data-time-for='{field}']").endswith(" ms")
    assert json.loads(page.text_content("[data-result]")) == TRIAGE


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_reply_wraps_within_the_viewport(
    browser: Any, demo: DemoServer, artifacts: Path, viewport: dict[str, int]
) -> None:
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        triage(page, demo)
        box = page.evaluate(
            """() => {
              const reply = document.querySelector("[data-field='reply']");
              const rect = reply.getBoundingClientRect();
              return { right: rect.right, left: rect.left, height: rect.height,
                       line: parseFloat(getComputedStyle(reply).lineHeight),
                       scroll: reply.scrollWidth, client: reply.clientWidth,
                       page: document.documentElement.scrollWidth, width: innerWidth };
            }"""
        )
        assert box["left"] >= 0 and box["right"] <= box["width"]
        assert box["scroll"] <= box["client"] and box["page"] <= box["width"]
        assert box["height"] >= 2 * box["line"]  # wrapped onto several lines, not one running off the edge
        page.wait_for_function(SETTLED)
        shot = artifacts / f"demo-{viewport['width']}px.png"
        shot.write_bytes(page.screenshot(full_page=True))  # path= would leave an asyncio executor thread behind
        print(f"screenshot: {shot}")
    finally:
        context.close()


def test_leaving_the_page_closes_the_upstream_connection(page: Any) -> None:
    with DemoServer(op_delay=0.5) as slow:  # the reply takes several seconds: time enough to leave first
        slow.start()
        page.goto(slow.url)
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector(\"[data-field='intent']\").textContent !== ''")
        page.goto("about:blank")
        hang_up = slow.hangups.get(timeout=10)
        assert hang_up.upstream_closed
        assert 2 <= hang_up.frames_sent < 4  # the root and intent (maybe urgency), never the reply or done


# ------------------------------------------------------------------ dottxt-stream.js on its own


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def relay(gateway: FakeGateway) -> Iterator[str]:
    """A plain wsgiref app: `/` an empty page, `/dottxt-stream.js`, `/events` = sse_events of the next stream."""
    session = requests.Session()
    session.trust_env = False
    client = DotTxt(api_key=TEST_KEY, base_url=gateway.base_url, max_retries=0, session=session)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == "/events":
            start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
            stream = client.stream(model="dottxt/fake-model", response_format={"type": "object"}, input="keys")
            return (frame.encode() for frame in sse_events(stream))
        if path == "/dottxt-stream.js":
            start_response("200 OK", [("Content-Type", "text/javascript")])
            return [JS_PATH.read_bytes()]
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<!doctype html><title>relay</title>"]

    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="test-relay")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        client.close()
        session.close()


# Streams /events through streamFields; resolves with the live document, the result and every callback.
STREAM = """(patterns) => new Promise(async (resolve) => {
  const { streamFields } = await import("/dottxt-stream.js");
  const calls = [];
  const onField = {};
  for (const pattern of patterns) onField[pattern] = (value, field) => calls.push([pattern, field, value]);
  let ops = 0;
  const live = streamFields("/events", {
    onOp: () => { ops += 1; },
    onField,
    onDone: (result) => resolve({ document: live.document, result, calls, ops }),
    onError: (error) => resolve({ error }),
  });
})"""


def test_stream_fields_applies_escaped_keys_and_calls_patterns_in_wire_order(
    page: Any, relay: str, gateway: FakeGateway
) -> None:
    doc = {"a/b": 1, "m~n": {"x/y": "slash", "~": "tilde"}, "steps": [{"text": "one"}, {"text": "two"}]}
    gateway.enqueue(doc)
    page.goto(relay)
    got = page.evaluate(STREAM, ["steps/*/text", "a~1b", "m~0n/*", "steps/*"])
    assert "error" not in got
    assert got["document"] == doc and got["result"] == doc
    assert got["ops"] == 10
    assert got["calls"] == [
        ["a~1b", "a~1b", 1],
        ["m~0n/*", "m~0n/x~1y", "slash"],
        ["m~0n/*", "m~0n/~0", "tilde"],
        ["steps/*", "steps/0", {}],
        ["steps/*/text", "steps/0/text", "one"],
        ["steps/*", "steps/1", {}],
        ["steps/*/text", "steps/1/text", "two"],
    ]


def test_stream_fields_reports_an_error_frame(page: Any, relay: str, gateway: FakeGateway) -> None:
    gateway.enqueue({"intent": "billing", "reply": "never"})
    gateway.cut_next_after(2)
    page.goto(relay)
    got = page.evaluate(STREAM, ["intent"])
    assert got["error"]["type"] == "APIConnectionError"


APPLY = """async (ops) => {
  const { applyOp } = await import("/dottxt-stream.js");
  let doc;
  for (const op of ops) {
    try { [doc] = applyOp(doc, op); } catch (error) { return { error: error.name, doc }; }
  }
  return { doc };
}"""


def test_every_rfc_6902_op_with_rfc_6901_escapes(page: Any, relay: str) -> None:
    page.goto(relay)
    ops = [
        {"op": "add", "path": "", "value": {}},
        {"op": "add", "path": "/a~1b", "value": {"m~n": [1, 3]}},
        {"op": "add", "path": "/a~1b/m~0n/1", "value": 2},
        {"op": "add", "path": "/a~1b/m~0n/-", "value": 4},
        {"op": "replace", "path": "/a~1b/m~0n/0", "value": 0},
        {"op": "copy", "from": "/a~1b/m~0n", "path": "/copy"},
        {"op": "move", "from": "/copy/3", "path": "/last"},
        {"op": "remove", "path": "/copy/0"},
        {"op": "test", "path": "/last", "value": 4},
    ]
    got = page.evaluate(APPLY, ops)
    assert got == {"doc": {"a/b": {"m~n": [0, 2, 3, 4]}, "copy": [2, 3], "last": 4}}
    proto = page.evaluate(
        """async () => {
          const { applyOp } = await import("/dottxt-stream.js");
          const [doc] = applyOp({}, { op: "add", path: "/__proto__", value: { polluted: true } });
          return [Object.keys(doc), doc.polluted === undefined, ({}).polluted === undefined];
        }"""
    )
    assert proto == [["__proto__"], True, True]  # a JSON key, never the prototype
    bad = page.evaluate(APPLY, [{"op": "add", "path": "", "value": []}, {"op": "add", "path": "/5", "value": 1}])
    assert bad == {"error": "PatchError", "doc": []}
