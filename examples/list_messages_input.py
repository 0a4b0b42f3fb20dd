"""Pass a whole conversation as `input`: system prompt, examples, then the question.

`input` takes a string (sent as one user message) or a list of chat messages,
which is sent unchanged. A list lets you set a system prompt and show the model
a worked example (few-shot) before the real question.

What to watch for: the answer follows the format of the worked example: a
`label` from the allowed set and a short `reason`.

    DOTTXT_API_KEY=... python examples/list_messages_input.py
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class Moderation(BaseModel):
    label: Literal["ok", "spam", "abuse"]
    reason: str = Field(max_length=160)


MESSAGES = [
    {"role": "system", "content": "You moderate comments on a cooking blog. Be strict about spam."},
    {"role": "user", "content": "Comment: 'Best brownies ever, I added walnuts!'"},
    {"role": "assistant", "content": '{"label": "ok", "reason": "On-topic feedback about the recipe."}'},
    {"role": "user", "content": "Comment: 'Earn $500/day from home!!! click my profile'"},
]


def main() -> None:
    with DotTxt() as client:
        verdict = client.generate(model=MODEL, response_format=Moderation, input=MESSAGES)
    print(f"label:  {verdict.label}")
    print(f"reason: {verdict.reason}")


if __name__ == "__main__":
    main()
