"""The public names and the exception tree: importable from `dottxt`, related as documented, built as documented."""

from __future__ import annotations

from typing import Any

import pytest

import dottxt
from dottxt import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DotTxtError,
    InternalServerError,
    InvalidOutputError,
    InvalidSchemaError,
    NotFoundError,
    PatchError,
    PatchStreamError,
    PermissionDeniedError,
    RateLimitError,
    StreamCancelledError,
    StreamDecodeError,
    UnprocessableEntityError,
)

PUBLIC_NAMES = [
    "DotTxt",
    "AsyncDotTxt",
    "PatchEvent",
    "PatchStream",
    "BackgroundStream",
    "apply_add",
    "normalize_schema",
    "build_response_format",
    "DotTxtError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "InvalidSchemaError",
    "InvalidOutputError",
    "PatchError",
    "PatchStreamError",
    "StreamDecodeError",
    "StreamCancelledError",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_is_importable_from_dottxt(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from dottxt import {name}", namespace)
    assert namespace[name] is getattr(dottxt, name)
    assert name in dottxt.__all__


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (APIStatusError, (DotTxtError,)),
        (BadRequestError, (APIStatusError,)),
        (AuthenticationError, (APIStatusError,)),
        (PermissionDeniedError, (APIStatusError,)),
        (NotFoundError, (APIStatusError,)),
        (UnprocessableEntityError, (APIStatusError,)),
        (RateLimitError, (APIStatusError,)),
        (InternalServerError, (APIStatusError,)),
        (APIConnectionError, (DotTxtError,)),
        (APITimeoutError, (APIConnectionError,)),
        (InvalidSchemaError, (DotTxtError,)),
        (InvalidOutputError, (DotTxtError,)),
        (PatchError, (DotTxtError, ValueError)),
        (PatchStreamError, (DotTxtError,)),
        (StreamDecodeError, (DotTxtError,)),
        (StreamCancelledError, (DotTxtError,)),
    ],
)
def test_the_error_tree(cls: type, bases: tuple[type, ...]) -> None:
    assert all(issubclass(cls, base) for base in bases)


def test_errors_are_constructed_as_documented() -> None:
    stream_error = PatchStreamError(500, "body")
    assert (stream_error.status_code, stream_error.body, stream_error.document) == (500, "body", None)
    assert "500" in str(stream_error)
    cause = ValueError("bad")
    output = InvalidOutputError(
        "output was truncated", model="m", raw_output='{"a"', finish_reason="length", original_error=cause
    )
    assert (output.model, output.raw_output, output.finish_reason, output.original_error) == (
        "m",
        '{"a"',
        "length",
        cause,
    )
    assert isinstance(APITimeoutError(), APIConnectionError)
