"""Generate one structured answer typed as a Pydantic model.

`client.generate(response_format=Model, ...)` sends the model's JSON Schema,
checks the answer against it and returns a `Model` instance, so the fields are
plain attributes with their declared types.

What to watch for: the printed `type:` line says `Invoice`, the dates and
amounts come back as `datetime.date` and `float`, and the line items add up to
however many the model found.

    DOTTXT_API_KEY=... python examples/generate_pydantic.py
"""

from __future__ import annotations

import datetime
import os

from pydantic import BaseModel, Field

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class LineItem(BaseModel):
    description: str
    amount: float = Field(ge=0)


class Invoice(BaseModel):
    vendor: str
    issued_on: datetime.date
    currency: str = Field(pattern="^[A-Z]{3}$")
    items: list[LineItem] = Field(min_length=1, max_length=5)


TEXT = """ACME Cloud Ltd - invoice issued 2024-05-02
Compute (April) ......... 412.50 EUR
Object storage .......... 38.20 EUR
Support plan ............ 99.00 EUR"""


def main() -> None:
    with DotTxt() as client:
        invoice = client.generate(model=MODEL, response_format=Invoice, input=f"Extract the invoice:\n{TEXT}")
    print("type:", type(invoice).__name__)
    print(f"{invoice.vendor}, issued {invoice.issued_on.isoformat()} ({type(invoice.issued_on).__name__})")
    for item in invoice.items:
        print(f"  {item.description:<30} {item.amount:>10.2f} {invoice.currency}")
    print(f"  {'total':<30} {sum(item.amount for item in invoice.items):>10.2f} {invoice.currency}")


if __name__ == "__main__":
    main()
