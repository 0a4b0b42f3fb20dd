"""Events: ops folded into the live document, and PatchEvents whose snapshots are copied only when read.

`DocumentBuilder` keeps one live document and no history. A gateway only ever
adds a new key or appends, each time at the end of the document in document
order (pre-order: a container, then its children in order), so the document
after op i is the first `size_i` values of the live document: an event keeps
that count and its snapshot is cut from the live document when read, in
O(document). The builder tracks the open containers (the "spine": the root
and, at each level, its last child while that is a container) to recognise
such ops by their pointer without walking from the root. Any other op (a
replaced or removed value, an insert in the middle, move, copy, an add away
from the spine) is applied by `apply_op` to a copy of the document, which
becomes the new live document; the earlier events keep cutting from the old
one, untouched. Every walk is iterative: no depth raises RecursionError.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from ._errors import PatchError
from ._patch import apply_op, decode_path, escape_segment, list_index, parse_pointer, unescape_segment

__all__ = ["PatchEvent", "DocumentBuilder", "copy_json"]


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): faster than copy.deepcopy, and at any depth.

    Each container is copied shallowly (in C), then its container children are replaced by their copies.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return value
    root = value.copy()
    stack = [root]
    while stack:
        node = stack.pop()
        children = node.items() if type(node) is dict else enumerate(node)
        for key, child in children:
            kind = type(child)
            if kind is dict or kind is list:
                node[key] = child = child.copy()
                stack.append(child)
    return root


def copy_prefix(root: Any, count: int) -> tuple[Any, int]:
    """A copy of the first `count` values of `root` in document order (all of them if `count` < 0).

    Document order is pre-order: a container comes before its children, which
    follow in order. Returns the copy and how many values it holds. Iterative.
    """
    kind = type(root)
    if kind is not dict and kind is not list:
        return root, 1
    out: Any = {} if kind is dict else []
    copied = 1
    stack: list[tuple[Any, Any]] = [(iter(root.items()) if kind is dict else enumerate(root), out)]
    while stack:
        children, target = stack[-1]
        into_dict = type(target) is dict
        for key, child in children:
            if copied == count:
                return out, copied
            copied += 1
            kind = type(child)
            if kind is dict or kind is list:
                value: Any = {} if kind is dict else []
                stack.append((iter(child.items()) if kind is dict else enumerate(child), value))
            else:
                value = child
            if into_dict:
                target[key] = value
            else:
                target.append(value)
            if value is not child:
                break  # descend first: pre-order
        else:
            stack.pop()
    return out, copied


def _size(root: Any) -> int:
    """How many values `root` holds in all, itself included."""
    total = 1
    stack = [root]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict or kind is list:
            children = node.values() if kind is dict else node
            total += len(children)
            stack.extend(child for child in children if type(child) is dict or type(child) is list)
    return total


def _holds(pointer: str, container: str) -> bool:
    """True when `pointer` is the container's pointer or below it."""
    return pointer == container or pointer.startswith(container + "/")


class _LazySnapshot:
    """Class attribute standing in for `PatchEvent.snapshot` on events a stream made.

    A non-data descriptor: an event built directly holds its snapshot in its
    own `__dict__`, which wins; a streamed event finds no entry and cuts a
    copy from the document it was applied to, once, on first read.
    """

    def __get__(self, event: PatchEvent | None, owner: type | None = None) -> Any:
        if event is None:
            return self
        state = event.__dict__
        epoch: _Epoch | None = state.get("_epoch")
        if epoch is None:  # another thread read it first
            return state["snapshot"]
        value = state.setdefault("snapshot", epoch.snapshot(state["_size"]))  # one copy, should two threads race
        state.pop("_epoch", None)  # its document may be an old one, kept alive for this event only
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
        return cached

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
        # state also holds the document it is cut from (and its lock), which cannot be copied.
        return (PatchEvent, (self.op, self.snapshot))


PatchEvent.snapshot = _LazySnapshot()


