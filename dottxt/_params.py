"""Generation arguments, declared once, and the chat-completions request built from them in one place.

Every call that generates (`generate`, `stream`, `stream_in_background`, their
async twins, `generate_many`) takes `**params: Unpack[GenerationParams]`; adding
a sampling option is one line here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from ._schemas import OutputSchema
from ._transport import Timeout, check_headers

__all__ = ["Input", "RequestOptions", "GenerationParams", "ChatRequest", "chat_request", "check_timeout", "options"]

#: A prompt (sent as one user message) or a list of chat messages (sent unchanged).
Input = str | Sequence[Mapping[str, Any]]

# Body fields that come from the named arguments and that no extra may replace.
_RESERVED = frozenset({"model", "messages", "response_format", "stream"})


class RequestOptions(TypedDict, total=False):
    """Options every call that sends a request takes, as in the OpenAI SDK."""

    #: Seconds, or (connect, read), for this call only.
    timeout: Timeout
    #: Sent as HTTP headers.
    extra_headers: Mapping[str, str] | None
    #: Added to the URL's query.
    extra_query: Mapping[str, Any] | None
    #: Merged into the JSON body last, so it can override anything.
    extra_body: Mapping[str, Any] | None


class GenerationParams(RequestOptions, total=False):
    """The sampling options of a completion; any other keyword is sent as a body field too."""

    temperature: float | None
    max_tokens: int | None
    seed: int | None
    top_p: float | None
    stop: str | Sequence[str] | None
    frequency_penalty: float | None
    presence_penalty: float | None
    user: str | None
    #: More body fields (they never replace model, messages, response_format or stream).
    extra: Mapping[str, Any] | None


_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


@dataclass(frozen=True)
class ChatRequest:
    """Everything one POST /chat/completions sends: built once, sent by any call."""

    body: dict[str, Any]
    headers: dict[str, str]
    query: Mapping[str, Any] | None
    timeout: Timeout


def check_timeout(timeout: Any, name: str = "timeout") -> Timeout:
    """A timeout as given (seconds, or a (connect, read) tuple); TypeError for anything else."""
    if timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)):
        return timeout
    if (
        isinstance(timeout, tuple)
        and len(timeout) == 2
        and all(t is None or (isinstance(t, (int, float)) and not isinstance(t, bool)) for t in timeout)
    ):
        return timeout
    raise TypeError(f"{name} must be seconds (a number) or a (connect, read) tuple, not {timeout!r}")


def chat_messages(input: Any) -> list[dict[str, Any]]:
    """A prompt string as one user message; a list of message dicts unchanged."""
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    if isinstance(input, (list, tuple)) and all(isinstance(m, Mapping) for m in input):
        return [dict(m) for m in input]
    raise TypeError(f"input must be a string or a list of message dicts, not {type(input).__name__}")


def options(params: Mapping[str, Any]) -> tuple[dict[str, str], Mapping[str, Any] | None, Timeout]:
    """The request options among `params`: headers, query and timeout, checked before anything is sent."""
    query = params.get("extra_query")
    if query is not None and not isinstance(query, Mapping):
        raise TypeError(f"extra_query must be a mapping, not {type(query).__name__}")
    return check_headers(params.get("extra_headers"), "extra_headers"), query, check_timeout(params.get("timeout"))


def merge_body(body: dict[str, Any], extra_body: Any) -> dict[str, Any]:
    """`extra_body` merged into `body` last, overriding anything."""
    if extra_body is not None:
        if not isinstance(extra_body, Mapping):
            raise TypeError(f"extra_body must be a mapping, not {type(extra_body).__name__}")
        body.update(extra_body)
    return body


def chat_request(
    *, model: str, input: Any, output: OutputSchema[Any], params: Mapping[str, Any], stream: bool | str | None = None
) -> ChatRequest:
    """The one place a completion's request is built: named arguments, then params, then `extra_body`."""
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, not {model!r}")
    body: dict[str, Any] = {}
    extra = params.get("extra")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a mapping of body fields, not {type(extra).__name__}")
    for name, value in (*params.items(), *(extra or {}).items()):
        if name not in _OPTION_NAMES and name != "extra" and name not in _RESERVED and value is not None:
            body[name] = value
    body.update(model=model, messages=chat_messages(input), response_format=output.response_format)
    if stream is not None:
        body["stream"] = stream
    headers, query, timeout = options(params)
    return ChatRequest(merge_body(body, params.get("extra_body")), headers, query, timeout)
