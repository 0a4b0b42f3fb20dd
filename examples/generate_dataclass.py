"""Generate an answer typed as a standard-library dataclass.

No Pydantic model needed: any type Pydantic's `TypeAdapter` understands works as
a `response_format`, and `generate` returns an instance of it.

What to watch for: the first line is the dataclass `repr` (`Recipe(title=...)`),
proof that you got a real `Recipe`, and `servings` is an `int`.

    DOTTXT_API_KEY=... python examples/generate_dataclass.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


@dataclass
class Recipe:
    title: str
    servings: int
    ingredients: list[str]
    steps: list[str]


def main() -> None:
    with DotTxt() as client:
        recipe = client.generate(
            model=MODEL,
            response_format=Recipe,
            input="A quick weeknight tomato soup for four, from pantry ingredients.",
        )
    print(repr(recipe))
    print(f"{recipe.title}: serves {recipe.servings} ({type(recipe.servings).__name__})")
    for number, step in enumerate(recipe.steps, 1):
        print(f"  {number}. {step}")


if __name__ == "__main__":
    main()
