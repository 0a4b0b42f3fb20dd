"""Finished values: `FieldDone`, the field patterns that pick them, the declared type at a path, and the tracker.

A leaf is finished when its op arrives; a container when the first op outside
it arrives (the `DocumentBuilder` reports it then, through its `finished`
list) or when the stream ends. `CompletionTracker.step(event)` runs in step
with the builder, right after each event is made, so it sees each container
close at the very op that closed it. Nothing here runs for a plain iteration:
the builder only records closes while a tracker is attached.

`TypedPaths` resolves the declared type at a path of a `response_format` type
(a Pydantic model's field, a dataclass field, a TypedDict key, the items of a
list/tuple/set, the values of a dict, through Optional/Annotated) and
validates a finished value with a TypeAdapter built once per path shape.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pydantic
from pydantic import functional_validators

from ._errors import InvalidOutputError
from ._events import DocumentBuilder, PatchEvent, copy_json
from ._patch import format_pointer
from ._schemas import first_pydantic_error, type_adapter

__all__ = ["CompletionTracker", "FieldDone", "FieldMatcher", "TypedPaths", "field_of"]

V = TypeVar("V")
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldDone:
    """A value the model has finished: its field (`"steps/0"`), its decoded path, its typed value, its JSON.

    `raw` is an independent copy of the finished JSON value; `value` is `raw`
    validated and typed as the declared type at that path when the
    response_format is a Python type that declares one (a `Step` for
    `steps/0` of `Plan(steps: list[Step])`), else `raw` itself.
    """

    field: str
    path: Path
    value: Any
    raw: Any


def field_of(path: Path) -> str:
    """The field of a decoded path, escaped as a pointer without its leading `/` (`("a/b", 0)` -> `"a~1b/0"`)."""
    return format_pointer(path)[1:]


# --------------------------------------------------------------------------- field patterns


class FieldMatcher(Generic[V]):
    """Field patterns, each with a value (a callback, say): an exact field, or `*` standing for one segment.

    Each pattern is compiled once to a regular expression and filed under its
    depth (its segment count), so a pointer is tried only against patterns of
    its own depth, and one at a depth no pattern has is refused by a `count("/")`.
    """

    def __init__(self, entries: Iterable[tuple[object, V]], *, what: str) -> None:
        self._by_depth: dict[int, list[tuple[re.Pattern[str], V]]] = {}
        for field, value in entries:
            if not isinstance(field, str):
                raise TypeError(f"{what} must be field strings such as 'steps/*', not {field!r}")
            field = field[1:] if field.startswith("/") else field
            parts = field.split("/") if field else []
            regex = "/".join("[^/]*" if part == "*" else re.escape(part) for part in parts)
            self._by_depth.setdefault(len(parts), []).append((re.compile(regex), value))
        #: The depths (segment counts) of the fields and patterns: a pointer at another depth matches none.
        self.depths = frozenset(self._by_depth)

    def __bool__(self) -> bool:
        return bool(self.depths)

    def match(self, pointer: str, resolved: Callable[[], Path]) -> Sequence[V]:
        """The values whose field or pattern matches `pointer`, in the order given (empty for none).

        An append (`steps/-`) matches as itself and as the index it landed at,
        which `resolved()` (the event's decoded path) tells.
        """
        entries = self._by_depth.get(pointer.count("/"))
        if entries is None:
            return ()
        field = pointer[1:]
        if field == "-" or field.endswith("/-") or "/-/" in field or field.startswith("-/"):
            at = field_of(resolved())
            return [value for regex, value in entries if regex.fullmatch(field) or regex.fullmatch(at)]
        return [value for regex, value in entries if regex.fullmatch(field)]


# --------------------------------------------------------------------------- declared types at paths


class _Unknown:
    """No declared type at this path: the JSON value is reported as it is."""


_UNKNOWN: Any = _Unknown
_ANY_ITEM = object()  # the trie key of a homogeneous container's children (list items, dict values)


def _bare(tp: Any) -> Any:
    """`tp` without what does not change its children: Annotated, Optional, NewType, Required and the like."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(args) != 1:
                return _UNKNOWN  # a union of several types: which one is meant is unknown until validated
            tp = args[0]
        elif origin in _WRAPPERS:
            tp = typing.get_args(tp)[0]
        elif hasattr(tp, "__supertype__"):  # NewType
            tp = tp.__supertype__
        else:
            return tp


_WRAPPERS = tuple(
    wrapper
    for name in ("Required", "NotRequired", "ReadOnly")
    for module in (typing, __import__("typing_extensions"))
    if (wrapper := getattr(module, name, None)) is not None
)


def _field_validators(model: type[pydantic.BaseModel], name: str) -> list[Any]:
    """The model's `@field_validator`s of field `name`, as Annotated validators (the model's own are not run)."""
    kinds = {
        "after": functional_validators.AfterValidator,
        "before": functional_validators.BeforeValidator,
        "plain": functional_validators.PlainValidator,
        "wrap": functional_validators.WrapValidator,
    }
    found = []
    for decorator in model.__pydantic_decorators__.field_validators.values():
        info = decorator.info
        if name in info.fields or "*" in info.fields:
            found.append(kinds[info.mode](getattr(model, decorator.cls_var_name)))
    return found


def _child(tp: Any, segment: str | int) -> tuple[Any, bool]:
    """The declared type of `tp`'s child at `segment`, and whether every child shares it (list items, say)."""
    tp = _bare(tp)
    if tp is _UNKNOWN or tp is Any:
        return _UNKNOWN, True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        for name, info in tp.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
            if segment == (alias or name):
                metadata = (info, *_field_validators(tp, name))
                return typing.Annotated.__class_getitem__((info.annotation, *metadata)), False  # type: ignore[attr-defined]
        return _UNKNOWN, False
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or typing.is_typeddict(tp)):
        hints = typing.get_type_hints(tp, include_extras=True)
        if dataclasses.is_dataclass(tp):
            hints = {field.name: hints[field.name] for field in dataclasses.fields(tp) if field.name in hints}
        return hints.get(str(segment), _UNKNOWN), False
    if origin in (list, set, frozenset, Sequence, typing.Sequence, typing.AbstractSet) and args:
        return args[0], True
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0], True
        if isinstance(segment, int) and segment < len(args):
            return args[segment], False
        return _UNKNOWN, False
    if origin in (dict, Mapping, typing.Mapping) and len(args) == 2:
        return args[1], True
    return _UNKNOWN, True


