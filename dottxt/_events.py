"""Events: ops folded into the live document, and PatchEvents whose snapshots are copied only when read.

`DocumentBuilder` applies each op (finding the parent by pointer in a cache
of the containers the stream added, so no walk from the root), keeps the ops
for replaying older snapshots, and makes the `PatchEvent`s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ._errors import PatchError
from ._lines import loads as decode_line
from ._patch import apply_op, decode_path, parse_pointer, pointer_segments

__all__ = ["PatchEvent", "DocumentBuilder", "copy_json"]


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, (dict, list)) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


class _LazySnapshot:
    """Class attribute standing in for `PatchEvent.snapshot` on events a stream made.

    A non-data descriptor: an event built directly holds its snapshot in its
    own `__dict__`, which wins; a streamed event finds no entry and asks its
    document builder for a copy, once, on first read.
    """

    def __get__(self, event: PatchEvent | None, owner: type | None = None) -> Any:
        if event is None:
            return self
        state = event.__dict__
        source: DocumentBuilder = state["_source"]
        value = state["snapshot"] = source.snapshot_at(state["_index"])
        return value


@dataclass(frozen=True)
class PatchEvent:
    """One patch op as received, and the document after it.

    `snapshot` is an independent copy, valid whenever it is read; streams
    only make it when you read it, so iterating without snapshots is cheap.
    """

    op: dict[str, Any]
    snapshot: Any

    @property
    def field(self) -> str:
        """The op's JSON Pointer without its leading `/` (`"intent"`, `"steps/0"`, `""` for the root)."""
        return str(self.op.get("path", ""))[1:]

    @property
    def path(self) -> tuple[str | int, ...]:
        """The decoded pointer: `("address", "city")`, `("steps", 0)`; list indices are ints."""
        cached = self.__dict__.get("_path")
        if cached is None:
            pointer = str(self.op.get("path", ""))
            try:
                cached = decode_path(self.snapshot, pointer)
            except PatchError:  # the snapshot does not hold the path (say, after a remove)
                cached = tuple(parse_pointer(pointer))
            self.__dict__["_path"] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def value(self) -> Any:
        """The op's value (`{}` and `[]` included); None for ops without one."""
        return self.op.get("value")

    @property
    def is_leaf(self) -> bool:
        """True for an `add` of a non-container value below the root (0, "", False, None included)."""
        op = self.op
        return op.get("op") == "add" and op.get("path", "") != "" and not isinstance(op.get("value"), (dict, list))

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle rebuild it as PatchEvent(op, snapshot): a streamed event's
        # state also holds its document builder (and that builder's lock), which cannot be copied.
        return (PatchEvent, (self.op, self.snapshot))


PatchEvent.snapshot = _LazySnapshot()  # type: ignore[assignment,method-assign]


def _list_index(segment: str) -> int:
    """The index an RFC 6901 array segment names, or -1 when it names none ("01", "-", "x")."""
    if segment.isdigit() and segment.isascii() and (segment[0] != "0" or len(segment) == 1):
        return int(segment)
    return -1


