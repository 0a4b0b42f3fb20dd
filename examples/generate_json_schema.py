"""Generate with a plain JSON Schema dict, and get plain JSON back.

When the schema is already JSON (from a file, another service or a database),
pass the dict as `response_format`. The answer is checked against the schema
and returned decoded: dicts, lists, strings, numbers.

What to watch for: `type: dict`, then the answer printed as JSON whose `sentiment`
is one of the three allowed values and whose `score` lies between -1 and 1.

    DOTTXT_API_KEY=... python examples/generate_json_schema.py
"""

from __future__ import annotations

import json
import os
from typing import Any

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment": {"enum": ["positive", "neutral", "negative"]},
        "score": {"type": "number", "minimum": -1, "maximum": 1},
        "topics": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
    },
    "required": ["sentiment", "score", "topics"],
    "additionalProperties": False,
}


def main() -> None:
    with DotTxt() as client:
        review = client.generate(
            model=MODEL,
            response_format=REVIEW_SCHEMA,
            input="Review: the battery lasts two days, but the charger whines and the case scratches easily.",
        )
    print("type:", type(review).__name__)
    print(json.dumps(review, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