class _TypeNode:
    """One path shape in the trie of declared types: its type, its TypeAdapter (built on first use), its children."""

    __slots__ = ("adapter", "children", "homogeneous", "type")

    def __init__(self, tp: Any) -> None:
        self.type = tp
        self.adapter: pydantic.TypeAdapter[Any] | None = None
        self.children: dict[object, _TypeNode] = {}
        self.homogeneous: bool | None = None  # known once a first child has been looked up


class TypedPaths:
    """The declared types of a response_format type at each path, and a finished value validated as one.

    Path shapes are cached in a trie (list items and dict values share one
    node), and each node's TypeAdapter is built once.
    """

    def __init__(self, root: Any, *, model: str | None = None) -> None:
        self._root = _TypeNode(root)
        self._model = model

    def _node(self, path: Path) -> _TypeNode:
        node = self._root
        for segment in path:
            if node.type is _UNKNOWN:
                return node
            child = node.children.get(_ANY_ITEM if node.homogeneous else segment)
            if child is None:
                tp, homogeneous = _child(node.type, segment)
                node.homogeneous = homogeneous
                child = node.children.setdefault(_ANY_ITEM if homogeneous else segment, _TypeNode(tp))
            node = child
        return node

    def value(self, path: Path, field: str, raw: Any, document: Callable[[], Any]) -> Any:
        """`raw` validated and typed as declared at `path` (as is when nothing is declared there).

        InvalidOutputError (with `.field` and the document so far) when it does not validate.
        """
        node = self._node(path)
        if node.type is _UNKNOWN:
            return raw
        if node.adapter is None:
            node.adapter = type_adapter(node.type)
        try:
            text = json.dumps(raw)
            return node.adapter.validate_json(text)
        except (pydantic.ValidationError, UnicodeError, RecursionError) as exc:
            detail = first_pydantic_error(exc) if isinstance(exc, pydantic.ValidationError) else f"({exc})"
            raise InvalidOutputError(
                f"model output at {field!r} does not match its declared type {detail}",
                model=self._model,
                raw_output=shorten_json(raw),
                original_error=exc,
                document=document(),
                field=field,
            ) from exc


