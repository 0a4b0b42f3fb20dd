"""Relay a patch stream to the browser as Server-Sent Events, from a Flask app.

`GET /triage?message=...` answers with `text/event-stream`: one `data: <op>`
event per JSON Patch op, written and flushed the moment the op arrives from
.txt, so the page can show `intent` while `reply` is still being generated. A
final `event: done` carries the validated result; `event: failed` carries an
error message. `GET /` serves a tiny page that renders the fields as they land.

One DotTxt client is created per app and shared by every request thread. When
the browser goes away, the WSGI server closes the response, which closes our
generator, which closes the upstream .txt connection at once (no tokens
generated for nobody); the app logs a line when that happens.

What to watch for: `curl -N 'http://127.0.0.1:5000/triage?message=refund+me'`
prints `data:` lines one by one, not all at the end; pressing Ctrl-C in curl
makes the server log `browser left after N ops`.

    pip install flask
    DOTTXT_API_KEY=... python examples/flask_stream_relay.py      # or: flask --app examples/flask_stream_relay run
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Iterator
from typing import Literal

from flask import Flask, Response, request
from pydantic import BaseModel

from dottxt import DotTxt, DotTxtError, PatchStream

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"
DEFAULT_MESSAGE = "I was charged twice this month, please refund the duplicate."


class SupportTicket(BaseModel):
    intent: Literal["billing", "technical", "account", "feedback"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str


PAGE = """<!doctype html>
<meta charset="utf-8"><title>dottxt relay</title>
<form id="f"><input name="message" size="70" placeholder="Describe your problem"> <button>Send</button></form>
<pre id="out"></pre>
<script>
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const out = document.getElementById("out");
  out.textContent = "";
  const source = new EventSource("triage?message=" + encodeURIComponent(e.target.message.value));
  source.onmessage = (m) => {
    const op = JSON.parse(m.data);
    if (op.value === null || typeof op.value !== "object") out.textContent += op.path + " = " + op.value + "\\n";
  };
  source.addEventListener("done", () => source.close());
  source.addEventListener("failed", (m) => { out.textContent += "failed: " + m.data + "\\n"; source.close(); });
};
</script>
"""


def sse(data: object, event: str | None = None) -> str:
    """One Server-Sent Event; JSON never contains a raw newline, so one `data:` line suffices."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(client: DotTxt | None = None) -> Flask:
    """The Flask app; pass a client (e.g. in tests), or one is made from DOTTXT_* and closed at exit."""
    app = Flask(__name__)
    if client is None:
        client = DotTxt()
        atexit.register(client.close)
    shared: DotTxt = client

    def relay(stream: PatchStream) -> Iterator[str]:
        sent = 0
        try:
            with stream:  # closes the upstream connection however this generator ends
                for event in stream:
                    sent += 1
                    yield sse(event.op)
                ticket = stream.result()
            yield sse(ticket.model_dump(), event="done")
        except DotTxtError as exc:
            app.logger.warning("relay failed after %d ops: %s", sent, exc)
            yield sse({"message": str(exc)}, event="failed")
        except GeneratorExit:  # the WSGI server closed the response: the browser went away
            app.logger.info("browser left after %d ops; upstream stream closed", sent)
            raise

    @app.get("/")
    def index() -> str:
        return PAGE

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
