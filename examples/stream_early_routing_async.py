"""Route a support ticket on `intent` and `urgency` while `reply` is still being written, with asyncio.

The asyncio twin of `stream_early_routing.py`. Each event is matched on its
`field`; routing and paging are started as tasks (`asyncio.create_task`), so
they run concurrently with the rest of the stream instead of holding it up.

What to watch for: lines are stamped with milliseconds since the request. The
`routed` line (and `paging` for a critical ticket) has a small number and comes
before the `reply` line; the `filed`/`paged` lines from the background tasks
appear once those tasks have run; the last line says how long routing was
settled before the reply was complete.

    DOTTXT_API_KEY=... python examples/stream_early_routing_async.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import AsyncDotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"

QUEUES = {"billing": "billing-team", "technical": "tier-2-support", "account": "account-ops", "feedback": "product"}


class SupportTicket(BaseModel):
    """Field order is arrival order: what routes the ticket comes before the long reply."""

    intent: Literal["billing", "technical", "account", "feedback"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str = Field(max_length=600)


TICKET = (
    "Our whole team has been locked out since this morning: every payment to renew the "
    "plan is declined and the dashboard says the account is suspended. We have a launch today."
)

_started = time.monotonic()


def stamp() -> str:
    return f"{(time.monotonic() - _started) * 1000:6.0f} ms"


async def file_ticket(queue: str) -> None:
    """Stand-in for a call to your ticketing system."""
    await asyncio.sleep(0)
    print(f"{stamp()}  filed in {queue}", flush=True)


async def page_oncall() -> None:
    """Stand-in for a call to your paging service."""
    await asyncio.sleep(0)
    print(f"{stamp()}  paged the on-call engineer", flush=True)


async def main() -> None:
    tasks: list[asyncio.Task[None]] = []  # keep references so the tasks are not garbage-collected
    routed_at: float | None = None
    replied_at: float | None = None
    async with AsyncDotTxt() as client:
        async for event in client.stream(
            model=MODEL,
            response_format=SupportTicket,
            input=[
                {"role": "system", "content": "Triage the ticket, then draft a reply to the customer."},
                {"role": "user", "content": TICKET},
            ],
        ):
            match event.field:
                case "intent":
                    routed_at = time.monotonic()
                    print(f"{stamp()}  routed: intent={event.value} -> queue {QUEUES[event.value]}", flush=True)
                    tasks.append(asyncio.create_task(file_ticket(QUEUES[event.value])))
                case "urgency" if event.value == "critical":
                    print(f"{stamp()}  paging: urgency is critical", flush=True)
                    tasks.append(asyncio.create_task(page_oncall()))
                case "urgency":
                    print(f"{stamp()}  urgency={event.value}: no page needed", flush=True)
                case "reply":
                    replied_at = time.monotonic()
                    print(f"{stamp()}  reply ({len(event.value)} chars): {event.value}", flush=True)
        await asyncio.gather(*tasks)
    if routed_at is not None and replied_at is not None:
        print(f"routing was settled {(replied_at - routed_at) * 1000:.0f} ms before the reply was complete")


if __name__ == "__main__":
    asyncio.run(main())
