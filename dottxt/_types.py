"""Response objects: the server's JSON with attribute access, `model_dump()` giving it back unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Record",
    "loose_record",
    "Model",
    "ModelPage",
    "CompletionUsage",
    "ChatCompletionMessage",
    "Choice",
    "ChatCompletion",
    "ChoiceDelta",
    "ChunkChoice",
    "ChatCompletionChunk",
]


class Record(BaseModel):
    """A server object: declared fields typed, unknown fields kept; dumps exactly what was sent."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """The object as the server sent it (fields it did not send are left out)."""
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        """The object as JSON, as the server sent it."""
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump_json(**kwargs)


def loose_record(data: Any) -> Any:
    """`data` as sent, each JSON object in it a Record: attribute access for answers no declared type fits."""
    if isinstance(data, dict):
        return Record.model_validate({key: loose_record(value) for key, value in data.items()})
    if isinstance(data, list):
        return [loose_record(item) for item in data]
    return data


class Model(Record):
    """A model the key can use; `id` is what you pass as `model=`."""

    id: str
    object: str | None = None
    created: int | float | None = None
    owned_by: str | None = None


class ModelPage(Record):
    """The answer of `models.list()`: `.data` holds the models; iterating yields them."""

    object: str | None = None
    data: list[Model] = []

    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Model:
        return self.data[index]


class CompletionUsage(Record):
    """Token counts of a completion."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class ChatCompletionMessage(Record):
    """The assistant's message; `content` holds the JSON text for structured output."""

    role: str | None = None
    content: str | None = None


class Choice(Record):
    """One completion choice."""

    index: int = 0
    message: ChatCompletionMessage = ChatCompletionMessage()
    finish_reason: str | None = None


class ChatCompletion(Record):
    """A chat completion, passed through as the server sent it."""

    id: str | None = None
    object: str | None = None
    created: int | float | None = None
    model: str | None = None
    choices: list[Choice] = []
    usage: CompletionUsage | None = None


class ChoiceDelta(Record):
    """The new piece of the message in one streamed chunk."""

    role: str | None = None
    content: str | None = None


class ChunkChoice(Record):
    """One choice of a streamed chunk."""

    index: int = 0
    delta: ChoiceDelta = ChoiceDelta()
    finish_reason: str | None = None


class ChatCompletionChunk(Record):
    """One SSE chunk of `chat.completions.create(stream=True)`."""

    id: str | None = None
    object: str | None = None
    created: int | float | None = None
    model: str | None = None
    choices: list[ChunkChoice] = []
    usage: CompletionUsage | None = None