class _Epoch:
    """The document that the events of one run of in-order ops cut their snapshots from.

    While current, `root` is the live document and `size` how many values it
    holds; an op the builder cannot apply in order starts the next epoch on a
    copy, and this one's document is never changed again.
    """

    __slots__ = ("lock", "root", "size")

    def __init__(self, root: Any, size: int, lock: threading.Lock) -> None:
        self.root = root
        self.size = size
        self.lock = lock

    def snapshot(self, size: int) -> Any:
        """A copy of the document as it was when it held `size` values: O(size), whatever came after."""
        with self.lock:
            if size == self.size:
                return copy_json(self.root)
            return copy_prefix(self.root, size)[0]


class DocumentBuilder:
    """Folds ops into the live document; makes events and their snapshots on demand.

    Memory: the document, plus a key and a length per open container, one
    pointer, and up to a thousand short shared keys. Thread-safe: a background
    stream applies ops on its worker while another thread reads snapshots of
    earlier events.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = _Epoch(None, 0, self._lock)
        self._count = 0
        # The spine: the open containers, root first, each the last child of the one before
        # (a new value can be added at the end of the document only to one of them).
        # `_keys[i]` is the key or index of `_containers[i]` in the one before (`""` for the root);
        # `_ends[i]` is the length of `_containers[i]`'s pointer, a prefix of `_pointer`.
        self._containers: list[Any] = []
        self._keys: list[str | int] = []
        self._ends: list[int] = []
        self._pointer = ""
        # The innermost open container, its pointer and its decoded path, where most ops add.
        self._top: Any = None
        self._top_pointer: str | None = None
        self._top_path: tuple[str | int, ...] = ()
        self._shared_keys: dict[str, str] = {}
        #: When a list (set by a completion tracker; None otherwise, costing nothing): each container
        #: the moment it is finished, as (path, pointer, container), innermost first. A finished container
        #: is never changed again (out-of-order ops work on a copy), so the tracker may copy it later.
        self.finished: list[tuple[tuple[str | int, ...], str, Any]] | None = None
        self.tracked = False  # a tracker is attached (one per builder)

    @property
    def count(self) -> int:
        """How many ops have been applied."""
        return self._count

    def apply(self, op: dict[str, Any], line: bytes | None = None) -> PatchEvent:
        """Apply one op (already checked for shape; `line`, its raw text, is not needed); return its event.

        PatchError if it cannot be applied; the document is then unchanged.
        """
        self._lock.acquire()
        try:
            # The hot path, inline: an `add` of a new last child to an open container (most often the
            # innermost one). Anything else leaves `path` None for the general path.
            path = None
            if op["op"] == "add":
                pointer: str = op["path"]
                parent_pointer, slash, segment = pointer.rpartition("/")
                if parent_pointer == self._top_pointer and slash:
                    level, parent = -1, self._top
                else:
                    level = self._open_level(parent_pointer) if slash else -1
                    parent = self._containers[level] if level >= 0 else None
                key: str | int
                if type(parent) is dict:
                    name = unescape_segment(segment, pointer) if "~" in segment else segment
                    if name in parent:
                        parent = None  # a replacement
                    else:  # one string for a key that repeats (the same field in every item), as json.loads does
                        name = self._shared_keys.get(name) or self._share(name)
                    key = name
                elif parent is not None:
                    key = len(parent)
                    if segment != "-" and segment != str(key) and list_index(segment, key, pointer, insert=True) != key:
                        parent = None  # an insert before existing items (list_index raised if it names no place)
                if parent is not None:
                    if level >= 0:
                        self._close(level + 1, parent_pointer)
                    path = self._top_path + (key,)  # noqa: RUF005 - the faster way to build it
                    value = op["value"]
                    if type(value) is dict or type(value) is list:
                        self._add_container(value, key, pointer if segment != "-" else f"{parent_pointer}/{key}", path)
                    else:
                        if type(parent) is dict:
                            parent[key] = value
                        else:
                            parent.append(value)
                        self._epoch.size += 1
            if path is None:
                path = self._apply_out_of_order(op)
            epoch = self._epoch
            size = epoch.size
            self._count += 1
        finally:
            self._lock.release()
        event = object.__new__(PatchEvent)
        state = event.__dict__
        state["op"] = op
        state["_epoch"] = epoch
        state["_size"] = size
        state["_path"] = path
        return event

    def _share(self, key: str) -> str:
        """Remember `key` to share it with later equal keys: short keys, a thousand at most (memory stays bounded)."""
        if len(key) <= 64 and len(self._shared_keys) < 1024:
            self._shared_keys[key] = key
        return key

    def _add_container(self, value: Any, key: str | int, pointer: str, path: tuple[str | int, ...]) -> None:
        """Add a container value (a copy: never the op's own) as the last child of the innermost open container."""
        value, added = copy_prefix(value, -1) if value else (type(value)(), 1)
        parent = self._top
        if type(parent) is dict:
            parent[key] = value
        else:
            parent.append(value)
        self._epoch.size += added
        self._open(value, key, pointer, path)

    def _open_level(self, pointer: str) -> int:
        """The spine level of the open container at `pointer`, or -1 if no open container is there."""
        ends = self._ends
        level = bisect_left(ends, len(pointer))
        if level < len(ends) and ends[level] == len(pointer) and self._pointer.startswith(pointer):
            return level
        return -1

    def _open(self, container: Any, key: str | int, pointer: str, path: tuple[str | int, ...]) -> None:
        """Push a container just added as the last child of the spine's top, then its own last containers."""
        while True:
            self._containers.append(container)
            self._keys.append(key)
            self._ends.append(len(pointer))
            self._pointer = self._top_pointer = pointer
            self._top, self._top_path = container, path
            if not container:
                return
            key = next(reversed(container)) if type(container) is dict else len(container) - 1
            container = container[key]
            if type(container) is not dict and type(container) is not list:
                return
            pointer = f"{pointer}/{escape_segment(str(key))}"
            path = (*path, key)

    def _close(self, level: int, pointer: str) -> None:
        """Drop the spine's containers from `level` on: an op outside them came, so none can grow in order.

        (The moment a container is finished, innermost last in the lists.)
        """
        if self.finished is not None:
            self._finish_levels(range(len(self._containers) - 1, level - 1, -1))
        del self._containers[level:]
        del self._keys[level:]
        del self._ends[level:]
        self._top, self._top_pointer, self._top_path = self._containers[-1], pointer, tuple(self._keys[1:])

    def _apply_out_of_order(self, op: dict[str, Any]) -> tuple[str | int, ...]:
        """Any other op, by the general `apply_op`, on a copy of the document that becomes the live one."""
        document = self._epoch.root
        kind, pointer = op["op"], op["path"]
        if kind == "test":
            apply_op(document, op)  # changes nothing
            return decode_path(document, pointer)
        if pointer or kind not in ("add", "replace"):  # else a new root: the old document stays as it is
            document = copy_json(document)
        document = apply_op(document, op)
        path = decode_path(document, pointer)
        if self.finished is not None:
            # Finished at this op: the open containers below the deepest one that holds its path, as they
            # were before it (the op changed a copy). Those that hold it stay open, as far as the spine
            # rebuilt below still reaches them; a tracker reports each container once at most.
            held = [level for level, end in enumerate(self._ends) if _holds(pointer, self._pointer[:end])]
            self._finish_levels(range(len(self._containers) - 1, held[-1] if held else 0, -1))
        self._epoch = _Epoch(document, _size(document), self._lock)
        self._containers, self._keys, self._ends, self._pointer = [], [], [], ""
        self._top, self._top_pointer, self._top_path = None, None, ()
        if type(document) is dict or type(document) is list:
            self._open(document, "", "", ())
        return path

    def _finish_levels(self, levels: range) -> None:
        """Report the spine's containers at `levels` (innermost first) as finished; never the root (level 0)."""
        assert self.finished is not None
        self.finished.extend(self._levels(levels))

    def _levels(self, levels: range) -> list[tuple[tuple[str | int, ...], str, Any]]:
        """The spine's containers at `levels` (the root, level 0, left out) as (path, pointer, container)."""
        keys, pointer, ends = self._keys, self._pointer, self._ends
        return [
            (tuple(keys[1 : level + 1]), pointer[: ends[level]], self._containers[level]) for level in levels if level
        ]

    def open_containers(self) -> list[tuple[tuple[str | int, ...], str, Any]]:
        """The containers still open below the root, innermost first, as (path, pointer, container)."""
        with self._lock:
            return self._levels(range(len(self._keys) - 1, 0, -1))

    def document(self) -> Any:
        """A copy of the document so far (None before the first op)."""
        with self._lock:
            return copy_json(self._epoch.root)
