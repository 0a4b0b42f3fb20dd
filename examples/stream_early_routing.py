"""Route a support ticket on `intent` and `urgency` while `reply` is still being written.

The schema lists `intent` and `urgency` before `reply`, and the patch stream
delivers fields in schema order, so the routing decision can be taken the moment
those short fields land, long before the model has finished the reply.

What to watch for: every line starts with the milliseconds since the request was
sent. The `routed` (and, for a critical ticket, `paging`) lines come first with
small numbers; the `reply` line comes last with a much larger one; the final line
says how long routing was settled before the reply was complete.

    DOTTXT_API_KEY=... python examples/stream_early_routing.py
"""

from __future__ import annotations

import os
import time
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import DotTxt

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


def main() -> None:
    started = time.monotonic()

    def stamp() -> str:
        return f"{(time.monotonic() - started) * 1000:6.0f} ms"

    routed_at: float | None = None
    replied_at: float | None = None
    with DotTxt() as client:
        with client.stream(
            model=MODEL,
            response_format=SupportTicket,
            input=[
                {"role": "system", "content": "Triage the ticket, then draft a reply to the customer."},
                {"role": "user", "content": TICKET},
            ],
        ) as stream:
            for event in stream:
                if event.field == "intent":
                    routed_at = time.monotonic()
                    print(f"{stamp()}  routed: intent={event.value} -> queue {QUEUES[event.value]}", flush=True)
                elif event.field == "urgency":
                    if event.value == "critical":
                        print(f"{stamp()}  paging: urgency is critical, on-call engineer notified", flush=True)
                    else:
                        print(f"{stamp()}  urgency={event.value}: no page needed", flush=True)
                elif event.field == "reply":
                    replied_at = time.monotonic()
                    print(f"{stamp()}  reply ({len(event.value)} chars): {event.value}", flush=True)
    if routed_at is not None and replied_at is not None:
        print(f"routing was settled {(replied_at - routed_at) * 1000:.0f} ms before the reply was complete")


if __name__ == "__main__":
    main()
