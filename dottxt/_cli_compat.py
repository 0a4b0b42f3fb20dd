"""What the CLI keeps from the upstream `dottxt` CLI, where a script would notice (SPEC section 8).

The `--json` payloads carry upstream's keys, a mistyped command gets a hint, server
errors keep the server's own words, and `--author` reads the records' `author` field.
Standard library only at import time, like `dottxt._cli`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import DotTxt

__all__ = [
    "KEY_SOURCES",
    "did_you_mean",
    "login_payload",
    "logout_payload",
    "generate_payload",
    "schema_summary",
    "server_detail",
    "author_matches",
    "model_records",
]

#: `login --json`'s "source" for each place the key can come from (upstream's words).
KEY_SOURCES = {"DOTTXT_API_KEY": "env", "stdin": "stdin", "the prompt": "prompt"}

_INVALID_CHOICE = re.compile(r"invalid choice: '?(?P<typed>[^'\s]*)'? \(choose from (?P<choices>[^)]*)\)")


def did_you_mean(message: str) -> str:
    """argparse's "invalid choice" message with ", did you mean 'X'?" when one choice is close to what was typed."""
    match = _INVALID_CHOICE.search(message)
    if match is None or "did you mean" in message or "maybe you meant" in message:
        return message
    choices = [choice.strip().strip("'") for choice in match["choices"].split(",")]
    close = difflib.get_close_matches(match["typed"], choices, n=1, cutoff=0.6)
    return f"{message}; did you mean '{close[0]}'?" if close else message


def login_payload(path: Path, source: str, models_available: int) -> dict[str, Any]:
    """`login --json`: `{"status", "path", "source": "env"|"stdin"|"prompt", "models_available"}`."""
    return {
        "status": "ok",
        "path": str(path),
        "source": KEY_SOURCES.get(source, source),
        "models_available": models_available,
    }


def logout_payload(path: Path, removed: bool) -> dict[str, Any]:
    """`logout --json`: `{"status", "removed", "path"}`."""
    return {"status": "ok", "removed": removed, "path": str(path)}


def schema_summary(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema's top-level `type` and property names, as upstream's `generate --json` shows them."""
    properties = schema.get("properties")
    return {"type": schema.get("type"), "keys": list(properties) if isinstance(properties, Mapping) else []}


def generate_payload(model: str, prompt: str, schema: Mapping[str, Any], result: Any) -> dict[str, Any]:
    """`generate --json`: `{"model", "prompt", "schema_summary", "result"}` (the document is `result`)."""
    return {"model": model, "prompt": prompt, "schema_summary": schema_summary(schema), "result": result}


def server_detail(exc: BaseException) -> str:
    """How an error shows in a CLI message: for a status error, the server's `error.message`, else its body.

    A 502 whose body is `{"foo": "bar"}` or has a blank `error.message` shows that body,
    not just the reason phrase ("Bad Gateway") or blanks.
    """
    from ._errors import APIStatusError, error_message_from_body, shorten

    if not isinstance(exc, APIStatusError):
        return str(exc)
    told = error_message_from_body(exc.body or "")
    body = (exc.body or "").strip()
    if (told and told.strip()) or not body:
        return str(exc)
    rid = f" (request id {exc.request_id})" if exc.request_id else ""
    return f"{exc.status_code}: {shorten(body)}{rid}"


def author_matches(record: Mapping[str, Any], author: str) -> bool:
    """Whether a model record is by `author`: its `author` field when it has one, else the id's prefix or owned_by."""
    wanted = author.casefold()
    if isinstance(record.get("author"), str):
        return bool(record["author"].casefold() == wanted)
    model_id = str(record.get("id", ""))
    owner = record.get("owned_by")
    return ("/" in model_id and model_id.split("/", 1)[0].casefold() == wanted) or (
        isinstance(owner, str) and owner.casefold() == wanted
    )


def model_records(client: DotTxt) -> tuple[list[dict[str, Any]], str | None]:
    """The model records the server lists, and a note when its 2xx answer was not a list of models.

    Such an answer still means the key was accepted: `login` stores it and `models` prints
    none, as upstream does, instead of failing.
    """
    from ._errors import APIStatusError

    try:
        page = client.models.list()
    except APIStatusError as exc:
        if not 200 <= exc.status_code < 300:
            raise
        return [], f"note: the server's model list has an unexpected shape, so no models are shown ({exc.message})"
    return [model.model_dump() for model in page.data], None
