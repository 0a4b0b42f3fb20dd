"""List the models your key can use, and mark the one DOTTXT_MODEL selects.

`client.models.list()` returns a page whose `.data` holds the models; iterating
the page yields them too. Each model has an `.id` (what you pass as `model=`)
and keeps any other field the server sent, such as `owned_by`.

What to watch for: one id per line; `(selected by DOTTXT_MODEL)` after the one
your environment selects, or a hint when it selects none of them.

    DOTTXT_API_KEY=... python examples/list_models.py
"""

from __future__ import annotations

import os

from dottxt import DotTxt


def main() -> None:
    selected = os.environ.get("DOTTXT_MODEL")
    with DotTxt() as client:
        page = client.models.list()
    ids = [model.id for model in page]
    for model in page:
        mark = "  (selected by DOTTXT_MODEL)" if model.id == selected else ""
        print(f"{model.id}{mark}")
    if selected not in ids:
        print(f"DOTTXT_MODEL={selected!r} is none of these: set it to one of the ids above")


if __name__ == "__main__":
    main()
