"""Generate with a schema inferred from example objects by genson.

When you have sample records but no schema, `genson.SchemaBuilder` infers one.
Pass the builder itself as `response_format` (anything with `to_json()` works):
the answer is validated against the inferred schema and returned as plain JSON.

What to watch for: the inferred schema is printed first; the answer that follows
has exactly the keys and types of the samples.

    pip install genson
    DOTTXT_API_KEY=... python examples/generate_genson.py
"""

from __future__ import annotations

import json
import os

from genson import SchemaBuilder

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"

SAMPLES = [
    {"city": "Oslo", "country": "Norway", "population": 709000, "coastal": True},
    {"city": "Madrid", "country": "Spain", "population": 3300000, "coastal": False},
]


def main() -> None:
    builder = SchemaBuilder()
    for sample in SAMPLES:
        builder.add_object(sample)
    print("inferred schema:", builder.to_json())

    with DotTxt() as client:
        city = client.generate(model=MODEL, response_format=builder, input="Describe Lisbon in this format.")
    print("answer:", json.dumps(city, ensure_ascii=False))


if __name__ == "__main__":
    main()
