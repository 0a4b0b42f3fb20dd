"""JSON Pointer (RFC 6901) and JSON Patch (RFC 6902) on plain Python JSON values.

The patch stream delivers a document as RFC 6902 operations; this module applies
them. Documents are plain `dict` / `list` / `str` / `int` / `float` / `bool` /
`None` values, changed in place: every apply function returns the (possibly new)
root, because an op at path `""` replaces the root itself.

Typical use by the stream, per received op::

    doc = apply_op(doc, op)              # PatchError if it cannot be applied
    path = decode_path(doc, op["path"])  # ("steps", 0): ints where the parent is a list
"""

from __future__ import annotations

import copy
import reprlib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from ._errors import PatchError

__all__ = [
    "parse_pointer",
    "pointer_segments",
    "escape_segment",
    "format_pointer",
    "unescape_segment",
    "list_index",
    "quoted",
    "apply_add",
    "apply_op",
    "decode_path",
    "ops_from_document",
]


def parse_pointer(pointer: str) -> list[str]:
    """Split a JSON Pointer into its unescaped segments: `"" -> []`, `"/a~1b/~0c" -> ["a/b", "~c"]`."""
    return list(pointer_segments(pointer))


@lru_cache(maxsize=4096)
def pointer_segments(pointer: str) -> tuple[str, ...]:
    """`parse_pointer` as a cached, shared tuple: for the hot paths that only read it."""
    # Cached: a stream repeats the same few paths, and the tuple is immutable so sharing it is safe.
    if not pointer:
        return ()
    if pointer[0] != "/":
        raise PatchError(f"invalid JSON Pointer {quoted(pointer)}: it must be empty or start with '/'")
    parts = pointer[1:].split("/")
    if "~" in pointer:
        parts = [unescape_segment(part, pointer) for part in parts]
    return tuple(parts)


def unescape_segment(segment: str, pointer: str) -> str:
    """One pointer segment as the key it names (`~1` -> `/`, `~0` -> `~`); PatchError for a stray `~`."""
    if "~" not in segment:
        return segment
    at = segment.find("~")
    while at != -1:
        if segment[at + 1 : at + 2] not in ("0", "1"):
            raise PatchError(
                f"invalid JSON Pointer {quoted(pointer)}: in segment {quoted(segment)}, '~' must be followed "
                "by '0' or '1' ('~0' is '~', '~1' is '/')"
            )
        at = segment.find("~", at + 2)
    return segment.replace("~1", "/").replace("~0", "~")


_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 72
_QUOTE.maxlevel, _QUOTE.maxdict, _QUOTE.maxlist = 3, 6, 6


def quoted(value: object) -> str:
    """`repr(value)` for an error message, shortened in the middle when long or deep.

    Every message that quotes a pointer, a key or a value goes through here: a
    hostile pointer can be megabytes long, and its message must not be.
    """
    return _QUOTE.repr(value)


def escape_segment(key: str) -> str:
    """Escape one object key for use in a JSON Pointer (`~` -> `~0`, `/` -> `~1`)."""
    if "~" in key:
        key = key.replace("~", "~0")
    if "/" in key:
        key = key.replace("/", "~1")
    return key


def format_pointer(segments: Iterable[str | int]) -> str:
    """Build a JSON Pointer from segments, the inverse of `parse_pointer` (ints become indices)."""
    return "".join("/" + escape_segment(str(segment)) for segment in segments)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def list_index(segment: str, length: int, pointer: str, *, insert: bool) -> int:
    """The index a segment names in a list of `length` items (RFC 6901: digits, no leading zero).

    `insert` (an `add`) also allows `length` itself and `-`, both the append
    position; otherwise the index must name an existing item. PatchError if not.
    """
    if segment == "-" and insert:
        return length
    if not (segment.isdigit() and segment.isascii()) or (segment[0] == "0" and len(segment) > 1):
        why = "'-' (past the end) names no existing element" if segment == "-" else "not an array index"
        raise PatchError(f"cannot apply {quoted(pointer)}: segment {quoted(segment)} is {why}")
    index = int(segment) if len(segment) < 19 else length + 1
    if index > length or (index == length and not insert):
        raise PatchError(
            f"cannot apply {quoted(pointer)}: index {quoted(segment)} is out of range for an array of length {length}"
        )
    return index


