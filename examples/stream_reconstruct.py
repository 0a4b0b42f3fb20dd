"""Rebuild the answer yourself from the raw JSON Patch ops, and check it matches.

Every `PatchEvent` keeps the operation exactly as the server sent it in
`event.op`, e.g. `{"op": "add", "path": "/items/0/sku", "value": "A-113"}`.
Folding those ops into a document of your own with `dottxt.apply_add` is how
you would mirror an answer into your own store (a database row, a UI state, a
websocket client) without depending on the SDK's snapshots.

What to watch for: one line per op, in arrival order (containers appear as `{}`
or `[]` before their contents); then the document you rebuilt, and two checks
that both print True: it equals the stream's own `document`, and it validates to
the same `Order` that `stream.result()` returns.

    DOTTXT_API_KEY=... python examples/stream_reconstruct.py
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel, Field

from dottxt import DotTxt, apply_add

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class Customer(BaseModel):
    name: str
    email: str


class Item(BaseModel):
    sku: str
    quantity: int = Field(ge=1, le=20)


class Order(BaseModel):
    customer: Customer
    items: list[Item] = Field(min_length=1, max_length=4)
    gift_note: str | None


EMAIL = (
    "Hi, this is Ana Souza (ana@example.org). Please send two packs of the A-113 filters and one "
    "B-7 pump. It's a present, so add a note saying 'Happy housewarming!'"
)


def main() -> None:
    mine: Any = None  # the first op replaces the root, so any starting value works
    with DotTxt() as client:
        with client.stream(
            model=MODEL,
            response_format=Order,
            input=f"Extract the order from this e-mail:\n{EMAIL}",
        ) as stream:
            for event in stream:
                print(json.dumps(event.op, ensure_ascii=False), flush=True)
                mine = apply_add(mine, event.op["path"], event.op["value"])
            order = stream.result()
            theirs = stream.document

    print()
    print("rebuilt:", json.dumps(mine, ensure_ascii=False))
    print("equals stream.document:", mine == theirs)
    print("validates to stream.result():", Order.model_validate(mine) == order)


if __name__ == "__main__":
    main()
