"""Response formats shared by the test files: one of each kind `normalize_schema` accepts."""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

import pydantic
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Step(pydantic.BaseModel):
    title: str
    done: bool


class Plan(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[Step]
    reply: str


class Triage(pydantic.BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[str]
    reply: str


#: A Triage document and the fields of its ops, in wire order.
TRIAGE = {"intent": "billing", "steps": ["refund", "apologise"], "reply": "We refunded you."}
TRIAGE_FIELDS = ["", "intent", "steps", "steps/0", "steps/1", "reply"]