def shorten_json(value: Any, limit: int = 1000) -> str:
    """`value` as JSON text for an error's `raw_output`, cut at `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- the tracker


class CompletionTracker(Generic[V]):
    """Turns a stream's events into the `FieldDone`s they finish, each with the values of the patterns it matched.

    `matcher` None reports every value below the root (with no values). Attach
    one tracker per builder, before its first op; call `step(event)` for each
    event as soon as it is made (before the builder applies another op), and
    `end()` once the stream has ended.
    """

    def __init__(
        self,
        builder: DocumentBuilder,
        matcher: FieldMatcher[V] | None,
        types: TypedPaths | None = None,
    ) -> None:
        if builder.tracked:
            raise RuntimeError("this stream's finished values are already being read (completed() or on_done)")
        self._builder = builder
        self._finished: list[tuple[Path, str, Any]] = []
        builder.tracked = True
        self._matcher = matcher
        self._depths = matcher.depths if matcher is not None else frozenset()
        self._types = types
        self._opened: dict[Path, Sequence[V]] = {}  # containers that came by their own op and match, still open
        self._watch()

    def _watch(self) -> None:
        """Have the builder report closed containers only while one we report is open: else they cost nothing."""
        self._builder.finished = self._finished if self._opened or self._matcher is None else None

    def wants(self) -> tuple[list[Any], frozenset[int] | None]:
        """For a caller's inline fast path: the builder's list of closed containers, and the depths that match.

        `step(event)` can only find something when the list is not empty or the
        event's pointer has one of the depths (None: every depth).
        """
        return self._finished, self._depths if self._matcher is not None else None

    def step(self, event: PatchEvent) -> Sequence[tuple[FieldDone, Sequence[V]]]:
        """The values `event` finished: the containers it closed (innermost first), then itself if a leaf."""
        out: list[tuple[FieldDone, Sequence[V]]] | tuple[()] = ()
        finished = self._finished
        if finished:
            pending = finished[:]
            finished.clear()
            out = self._close(pending)
        op = event.op
        kind = op["op"]
        pointer: str = op["path"]
        if (kind != "add" and kind != "replace") or not pointer:
            return out
        if self._matcher is None:
            targets: Sequence[V] = ()
        else:
            if pointer.count("/") not in self._depths:  # most ops stop here, at the cost of one count()
                return out
            targets = self._matcher.match(pointer, lambda: event.path)
            if not targets:
                return out
        value = op["value"]
        if type(value) is dict or type(value) is list:
            self._opened[event.path] = targets
            self._watch()
            return out
        path = event.path
        field = pointer[1:] if "-" not in path else field_of(path)  # an append: the index it landed at
        return [*out, (self._done(path, field, value), targets)]

    def end(self) -> Sequence[tuple[FieldDone, Sequence[V]]]:
        """At the end of the stream: the containers still open, innermost first (never the root)."""
        pending = self._finished[:] + self._builder.open_containers()
        self._finished.clear()
        return self._close(pending)

    def _close(self, closed: list[tuple[Path, str, Any]]) -> list[tuple[FieldDone, Sequence[V]]]:
        """The FieldDones of the closed containers that came by their own op and match (each once)."""
        out = []
        for path, pointer, container in closed:
            targets = self._opened.pop(path, None)
            if targets is not None:
                out.append((self._done(path, pointer[1:], copy_json(container)), targets))
        self._watch()
        return out

    def _done(self, path: Path, field: str, raw: Any) -> FieldDone:
        value = raw
        if self._types is not None:
            value = self._types.value(path, field, raw, self._builder.document)  # a new object, from JSON text
        done = object.__new__(FieldDone)  # as FieldDone(...) makes it, without a frozen __setattr__ per field
        done.__dict__.update(field=field, path=path, value=value, raw=raw)
        return done
