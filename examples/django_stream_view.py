"""Relay a patch stream to the browser as Server-Sent Events, from a single-file Django app.

`GET /triage?message=...` returns a `StreamingHttpResponse` with content type
`text/event-stream` built by `dottxt.web.sse_events`: one `event: op` frame per
JSON Patch op, handed to the server the moment the op arrives, then `event: done`
with the validated result (or `event: error` with `{"message", "type"}`).
`GET /dottxt-stream.js` serves the package's ES module (`dottxt.web.JS_PATH`):
in a page, `streamFields("/triage?message=...", {onField: {...}})` fills in the
fields as they land (see examples/flask_stream_relay.py for such a page).

The whole project is this file: `settings.configure(...)` instead of a settings
module, the URL patterns below, and `execute_from_command_line` for `runserver`.
One DotTxt client is created on first use and shared by every request thread.
When the browser disconnects, Django closes the response, which closes the
frames, which closes the upstream .txt connection at once.

What to watch for: `curl -N 'http://127.0.0.1:8000/triage?message=refund+me'`
prints the frames one at a time as the fields are generated.

    pip install django
    DOTTXT_API_KEY=... python examples/django_stream_view.py runserver
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Literal

import django
from django.conf import settings
from django.http import FileResponse, HttpRequest, StreamingHttpResponse
from django.urls import path
from pydantic import BaseModel

from dottxt import DotTxt
from dottxt.web import JS_PATH, sse_events

if not settings.configured:
    settings.configure(
        DEBUG=os.environ.get("DJANGO_DEBUG", "1") == "1",
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret"),
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["localhost", "127.0.0.1", "[::1]", "testserver"],
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
    )
    django.setup()

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"
DEFAULT_MESSAGE = "I was charged twice this month, please refund the duplicate."


class SupportTicket(BaseModel):
    intent: Literal["billing", "technical", "account", "feedback"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str


_client: DotTxt | None = None
_client_lock = threading.Lock()


def dottxt_client() -> DotTxt:
    """The process-wide client, created once (from DOTTXT_*) and shared by all request threads."""
    global _client
    with _client_lock:
        if _client is None:
            _client = DotTxt()
        return _client


def triage(request: HttpRequest) -> StreamingHttpResponse:
    message = request.GET.get("message", "").strip() or DEFAULT_MESSAGE
    stream = dottxt_client().stream(model=MODEL, response_format=SupportTicket, input=message)
    # Closing the response (Django does, when the browser leaves) closes the frames and the upstream stream.
    response = StreamingHttpResponse(sse_events(stream), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # ask nginx and friends not to buffer the events
    return response


def stream_module(request: HttpRequest) -> FileResponse:
    return FileResponse(JS_PATH.open("rb"), content_type="text/javascript")


urlpatterns = [path("triage", triage), path("dottxt-stream.js", stream_module)]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