def _child(node: Any, segment: str, pointer: str) -> Any:
    if isinstance(node, dict):
        try:
            return node[segment]
        except KeyError:
            raise PatchError(f"cannot apply {quoted(pointer)}: key {quoted(segment)} does not exist") from None
    if isinstance(node, list):
        return node[list_index(segment, len(node), pointer, insert=False)]
    raise PatchError(
        f"cannot apply {quoted(pointer)}: segment {quoted(segment)} is inside a {_kind(node)}, not an object or array"
    )


def _parent(doc: Any, segments: tuple[str, ...], pointer: str) -> Any:
    node = doc
    for segment in segments[:-1]:
        # The common case (an existing key) without a call; _child handles the rest and the errors.
        node = node[segment] if type(node) is dict and segment in node else _child(node, segment, pointer)
    return node


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for segment in pointer_segments(pointer):
        node = _child(node, segment, pointer)
    return node


def _locate(doc: Any, path: str) -> tuple[Any, str] | None:
    """The container `path` points into and its last segment; None for the root (`""`)."""
    segments = pointer_segments(path)
    if not segments:
        return None
    return _parent(doc, segments, path), segments[-1]


def apply_add(doc: Any, path: str, value: Any) -> Any:
    """Apply one RFC 6902 `add` in place and return the (possibly new) root.

    `""` replaces the root (returns `value`), `-` appends to a list, a numeric
    segment inserts into a list (index == length allowed), a key sets it in an
    object. `value` is inserted as is, not copied. A pointer that cannot be
    applied raises `PatchError` naming the failing segment.
    """
    located = _locate(doc, path)
    if located is None:
        return value
    parent, last = located
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(list_index(last, len(parent), path, insert=True), value)
    else:
        raise PatchError(
            f"cannot add at {quoted(path)}: the parent of {quoted(last)} is a {_kind(parent)}, not an object or array"
        )
    return doc


def _remove(doc: Any, path: str) -> Any:
    """Remove the value at `path` (which must exist) and return it."""
    located = _locate(doc, path)
    if located is None:
        raise PatchError("cannot remove the document root (path '')")
    parent, last = located
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {quoted(path)}: key {quoted(last)} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(list_index(last, len(parent), path, insert=False))
    raise PatchError(f"cannot remove {quoted(path)}: the parent of {quoted(last)} is a {_kind(parent)}")


