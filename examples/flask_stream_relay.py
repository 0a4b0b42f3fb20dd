"""Relay a patch stream to the browser as Server-Sent Events, from a Flask app, with `dottxt.web`.

`GET /triage?message=...` answers with `text/event-stream` built by
`dottxt.web.sse_events`: one `event: op` frame per JSON Patch op, written the
moment the op arrives from .txt, then `event: done` with the validated result
(or `event: error` with `{"message", "type"}`). `GET /` is a page that uses the
package's own ES module (`dottxt.web.JS_PATH`, served here at
`/dottxt-stream.js`: no CDN, no build step) to fill in one card per field.

One DotTxt client is created per app and shared by every request thread. When
the browser goes away, the WSGI server closes the response, which closes the
frames, which closes the upstream .txt connection at once (no tokens generated
for nobody); the app logs a line when that happens.

What to watch for: `curl -N 'http://127.0.0.1:5000/triage?message=refund+me'`
prints the frames one by one, not all at the end; pressing Ctrl-C in curl makes
the server log `browser left after N ops`. Try it offline with
`dottxt fake-gateway` and DOTTXT_BASE_URL, or see `dottxt demo --web`.

    pip install flask
    DOTTXT_API_KEY=... python examples/flask_stream_relay.py      # or: flask --app examples/flask_stream_relay run
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterator
from typing import Literal

from flask import Flask, Response, request, send_file
from pydantic import BaseModel

from dottxt import DotTxt, PatchStream
from dottxt.web import JS_PATH, sse_events

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"
DEFAULT_MESSAGE = "I was charged twice this month, please refund the duplicate."


class SupportTicket(BaseModel):
    intent: Literal["billing", "technical", "account", "feedback"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str


PAGE = """<!doctype html>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dottxt relay</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  textarea { width: 100%; font: inherit; box-sizing: border-box; }
  .card { border: 1px solid #ddd; border-radius: 10px; padding: .6rem .9rem; margin: .6rem 0; }
  .card h2 { font-size: .75rem; text-transform: uppercase; color: #666; margin: 0; }
  .card p { margin: .2rem 0 0; overflow-wrap: anywhere; min-height: 1.5em; }
</style>
<form id="f"><textarea name="message" rows="3" placeholder="Describe your problem"></textarea>
<button>Triage</button> <span data-status></span></form>
<div class="card"><h2>intent</h2><p data-field="intent"></p></div>
<div class="card"><h2>urgency</h2><p data-field="urgency"></p></div>
<div class="card"><h2>reply</h2><p data-field="reply"></p></div>
<script type="module">
import { streamFields } from "./dottxt-stream.js";
const status = document.querySelector("[data-status]");
let live = null;
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  if (live) live.close();
  for (const el of document.querySelectorAll("[data-field]")) el.textContent = "";
  status.textContent = "streaming";
  const show = (value, field) => { document.querySelector(`[data-field="${field}"]`).textContent = value; };
  live = streamFields("triage?message=" + encodeURIComponent(e.target.message.value), {
    onField: { intent: show, urgency: show, reply: show },
    onDone: () => { status.textContent = "done"; },
    onError: ({ message }) => { status.textContent = "error"; console.error(message); },
  });
};
</script>
"""


def create_app(client: DotTxt | None = None) -> Flask:
    """The Flask app; pass a client (e.g. in tests), or one is made from DOTTXT_* and closed at exit."""
    app = Flask(__name__)
    app.logger.setLevel(logging.INFO)  # Flask logs only warnings by default: the hang-up line is info
    if client is None:
        client = DotTxt()
        atexit.register(client.close)
    shared: DotTxt = client

    def relay(stream: PatchStream) -> Iterator[str]:
        """The stream's SSE frames, logging when the browser leaves before the end."""
        frames = sse_events(stream)  # `exclude=["internal_notes"]` would keep such a field server-side
        ops, finished = 0, False
        try:
            for frame in frames:
                ops += frame.startswith("event: op")
                finished = not frame.startswith("event: op")
                yield frame
        finally:
            if not finished:
                app.logger.info("browser left after %d ops; upstream stream closed", ops)
            frames.close()  # the browser left (or the stream ended): the upstream connection is closed now

    @app.get("/")
    def index() -> str:
        return PAGE

    @app.get("/dottxt-stream.js")
    def stream_module() -> Response:
        return send_file(JS_PATH, mimetype="text/javascript")

    @app.get("/triage")
    def triage() -> Response:
        message = request.args.get("message", "").strip() or DEFAULT_MESSAGE
        stream = shared.stream(model=MODEL, response_format=SupportTicket, input=message)
        return Response(
            relay(stream),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy buffering
        )

    return app


if __name__ == "__main__":
    create_app().run(threaded=True)
