"""Rebuild the answer yourself from the raw JSON Patch ops, with AsyncDotTxt.

The asyncio twin of `stream_reconstruct.py`: each `event.op` is folded into a
document of your own with `dottxt.apply_add`, as you would to mirror the answer
into your own store.

What to watch for: one line per op in arrival order, then the rebuilt document
and two checks that both print True: it equals the stream's own `document`, and
it validates to the same `Order` that `await stream.result()` returns.

    DOTTXT_API_KEY=... python examples/stream_reconstruct_async.py
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from pydantic import BaseModel, Field

from dottxt import AsyncDotTxt, apply_add

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


async def main() -> None:
    mine: Any = None  # the first op replaces the root, so any starting value works
    async with AsyncDotTxt() as client:
        async with client.stream(
            model=MODEL,
            response_format=Order,
            input=f"Extract the order from this e-mail:\n{EMAIL}",
        ) as stream:
            async for event in stream:
                print(json.dumps(event.op, ensure_ascii=False), flush=True)
                mine = apply_add(mine, event.op["path"], event.op["value"])
            order = await stream.result()
            theirs = stream.document

    print()
    print("rebuilt:", json.dumps(mine, ensure_ascii=False))
    print("equals stream.document:", mine == theirs)
    print("validates to stream.result():", Order.model_validate(mine) == order)


if __name__ == "__main__":
    asyncio.run(main())
