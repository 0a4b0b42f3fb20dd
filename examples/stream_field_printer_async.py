"""Print every field of a structured answer the moment it arrives, with AsyncDotTxt.

The asyncio twin of `stream_field_printer.py`: `client.stream(...)` is used in
`async for`, and the event loop stays free while the stream is read (a worker
thread reads the HTTP response and hands each event to the loop).

What to watch for: the same output as the sync version: the leaf fields one by
one in schema order (`destination`, `days/0/title`, ..., `budget/total`), then
a summary of the validated result.

    DOTTXT_API_KEY=... python examples/stream_field_printer_async.py
"""

from __future__ import annotations

import asyncio
import json
import os

from pydantic import BaseModel, Field

from dottxt import AsyncDotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class Day(BaseModel):
    title: str
    activities: list[str] = Field(min_length=1, max_length=3)


class Budget(BaseModel):
    currency: str = Field(pattern="^[A-Z]{3}$")
    total: int = Field(ge=0)


class Itinerary(BaseModel):
    destination: str
    days: list[Day] = Field(min_length=1, max_length=3)
    budget: Budget


async def main() -> None:
    async with AsyncDotTxt() as client:
        async with client.stream(
            model=MODEL,
            response_format=Itinerary,
            input="Plan a two-day trip to Lisbon for someone who loves food and old trams.",
        ) as stream:
            async for event in stream:
                if event.is_leaf:
                    print(f"{event.field:<24} {json.dumps(event.value, ensure_ascii=False)}", flush=True)
            itinerary = await stream.result()
    print()
    print(
        f"done: {len(itinerary.days)} day(s) in {itinerary.destination}, "
        f"budget {itinerary.budget.total} {itinerary.budget.currency}"
    )


if __name__ == "__main__":
    asyncio.run(main())