class DocumentBuilder:
    """Folds ops into the live document; makes events and their snapshots on demand.

    Thread-safe: a background stream applies ops on its worker while another
    thread reads snapshots of earlier events.
    """

    def __init__(self) -> None:
        self._document: Any = None
        # Every op applied, for replaying older snapshots: as its raw line when there is one
        # (bytes are compact and invisible to the garbage collector), else as the dict.
        self._ops: list[bytes | dict[str, Any]] = []
        # pointer -> (container, decoded path) for containers this stream added, while still in place
        self._containers: dict[str, tuple[Any, tuple[str | int, ...]]] = {}
        self._cursor = -1  # the op index the cursor document has been replayed to
        self._cursor_document: Any = None
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """How many ops have been applied."""
        return len(self._ops)

    def apply(self, op: dict[str, Any], line: bytes | None = None) -> PatchEvent:
        """Apply one op (already checked for shape; `line` is its raw text, if any); return its event.

        PatchError if it cannot be applied.
        """
        with self._lock:
            path = self._add(op["path"], op["value"]) if op["op"] == "add" else None
            if path is None:  # not an add, or an add the fast paths declined: the general, checking path
                self._containers.clear()
                self._document = apply_op(self._document, op)
                path = decode_path(self._document, op["path"])  # list indices as ints, after a remove too
            index = len(self._ops)
            self._ops.append(op if line is None else line)
        event = object.__new__(PatchEvent)
        event.__dict__.update(op=op, _source=self, _index=index, _path=path)
        return event

    def _add(self, pointer: str, value: Any) -> tuple[str | int, ...] | None:
        """The hot path: an `add` under a container this stream added, found by its pointer.

        The gateway seeds every container before its children, so the parent
        of nearly every op is in `_containers` and no walk from the root is
        needed. Anything that could move a container (a replaced container, a
        list insert, a non-add op) empties the cache. Returns None, changing
        nothing, when this path does not apply.
        """
        if type(value) is dict or type(value) is list:
            value = copy_json(value) if value else type(value)()  # never alias the op's value
        if not pointer:
            self._document = value
            self._containers.clear()
            path: tuple[str | int, ...] = ()
        elif pointer[0] != "/":
            return None  # not a JSON Pointer: the general path words the error
        else:
            parent_pointer, _, key = pointer.rpartition("/")
            entry = self._containers.get(parent_pointer)
            if entry is None:
                entry = self._find(parent_pointer)
                if entry is None:
                    return None
                self._containers[parent_pointer] = entry
            parent, parent_path = entry
            if type(parent) is dict:
                if "~" in key:
                    key = pointer_segments(pointer)[-1]  # unescaped, and checked
                old = parent.get(key)
                if type(old) is dict or type(old) is list:
                    self._containers.clear()  # a container is being replaced
                parent[key] = value
                path = (*parent_path, key)
            else:
                size = len(parent)
                index = size if key == "-" else _list_index(key)
                if index == size:
                    parent.append(value)
                elif 0 <= index < size:
                    parent.insert(index, value)
                    self._containers.clear()  # later items moved
                else:
                    return None
                path = (*parent_path, index)
                if key == "-":
                    pointer = f"{parent_pointer}/{index}"
        if type(value) is dict or type(value) is list:
            self._containers[pointer] = (value, path)
        return path

    def _find(self, pointer: str) -> tuple[Any, tuple[str | int, ...]] | None:
        """The container at `pointer` and its decoded path, walking from the root; None if there is none."""
        node = self._document
        path: list[str | int] = []
        for segment in pointer_segments(pointer):
            if type(node) is dict:
                node = node.get(segment)
                path.append(segment)
            elif type(node) is list:
                index = _list_index(segment)
                if not 0 <= index < len(node):
                    return None
                node = node[index]
                path.append(index)
            else:
                return None
        return (node, tuple(path)) if type(node) is dict or type(node) is list else None

    def document(self) -> Any:
        """A copy of the document so far (None before the first op)."""
        with self._lock:
            return copy_json(self._document)

    def snapshot_at(self, index: int) -> Any:
        """A copy of the document as it was right after op `index`.

        The latest one is copied from the live document. An older one is
        replayed on a private cursor document that only moves forward, so a
        consumer reading snapshots in order while the stream runs ahead pays
        one op and one copy per read, not a replay from the start.
        """
        with self._lock:
            if index == len(self._ops) - 1:
                return copy_json(self._document)
            if index < self._cursor:
                self._cursor, self._cursor_document = -1, None
            for position in range(self._cursor + 1, index + 1):
                logged = self._ops[position]
                op: dict[str, Any] = decode_line(logged) if isinstance(logged, bytes) else logged
                self._cursor_document = apply_op(self._cursor_document, op)
            self._cursor = index
            return copy_json(self._cursor_document)
