"""Server-Sent Events framing: body lines -> the `data` of each event (the `[DONE]` marker included)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["iter_sse_data", "DONE"]

#: The data OpenAI-compatible servers send as their last event.
DONE = "[DONE]"


def iter_sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """Yield each event's data: its `data:` lines joined by `\\n`; comments and other fields skipped."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
