"""Fuzzed stream bodies over loopback (issue 19, SPEC sections 3, 5 and 10): arbitrary bytes, arbitrary chunkings.

Whatever a server sends, a stream ends in a result or in a documented `DotTxtError` carrying
`.document`: never a raw exception, never a hang (bounded timeouts), no thread or socket left.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dottxt import DotTxt, DotTxtError
from tests.rawserver import RawConnection, RawServer

EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@dataclass
class Reply:
    """What the server sends for one request: the body in pieces, then the end of the body or a dropped connection."""

    pieces: list[bytes]
    complete: bool
    content_type: str


class Replay:
    """A RawServer handler sending the Reply the running example set, as one chunk per piece."""

    def __init__(self) -> None:
        self.reply = Reply([], True, "application/x-ndjson")
        self.lock = threading.Lock()

    def __call__(self, conn: RawConnection) -> None:
        with self.lock:
            reply = self.reply
        conn.head(headers={"Content-Type": reply.content_type})
        for piece in reply.pieces:
            conn.chunk(piece)
        if reply.complete:
            conn.end()


def sockets_to(port: int) -> int:
    """How many of this process's open sockets are connected to `port` on loopback (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if int(row[2].split(":")[1], 16) == port and row[9] in inodes)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[RawServer, Replay]]:
    replay = Replay()
    with RawServer(replay) as server:
        yield server, replay


# Pieces of near-valid NDJSON: valid ops, ops of wrong types, not-JSON, NaN, depth, reports, framing.
NDJSON_LINES = [
    b'{"op":"add","path":"","value":{}}',
    b'{"op":"add","path":"/a","value":1}',
    b'{"op":"add","path":"/b","value":[]}',
    b'{"op":"add","path":"/b/-","value":"x"}',
    b'{"op":"add","path":"/b/0","value":{"c":null}}',
    b'{"op":"replace","path":"/a","value":2}',
    b'{"op":"remove","path":"/a"}',
    b'{"op":"move","from":"/a","path":"/z"}',
    b'{"op":"copy","from":"/b","path":"/y"}',
    b'{"op":"test","path":"/a","value":1}',
    b'{"op":["add"],"path":"/a","value":1}',
    b'{"op":"add","path":5,"value":1}',
    b'{"op":"add","path":"/q"}',
    b'{"op":"add","path":"/a/~2/","value":1}',
    b'{"op":"add","path":"/a","value":NaN}',
    b'{"op":"add","path":"/d","value":' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"error":{"message":"overloaded"}}',
    b'{"error":5}',
    b'{"note":"ignored"}',
    b"[1,2]",
    b'"\\ud83d"',
    b'{"op":"add","path":"/s","value":"\\ud83d"}',
    b"\xff\xfe\x00",
    b"",
    b"   \r",
]

SSE_CONTENT = [
    '{"a":',
    "1",
    ',"b":[',
    '"x"',
    "]",
    "}",
    "[",
    "{",
    '"\\ud83d"',
    "tru",
    "e",
    "nul",
    "-",
    "1e5",
    "```json\n",
    " ",
]


def sse_event(draw: st.DrawFn) -> bytes:
    """One SSE event: a chat chunk with content, a chunk of the wrong shape, a report, framing, or noise."""
    kind = draw(st.sampled_from(["content", "content", "content", "shape", "error", "done", "comment", "noise"]))
    if kind == "content":
        chunk: Any = {"choices": [{"index": 0, "delta": {"content": draw(st.sampled_from(SSE_CONTENT))}}]}
        if draw(st.booleans()):
            chunk["choices"][0]["finish_reason"] = draw(st.sampled_from(["stop", "length", None, 5]))
    elif kind == "shape":
        chunk = draw(
            st.sampled_from(
                [{"choices": 5}, {"choices": []}, {"choices": [5]}, {"choices": [{"delta": {"content": 5}}]}, [1], 7]
            )
        )
    elif kind == "error":
        chunk = {"error": draw(st.sampled_from([{"message": "boom"}, "boom", 5]))}
    elif kind == "done":
        return b"data: [DONE]\n\n"
    elif kind == "comment":
        return b": keep-alive\n\n"
    else:
        return draw(st.binary(max_size=40))
    return b"data: " + json.dumps(chunk).encode() + draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n"]))


@st.composite
def ndjson_body(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.one_of(st.sampled_from(NDJSON_LINES), st.binary(max_size=40)), max_size=12))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b""]), min_size=len(parts), max_size=len(parts)))
    return b"".join(part + end for part, end in zip(parts, ends, strict=True))


@st.composite
def sse_body(draw: st.DrawFn) -> bytes:
    return b"".join(sse_event(draw) for _ in range(draw(st.integers(0, 14))))


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """`body` cut at arbitrary points (no empty pieces: an empty chunk would end the body)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=8)))) if len(body) > 1 else []
    bounds = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def fuzz_client(server: RawServer, patch_source: str) -> DotTxt:
    """A client of the fuzz server: no retries, short timeouts (a hang would fail, not stall, the test)."""
    return DotTxt(api_key="k", base_url=server.base_url, max_retries=0, timeout=(2, 2), patch_source=patch_source)


def check_stream(client: DotTxt) -> None:
    """Read one stream to its end: a result, or a documented error carrying `.document`."""
    with client.stream(model="m", response_format={"type": "object"}, input="x") as stream:
        try:
            for event in stream:
                assert event.op is not None
            stream.result()
        except DotTxtError as exc:
            assert hasattr(exc, "document")
            if exc.document is not None:
                json.dumps(exc.document, allow_nan=False)  # a plain JSON document


@pytest.mark.parametrize("patch_source", ["gateway", "sse"])
@EXAMPLES
@given(data=st.data())
def test_fuzzed_bodies_end_in_documented_errors(
    fuzz_server: tuple[RawServer, Replay], patch_source: str, data: st.DataObject
) -> None:
    server, replay = fuzz_server
    body = data.draw(sse_body() if patch_source == "sse" else ndjson_body())
    content_type = "text/event-stream" if patch_source == "sse" else "application/x-ndjson"
    replay.reply = Reply(data.draw(chunked(body)), data.draw(st.booleans()), content_type)
    with fuzz_client(server, patch_source) as c:
        check_stream(c)


@pytest.mark.parametrize("patch_source", ["gateway", "sse"])
def test_fuzzing_leaves_no_socket_open(fuzz_server: tuple[RawServer, Replay], patch_source: str) -> None:
    server, replay = fuzz_server
    content_type = "text/event-stream" if patch_source == "sse" else "application/x-ndjson"
    for complete in (True, False):
        body = b'data: {"choices":[{"delta":{"content":"{\\"a\\":"}}]}\n\n{"op":"add"'
        replay.reply = Reply([body], complete, content_type)
        with fuzz_client(server, patch_source) as c:
            check_stream(c)
            assert sockets_to(server.port) <= 1
    assert sockets_to(server.port) == 0
