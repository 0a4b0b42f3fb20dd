"""Ask a human to approve an agent's proposed action while the rest of the answer keeps streaming.

The schema puts `proposed_action` (and its amount) first and the customer-facing
`reply` last. As soon as the action has arrived, the operator is asked on stdin
to approve it. Meanwhile `stream_in_background` keeps reading the response on its
own thread, so the operator's thinking time and the model's writing time overlap.

- `y`: the action is carried out and the finished reply is printed.
- anything else (or end of input): the stream is cancelled if it is still
  running, and the reply is discarded, never shown to the customer.

What to watch for: the question appears before the reply exists; after your
answer, a line lists the fields that had arrived by then (the longer you take,
the more); on `n` the reply text is never printed.

    DOTTXT_API_KEY=... python examples/stream_hitl_approval.py
    echo n | python examples/stream_hitl_approval.py
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import DotTxt, StreamCancelledError

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class AgentTurn(BaseModel):
    proposed_action: Literal["refund", "store_credit", "escalate", "no_action"]
    amount_usd: float = Field(ge=0, le=500)
    justification: str = Field(max_length=200)
    reply: str = Field(max_length=800)


TICKET = "I was billed $49 twice for my March invoice. I'd like the duplicate refunded, please."


def ask_operator(action: str, amount: float) -> bool:
    """True when the operator types y/yes; end of input counts as no."""
    try:
        answer = input(f"Agent proposes: {action} ${amount:.2f}. Approve? [y/N] ")
    except EOFError:
        answer = ""
    if not sys.stdin.isatty():
        print()  # the answer was piped in, so end the prompt's line ourselves
    return answer.strip().lower() in ("y", "yes")


def main() -> None:
    with DotTxt() as client:
        background = client.stream_in_background(
            model=MODEL,
            response_format=AgentTurn,
            input=[
                {"role": "system", "content": "You are a support agent. Propose one action, then draft the reply."},
                {"role": "user", "content": TICKET},
            ],
        )
        with background:  # leaving the block cancels the stream if it is still running
            action: str | None = None
            amount: float | None = None
            for event in background:  # events as the worker thread receives them
                if event.field == "proposed_action":
                    action = event.value
                elif event.field == "amount_usd":
                    amount = event.value
                    break  # the worker thread keeps reading while we wait for the operator
            if action is None or amount is None:
                turn = background.result()  # the stream ended early: raise its error
                raise SystemExit(f"the answer had no proposed action: {turn!r}")

            approved = ask_operator(action, amount)
            so_far = background.document or {}
            print(f"received while you decided (the stream kept reading): {', '.join(so_far)}")

            if approved:
                turn = background.result()  # waits for the rest of the answer, validated
                print(f"approved: executing {turn.proposed_action} of ${turn.amount_usd:.2f}")
                print(f"reply sent to the customer:\n{turn.reply}")
            elif background.cancel():
                try:
                    background.result()
                except StreamCancelledError as exc:
                    kept = ", ".join(exc.document or {})
                    print(f"declined: stream cancelled, reply discarded (had received: {kept})")
            else:
                print("declined: the answer had already finished; the reply is discarded, nothing sent")


if __name__ == "__main__":
    main()
