"""Use the OpenAI-style `client.chat.completions.create(...)` pass-through.

For code already written against the OpenAI SDK: the call takes the OpenAI
request body as keyword arguments and returns the completion unchanged, with
attribute access. Structured output needs the wrapped `response_format`, which
`dottxt.build_response_format(...)` makes from any schema input; parsing the
content is then up to you (here with Pydantic).

What to watch for: the wrapped `response_format` is printed first; then the raw
`message.content` (a JSON string), the parsed `Weather`, the finish reason and
the token usage the server reported.

    DOTTXT_API_KEY=... python examples/openai_chat_completions.py
"""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import DotTxt, build_response_format

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class Weather(BaseModel):
    city: str
    condition: Literal["sunny", "cloudy", "rain", "snow"]
    high_celsius: int = Field(ge=-60, le=60)


def main() -> None:
    response_format = build_response_format(Weather, name="weather")
    print("response_format:", json.dumps(response_format)[:120], "...")
    with DotTxt() as client:
        completion = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Typical July weather in Seville, as data."}],
            response_format=response_format,
        )
    choice = completion.choices[0]
    print("content:", choice.message.content)
    weather = Weather.model_validate_json(choice.message.content)
    print("parsed: ", repr(weather))
    print("finish: ", choice.finish_reason)
    print("usage:  ", completion.usage)


if __name__ == "__main__":
    main()
