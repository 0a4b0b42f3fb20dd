"""Relay a patch stream to the browser as Server-Sent Events, from a single-file Django app.

`GET /triage?message=...` returns a `StreamingHttpResponse` with content type
`text/event-stream`: one `data: <op>` event per JSON Patch op, handed to the
server the moment the op arrives, then `event: done` with the validated result
(or `event: failed` with an error message).

The whole project is this file: `settings.configure(...)` instead of a settings
module, the URL patterns below, and `execute_from_command_line` for `runserver`.
One DotTxt client is created on first use and shared by every request thread.
When the browser disconnects, Django closes the response, which closes the
generator, which closes the upstream .txt connection.

What to watch for: `curl -N 'http://127.0.0.1:8000/triage?message=refund+me'`
prints the `data:` lines one at a time as the fields are generated.

    pip install django
    DOTTXT_API_KEY=... python examples/django_stream_view.py runserver
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Literal

import django
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path
from pydantic import BaseModel

from dottxt import DotTxt, DotTxtError, PatchStream

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
log = logging.getLogger(__name__)


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


def sse(data: object, event: str | None = None) -> str:
    """One Server-Sent Event; JSON never contains a raw newline, so one `data:` line suffices."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


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
        log.warning("relay failed after %d ops: %s", sent, exc)
        yield sse({"message": str(exc)}, event="failed")
    except GeneratorExit:  # Django closed the response: the browser went away
        log.info("browser left after %d ops; upstream stream closed", sent)
        raise


def triage(request: HttpRequest) -> StreamingHttpResponse:
    message = request.GET.get("message", "").strip() or DEFAULT_MESSAGE
    stream = dottxt_client().stream(model=MODEL, response_format=SupportTicket, input=message)
    response = StreamingHttpResponse(relay(stream), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # ask nginx and friends not to buffer the events
    return response


urlpatterns = [path("triage", triage)]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
