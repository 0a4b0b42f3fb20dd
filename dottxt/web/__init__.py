"""dottxt.web: patch streams in the browser.

`sse_events(stream)` turns a PatchStream into Server-Sent Events frames for
any WSGI app; `JS_PATH` is the dependency-free ES module (`streamFields`) that
reads them in the page. Serve the file yourself: no CDN, no build step.
"""

from __future__ import annotations

from pathlib import Path

from ._frames import sse_events

__all__ = ["sse_events", "JS_PATH"]

#: The ES module exporting `streamFields(url, {onOp, onField, onDone, onError})`, shipped in the package.
JS_PATH: Path = Path(__file__).with_name("dottxt-stream.js")