def _replace(doc: Any, path: str, value: Any) -> Any:
    located = _locate(doc, path)
    if located is None:
        return value
    parent, last = located
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot replace {quoted(path)}: key {quoted(last)} does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        parent[list_index(last, len(parent), path, insert=False)] = value
    else:
        raise PatchError(f"cannot replace {quoted(path)}: the parent of {quoted(last)} is a {_kind(parent)}")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers compare by value (1 == 1.0) but booleans are not numbers (1 != True)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return False
        return all(_json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    return a is None and b is None


def _member(op: dict[str, Any], name: str) -> Any:
    if name not in op:
        raise PatchError(f"{quoted(op.get('op'))} operation is missing its {name!r} member: {quoted(op)}")
    return op[name]


def _pointer_member(op: dict[str, Any], name: str) -> str:
    pointer = _member(op, name)
    if not isinstance(pointer, str):
        raise PatchError(f"{name!r} must be a JSON Pointer string, got {quoted(pointer)}")
    return pointer


def _fresh(value: Any) -> Any:
    # Containers are copied so later ops never change the op dict the caller keeps.
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def apply_op(doc: Any, op: dict[str, Any]) -> Any:
    """Apply one RFC 6902 operation (add/remove/replace/move/copy/test) in place; return the new root.

    The op's `value` is copied, never aliased. Unknown ops, missing members and
    pointers that cannot be applied raise `PatchError`; a failed `test` too.
    """
    if not isinstance(op, dict):
        raise PatchError(f"a patch operation must be a JSON object, got {quoted(op)}")
    kind = op.get("op")
    path = _pointer_member(op, "path")
    if kind == "add":
        return apply_add(doc, path, _fresh(_member(op, "value")))
    if kind == "remove":
        _remove(doc, path)
        return doc
    if kind == "replace":
        return _replace(doc, path, _fresh(_member(op, "value")))
    if kind == "test":
        expected = _member(op, "value")
        actual = _get(doc, path)
        if not _json_equal(actual, expected):
            raise PatchError(f"test failed at {quoted(path)}: expected {quoted(expected)}, found {quoted(actual)}")
        return doc
    if kind == "copy":
        return apply_add(doc, path, copy.deepcopy(_get(doc, _pointer_member(op, "from"))))
    if kind == "move":
        source = _pointer_member(op, "from")
        from_segments, to_segments = pointer_segments(source), pointer_segments(path)
        if from_segments == to_segments:
            _get(doc, source)  # must exist; moving a value onto itself changes nothing
            return doc
        if to_segments[: len(from_segments)] == from_segments:
            raise PatchError(f"cannot move {quoted(source)} into its own child {quoted(path)}")
        value = _remove(doc, source)
        try:
            return apply_add(doc, path, value)
        except PatchError:
            apply_add(doc, source, value)  # put it back: a failed op leaves the document as it was
            raise
    raise PatchError(f"unknown patch operation {quoted(kind)} (expected add, remove, replace, move, copy or test)")


def decode_path(doc: Any, path: str | Sequence[str]) -> tuple[str | int, ...]:
    """The decoded path of an op just applied to `doc`: keys stay str, list indices become int.

    Call it with the document right after the op: `-` then resolves to the index
    the value was appended at (the list's last index), e.g. `/steps/-` ->
    `("steps", 2)`. Only the containers along the path are inspected, so it also
    works after a `remove`. `path` is a pointer string or `parse_pointer`'s list.
    """
    if isinstance(path, str):
        pointer, segments = path, pointer_segments(path)
    else:
        pointer, segments = format_pointer(path), tuple(path)
    decoded: list[str | int] = []
    node = doc
    last = len(segments) - 1
    for k, segment in enumerate(segments):
        if isinstance(node, dict):
            decoded.append(segment)
            if k < last:
                node = node[segment] if segment in node else _child(node, segment, pointer)
        elif isinstance(node, list):
            if segment == "-" and k == last:
                index = len(node) - 1
            else:
                index = list_index(segment, len(node), pointer, insert=k == last)
            decoded.append(index)
            if k < last:
                node = node[index]
        else:
            raise PatchError(f"cannot decode {quoted(pointer)}: segment {quoted(segment)} is inside a {_kind(node)}")
    return tuple(decoded)


def ops_from_document(doc: Any) -> list[dict[str, Any]]:
    """The exact `add` op sequence the gateway sends for `doc` (one op per value, in document order).

    The root comes first (`{}`/`[]` for containers, else the scalar itself);
    containers are seeded empty before their children; object keys follow dict
    order and are escaped per RFC 6901; array items use explicit indices.
    """
    ops: list[dict[str, Any]] = []
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            ops.append({"op": "add", "path": path, "value": {}})
            stack.extend(reversed([(f"{path}/{escape_segment(k)}", v) for k, v in value.items()]))
        elif isinstance(value, list):
            ops.append({"op": "add", "path": path, "value": []})
            stack.extend(reversed([(f"{path}/{i}", v) for i, v in enumerate(value)]))
        else:
            ops.append({"op": "add", "path": path, "value": value})
    return ops
