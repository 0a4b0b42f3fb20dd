"""Print every field of a structured answer the moment it arrives.

`client.stream(...)` yields one `PatchEvent` per JSON Patch op. Most ops carry a
finished value (a string, number, boolean or null) at some path such as
`days/0/activities/1`; the others only open an empty object or list that later
ops fill in. This script prints the finished values (`event.is_leaf`) with the
field they belong to, then the whole validated result.

What to watch for: the lines appear one by one, in the order of the schema
(`destination` first, `budget/total` last), nested fields named by their full
path, long strings taking longer to appear than short ones.

    DOTTXT_API_KEY=... python examples/stream_field_printer.py
    # offline: run `dottxt fake-gateway` and export the variables it prints
"""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, Field

from dottxt import DotTxt

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


def main() -> None:
    with DotTxt() as client:
        stream = client.stream(
            model=MODEL,
            response_format=Itinerary,
            input="Plan a two-day trip to Lisbon for someone who loves food and old trams.",
        )
        with stream:
            for event in stream:
                if event.is_leaf:
                    print(f"{event.field:<24} {json.dumps(event.value, ensure_ascii=False)}", flush=True)
            itinerary = stream.result()  # validated against the schema, typed as an Itinerary
    print()
    print(
        f"done: {len(itinerary.days)} day(s) in {itinerary.destination}, "
        f"budget {itinerary.budget.total} {itinerary.budget.currency}"
    )


if __name__ == "__main__":
    main()
