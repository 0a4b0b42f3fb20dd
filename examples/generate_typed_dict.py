"""Generate an answer typed as a TypedDict.

A TypedDict describes a plain dict with known keys: the answer comes back as a
`dict`, validated against that shape, ready for `json.dumps` or an ORM.
Pydantic requires `typing_extensions.TypedDict` on Python < 3.12, so import it
from there.

What to watch for: `type: dict`, then the keys `name`, `email` and `plan` (and
no others), with `plan` one of the allowed literals.

    DOTTXT_API_KEY=... python examples/generate_typed_dict.py
"""

from __future__ import annotations

import os
from typing import Literal

from typing_extensions import TypedDict

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class Signup(TypedDict):
    name: str
    email: str
    plan: Literal["free", "team", "enterprise"]


def main() -> None:
    with DotTxt() as client:
        signup = client.generate(
            model=MODEL,
            response_format=Signup,
            input="Hi, I'm Priya Raman (priya@example.net); we are 40 people and want the team plan.",
        )
    print("type:", type(signup).__name__)
    for key, value in signup.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
