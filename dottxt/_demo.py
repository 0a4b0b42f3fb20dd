"""`dottxt demo`: a support-ticket triage streamed from an in-process FakeGateway, each field timed.

It shows the point of the patch stream with no key and no network: `intent` and
`urgency` arrive (and could already route the ticket) long before `reply` is written.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "DEFAULT_OP_DELAY",
    "SupportTicket",
    "TICKET",
    "TRIAGE",
    "Arrival",
    "run_demo",
    "intro",
    "format_arrival",
    "outro",
    "NEXT_STEP",
    "summary_dict",
]

#: Seconds the fake gateway waits before each op; a string waits longer in proportion to its length.
DEFAULT_OP_DELAY = 0.04
_MODEL = "dottxt/fake-model"
_KEY = "demo-key"  # the in-process gateway's own key: nothing real is ever sent anywhere
_VALUE_WIDTH = 34
_WIDTH = 80  # every line fits an 80-column terminal
#: The demo's last line: where to go from here.
NEXT_STEP = "Next: run `dottxt fake-gateway`, then `dottxt stream -s 'intent, reply' 'Help!'`"


class SupportTicket(BaseModel):
    """A triaged support ticket. Field order is arrival order: what routes the ticket comes first."""

    intent: Literal["billing", "technical", "account", "feedback"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str


TICKET = (
    "Hi, I was charged twice for my Pro plan this month (two payments of $29 on the 3rd). "
    "Please refund the duplicate. Thanks, Dana"
)

#: What the fake gateway "generates" for TICKET: a realistic triage whose reply is long enough to land last.
TRIAGE: dict[str, Any] = {
    "intent": "billing",
    "urgency": "high",
    "reply": (
        "Hi Dana, sorry about the double charge on your Pro plan. I can see both $29 payments "
        "from the 3rd and have refunded the duplicate; it should be back on your card within "
        "5 to 10 business days. Your subscription is not affected, and I have flagged your "
        "account so that a renewal is never charged twice again."
    ),
}


@dataclass(frozen=True)
class Arrival:
    """One field of the stream: its pointer without `/`, its value, and when it arrived."""

    field: str
    value: Any
    ms: float  # milliseconds since the request was sent

    def as_dict(self) -> dict[str, Any]:
        """The arrival as JSON-ready data (`dottxt --json demo` prints one per line)."""
        return {"field": self.field, "value": self.value, "ms": round(self.ms)}


def run_demo(*, op_delay: float = DEFAULT_OP_DELAY, on_field: Callable[[Arrival], Any] | None = None) -> list[Arrival]:
    """Stream TRIAGE from an in-process FakeGateway; call `on_field` the moment each field arrives.

    Returns every arrival in wire order; raises if the final document does not match SupportTicket.
    """
    import requests

    from ._client import DotTxt
    from .testing import FakeGateway

    arrivals: list[Arrival] = []
    # The gateway is on loopback: an HTTP(S)_PROXY from the environment must not be asked to reach it.
    session = requests.Session()
    session.trust_env = False
    with FakeGateway(api_key=_KEY, models=(_MODEL,), op_delay=op_delay) as gateway, session:
        gateway.enqueue(TRIAGE)
        with DotTxt(
            api_key=_KEY, base_url=gateway.base_url, max_retries=0, session=session, patch_source="gateway"
        ) as client:
            with client.stream(model=_MODEL, response_format=SupportTicket, input=TICKET) as stream:
                start = time.perf_counter()  # the request goes out when iteration starts
                for event in stream:
                    if event.is_leaf:
                        arrival = Arrival(event.field, event.value, (time.perf_counter() - start) * 1000.0)
                        arrivals.append(arrival)
                        if on_field is not None:
                            on_field(arrival)
                stream.result()
    return arrivals


def intro(op_delay: float) -> list[str]:
    """The lines printed before the stream starts."""
    return [
        "Triaging a support ticket with a local fake gateway (no key, no network needed).",
        *textwrap.wrap(f"Ticket: {TICKET}", width=_WIDTH, subsequent_indent="  "),
        f"Each field is printed the moment its patch op arrives ({op_delay * 1000:.0f} ms per op;",
        "longer strings take proportionally longer):",
        "",
    ]


def _shown(value: Any) -> str:
    """A value for the table: short strings bare, long ones quoted and shortened."""
    if not isinstance(value, str):
        return json.dumps(value)
    if len(value) <= 14:
        return value
    if len(value) > _VALUE_WIDTH - 2:
        return json.dumps(value[: _VALUE_WIDTH - 5])[:-1] + '..."'
    return json.dumps(value)


def format_arrival(arrival: Arrival) -> str:
    """One table row: `  intent     billing      42 ms` (long strings shown shortened)."""
    return f"  {arrival.field:<10} {_shown(arrival.value):<{_VALUE_WIDTH}} {arrival.ms:>6.0f} ms"


def outro(arrivals: list[Arrival]) -> list[str]:
    """The full reply, then the closing line: how long before the reply routing was decided."""
    lines = [""]
    reply = next((a.value for a in arrivals if a.field == "reply"), None)
    if isinstance(reply, str):
        lines += ["Reply:", *textwrap.wrap(reply, width=76, initial_indent="  ", subsequent_indent="  "), ""]
    summary = summary_dict(arrivals)
    if summary["lead_ms"] is not None:
        lines += [
            f"Routing was decided {summary['lead_ms']} ms before the reply landed",
            f"(intent at {summary['routing_decided_ms']} ms, reply at {summary['reply_landed_ms']} ms).",
        ]
    return [*lines, "", NEXT_STEP]


def summary_dict(arrivals: list[Arrival]) -> dict[str, Any]:
    """The closing line as data: `{"routing_decided_ms": ..., "reply_landed_ms": ..., "lead_ms": ...}`."""
    when = {arrival.field: round(arrival.ms) for arrival in arrivals}
    routed, landed = when.get("intent"), when.get("reply")
    if routed is None or landed is None:
        return {"routing_decided_ms": None, "reply_landed_ms": None, "lead_ms": None}
    return {"routing_decided_ms": routed, "reply_landed_ms": landed, "lead_ms": landed - routed}
