"""Ask a human to approve a proposed action while the answer keeps streaming, with asyncio.

The asyncio twin of `stream_hitl_approval.py`. The loop stops reading events once
`proposed_action` and `amount_usd` have arrived and asks the operator on stdin
(in a thread, via `asyncio.to_thread`, so the event loop is not blocked).
Meanwhile the stream's worker thread keeps receiving the rest of the answer.

- `y`: `await stream.result()` collects the finished, validated answer and the
  reply is printed.
- anything else (or end of input): `await stream.aclose()` closes the
  connection and the reply is discarded, never shown to the customer.

What to watch for: the question appears before the reply exists; a line then
lists the fields received while you decided; on `n` the reply text is never
printed.

    DOTTXT_API_KEY=... python examples/stream_hitl_approval_async.py
    echo n | python examples/stream_hitl_approval_async.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import AsyncDotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class AgentTurn(BaseModel):
    proposed_action: Literal["refund", "store_credit", "escalate", "no_action"]
    amount_usd: float = Field(ge=0, le=500)
    justification: str = Field(max_length=200)
    reply: str = Field(max_length=800)


TICKET = "I was billed $49 twice for my March invoice. I'd like the duplicate refunded, please."


def ask_operator(action: str, amount: float) -> bool:
    """True when the operator types y/yes; end of input counts as no. Blocking: run it in a thread."""
    try:
        answer = input(f"Agent proposes: {action} ${amount:.2f}. Approve? [y/N] ")
    except EOFError:
        answer = ""
    if not sys.stdin.isatty():
        print()  # the answer was piped in, so end the prompt's line ourselves
    return answer.strip().lower() in ("y", "yes")


async def main() -> None:
    async with AsyncDotTxt() as client:
        async with client.stream(
            model=MODEL,
            response_format=AgentTurn,
            input=[
                {"role": "system", "content": "You are a support agent. Propose one action, then draft the reply."},
                {"role": "user", "content": TICKET},
            ],
        ) as stream:
            action: str | None = None
            amount: float | None = None
            async for event in stream:
                match event.field:
                    case "proposed_action":
                        action = event.value
                    case "amount_usd":
                        amount = event.value
                        break  # the stream's worker thread keeps receiving while we wait
            if action is None or amount is None:
                raise SystemExit("the answer ended without a proposed action")

            approved = await asyncio.to_thread(ask_operator, action, amount)
            print(f"received while you decided (the stream kept reading): {', '.join(stream.document or {})}")

            if approved:
                turn = await stream.result()
                print(f"approved: executing {turn.proposed_action} of ${turn.amount_usd:.2f}")
                print(f"reply sent to the customer:\n{turn.reply}")
            else:
                await stream.aclose()
                print("declined: stream closed, reply discarded, nothing sent")


if __name__ == "__main__":
    asyncio.run(main())
