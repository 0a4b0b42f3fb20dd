"""Schema -> document generator: plausible JSON that validates against a JSON Schema.

The fake gateway answers with `generate_document(schema, rng)` when no document was
queued, so every request gets a reply that is valid for its schema and the same for
the same seed. Strings read like text (words from a small list, a few of them with
multi-byte UTF-8), and long-text fields (`reply`, `summary`, `description`, ...) get
several sentences, so demos read well.

Supported: `$ref` (local `#/$defs/..`, `#/definitions/..`, `#`, `#anchor`; recursion
is bounded: past `max_depth` nesting levels, or once a `$ref` is already open twice,
only required properties, `minItems` items and non-recursive branches are generated),
`$defs`, `enum`, `const`, `anyOf`, `oneOf` (prefers a document that matches exactly
one branch), `allOf` (merged: properties joined, required united, the tighter bound
wins), `type` lists, objects (properties in schema order, every required one, an
optional one most of the time, `additionalProperties`, `minProperties` /
`maxProperties`), arrays (`items`, `prefixItems`, draft-07 `items` lists and
`additionalItems`, `minItems` / `maxItems`, `uniqueItems` best effort), strings
(`minLength` / `maxLength`, `format` date-time / date / time / email / uuid / uri /
hostname / ipv4 / ipv6 / duration, and simple `pattern`s: literals, classes, `. \\d \\w
\\s`, groups, `|`, the quantifiers `* + ? {n} {n,} {n,m}`), integers and numbers
(`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`), booleans,
null, the empty schema and `true`. A root `{"type": "structural-tag", ...}` gets a
sentence (a JSON string).

Not supported (ignored; the result is checked with jsonschema and regenerated a few
times, so some of these still come out right by chance): `not`, `if` / `then` /
`else`, `patternProperties`, `propertyNames`, `dependentSchemas`,
`dependentRequired`, `contains` / `minContains`, `unevaluatedProperties` /
`unevaluatedItems`, `$dynamicRef` beyond a plain local ref, remote `$ref`s, and
patterns with lookarounds, backreferences, `\\b` or Unicode property classes. When no
valid document is found the last attempt is returned as it is (like a model that
ignored its schema). A `false` schema, an unresolvable `$ref` or a schema that
requires infinitely deep documents raises `DocumentGenerationError`.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeGuard
from urllib.parse import unquote

from jsonschema.validators import validator_for

from ._prompt import Prompt

__all__ = ["DocumentGenerationError", "generate_document"]


class DocumentGenerationError(ValueError):
    """The schema cannot be turned into a document (false schema, bad $ref, endless recursion)."""


WORDS: tuple[str, ...] = (
    "account", "amber", "answer", "bright", "calm", "careful", "cedar", "city", "clear",
    "cloud", "coffee", "copper", "delivery", "early", "easy", "field", "forest", "garden",
    "gentle", "green", "harbor", "idea", "island", "journey", "kind", "lamp", "light",
    "maple", "market", "meadow", "morning", "music", "north", "ocean", "order", "paper",
    "quick", "quiet", "rapid", "river", "road", "signal", "simple", "silver", "steady",
    "stone", "stream", "summer", "ticket", "timber", "travel", "update", "valley", "warm",
    "window", "winter", "yellow", "café", "naïve", "façade", "jalapeño", "Zürich",
)  # fmt: skip
_ASCII_WORDS = tuple(w for w in WORDS if w.isascii())
_LONG_TEXT_NAMES = frozenset(
    [
        "reply",
        "response",
        "answer",
        "message",
        "body",
        "text",
        "content",
        "description",
        "summary",
        "explanation",
        "comment",
        "comments",
        "note",
        "notes",
        "details",
        "reasoning",
        "feedback",
        "review",
        "bio",
        "abstract",
        "paragraph",
        "story",
        "essay",
        "analysis",
        "rationale",
        "justification",
        "thoughts",
    ]
)
_TITLE_NAMES = frozenset(["name", "title", "label", "subject", "headline", "topic", "city", "country", "author"])
_URL_NAMES = frozenset(["url", "link", "website", "homepage", "href"])
_EMOJI = ("🚀", "✨", "🙂")
_ANNOTATIONS = frozenset(
    [
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
    ]
)
_MIN_KEYS = frozenset(["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"])
_MAX_KEYS = frozenset(["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"])
_JOIN_VIA_ALLOF = frozenset(
    [
        "anyOf",
        "oneOf",
        "$ref",
        "not",
        "items",
        "additionalProperties",
        "contains",
        "prefixItems",
        "if",
        "then",
        "else",
    ]
)
_HARD_DEPTH = 64  # beyond this nesting the schema demands an endless document


def generate_document(
    schema: Any,
    rng: random.Random | int | str | None = None,
    *,
    max_depth: int = 6,
    attempts: int = 8,
    prompt: str | None = None,
) -> Any:
    """A plausible document valid against `schema`, the same for the same `rng` seed.

    `rng` is a `random.Random` (advanced in place) or a seed for a new one. The result
    is checked with jsonschema and regenerated up to `attempts` times; see the module
    docstring for what is (not) supported. With a `prompt`, the answer follows it where
    the schema allows: an enum value its words point to, free text partly in its words.
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng if rng is not None else 0)
    if isinstance(schema, Mapping) and schema.get("type") in ("structural-tag", "structural_tag"):
        return _sentence(rng)
    gen = _Generator(schema, rng, max_depth=max_depth, prompt=Prompt(prompt) if prompt else None)
    doc = gen.generate()
    for _ in range(attempts - 1):
        if gen.is_valid(doc, schema):
            return doc
        gen.prompt = None  # what the prompt points to may be what fails (a unique array of one enum value)
        doc = gen.generate()
    return doc


# --------------------------------------------------------------------------- text


def _sentence(rng: random.Random, *, allow_quotes: bool = True, vocabulary: Sequence[str] = WORDS) -> str:
    """One sentence of 5-12 words of `vocabulary`, now and then with a quoted word or a comma."""
    words = [rng.choice(vocabulary) for _ in range(rng.randint(5, 12))]
    words[0] = words[0][:1].upper() + words[0][1:]
    if allow_quotes and rng.random() < 0.25:
        i = rng.randrange(len(words))
        words[i] = f'"{words[i]}"'
    if len(words) > 6 and rng.random() < 0.3:
        words[3] += ","
    return " ".join(words) + rng.choice(".....!?")


def _long_text(rng: random.Random, vocabulary: Sequence[str] = WORDS) -> str:
    """Two to four sentences, sometimes split into paragraphs or ending with an emoji."""
    sentences = [_sentence(rng, vocabulary=vocabulary) for _ in range(rng.randint(2, 4))]
    sep = "\n\n" if rng.random() < 0.3 else " "
    text = sep.join(sentences)
    if rng.random() < 0.2:
        text += " " + rng.choice(_EMOJI)
    return text


def _name_tokens(name: str | None) -> list[str]:
    """`replyText` / `reply_text` -> ["reply", "text"]."""
    if not name:
        return []
    parts = re.split(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])", name)
    return [p.lower() for p in parts if p]


# --------------------------------------------------------------------------- patterns


class _UnsupportedPattern(Exception):
    """A regex feature the small pattern generator does not handle."""


_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
_DOT_CHARS = list(string.ascii_letters + string.digits)
_CLASS_ESCAPES: dict[str, list[str]] = {
    "d": list(string.digits),
    "w": list(string.ascii_letters + string.digits + "_"),
    "s": [" "],
}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}

_Node = tuple[Any, ...]  # ("set", chars) | ("seq", nodes) | ("alt", nodes) | ("rep", node, lo, hi)


class _PatternParser:
    """Parses the simple subset of ECMA-262 regexes described in the module docstring."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def parse(self) -> _Node:
        node = self._alt()
        if self.i != len(self.p):
            raise _UnsupportedPattern(self.p)
        return node

    def _peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def _alt(self) -> _Node:
        branches = [self._seq()]
        while self._peek() == "|":
            self.i += 1
            branches.append(self._seq())
        return ("alt", branches) if len(branches) > 1 else branches[0]

    def _seq(self) -> _Node:
        items: list[_Node] = []
        while self.i < len(self.p) and self._peek() not in "|)":
            atom = self._atom()
            if atom is not None:
                items.append(self._quantifier(atom))
        return ("seq", items)

    def _atom(self) -> _Node | None:
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?<", self.i) and self.p[self.i + 2 : self.i + 3] not in ("=", "!"):
                end = self.p.index(">", self.i)
                self.i = end + 1
            elif self._peek() == "?":
                raise _UnsupportedPattern("lookaround")
            node = self._alt()
            if self._peek() != ")":
                raise _UnsupportedPattern("unbalanced group")
            self.i += 1
            return node
        if c == "[":
            return ("set", self._class())
        if c == ".":
            return ("set", _DOT_CHARS)
        if c in "^$":
            return None
        if c == "\\":
            return self._escape(in_class=False)
        if c in "*+?":
            raise _UnsupportedPattern("dangling quantifier")
        return ("set", [c])

    def _escape(self, *, in_class: bool) -> _Node | None:
        if self.i >= len(self.p):
            raise _UnsupportedPattern("trailing backslash")
        c = self.p[self.i]
        self.i += 1
        if c.lower() in _CLASS_ESCAPES:
            chars = _CLASS_ESCAPES[c.lower()]
            if c.isupper():
                chars = [ch for ch in _DOT_CHARS if ch not in chars]
            return ("set", chars)
        if c in _CHAR_ESCAPES:
            return ("set", [_CHAR_ESCAPES[c]])
        if c in "xu":
            width = 2 if c == "x" else 4
            digits = self.p[self.i : self.i + width]
            if len(digits) != width or not all(d in string.hexdigits for d in digits):
                raise _UnsupportedPattern("bad hex escape")
            self.i += width
            return ("set", [chr(int(digits, 16))])
        if c in "bB" and not in_class:
            raise _UnsupportedPattern("word boundary")
        if c.isdigit() or c in "pPk":
            raise _UnsupportedPattern("backreference or property class")
        return ("set", [c])

    def _class(self) -> list[str]:
        negate = self._peek() == "^"
        if negate:
            self.i += 1
        chars: list[str] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise _UnsupportedPattern("unterminated class")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if c == "\\":
                node = self._escape(in_class=True)
                assert node is not None
                members: list[str] = node[1]
                if len(members) != 1:
                    chars.extend(members)
                    continue
                c = members[0]
            if self._peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.p[self.i]
                self.i += 1
                if hi == "\\":
                    node = self._escape(in_class=True)
                    assert node is not None
                    hi = node[1][0]
                if ord(hi) < ord(c):
                    raise _UnsupportedPattern("bad range")
                chars.extend(chr(o) for o in range(ord(c), min(ord(hi), ord(c) + 512) + 1))
            else:
                chars.append(c)
        if negate:
            excluded = set(chars)
            chars = [ch for ch in _PRINTABLE if ch not in excluded]
        if not chars:
            raise _UnsupportedPattern("empty class")
        return chars

    def _quantifier(self, node: _Node) -> _Node:
        c = self._peek()
        lo: int
        hi: int | None
        if c == "*":
            lo, hi = 0, None
        elif c == "+":
            lo, hi = 1, None
        elif c == "?":
            lo, hi = 0, 1
        elif c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", self.p[self.i :])
            if not m:
                return node  # a literal "{" follows; the next atom picks it up
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            self.i += len(m.group(0)) - 1
        else:
            return node
        self.i += 1
        if self._peek() in ("?", "+"):
            self.i += 1  # lazy / possessive: same strings
        return ("rep", node, lo, hi)


def _render(node: _Node, rng: random.Random) -> str:
    """One random string matched by a parsed pattern node."""
    kind = node[0]
    if kind == "set":
        return str(rng.choice(node[1]))
    if kind == "seq":
        return "".join(_render(n, rng) for n in node[1])
    if kind == "alt":
        return _render(rng.choice(node[1]), rng)
    _, inner, lo, hi = node
    top = lo + 5 if hi is None else min(hi, lo + 5)
    return "".join(_render(inner, rng) for _ in range(rng.randint(lo, top)))


# --------------------------------------------------------------------------- numbers


def _is_number(x: Any) -> TypeGuard[int | float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_multiple(value: float, of: float) -> bool:
    """The multipleOf test exactly as jsonschema applies it."""
    if isinstance(of, float):
        try:
            q = value / of
            return bool(int(q) == q)
        except (OverflowError, ValueError, ZeroDivisionError):
            return False
    return bool(value % of == 0)


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low_exclusive, high, high_exclusive), 2020-12 and draft-4 styles."""
    lo: float | None = None
    hi: float | None = None
    lo_x = hi_x = False
    mn, mx = schema.get("minimum"), schema.get("maximum")
    xmn, xmx = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if _is_number(mn):
        lo, lo_x = mn, xmn is True
    if _is_number(xmn) and (lo is None or xmn >= lo):
        lo, lo_x = xmn, True
    if _is_number(mx):
        hi, hi_x = mx, xmx is True
    if _is_number(xmx) and (hi is None or xmx <= hi):
        hi, hi_x = xmx, True
    return lo, lo_x, hi, hi_x


def _window(lo: float | None, hi: float | None, span: float = 100) -> tuple[float, float]:
    """A small, readable range inside [lo, hi] (near 0 when allowed)."""
    if lo is None and hi is None:
        return 0, span
    if hi is None:
        assert lo is not None
        return lo, lo + span
    if lo is None:
        return (0, hi) if hi >= 0 else (hi - span, hi)
    if hi - lo <= span:
        return lo, hi
    start = min(max(lo, 0), hi)
    return (start, start + span) if start + span <= hi else (hi - span, hi)


# --------------------------------------------------------------------------- merging


def _as_types(t: Any) -> list[str]:
    return [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)]


def _merge(a: Any, b: Any) -> Any:
    """Both schemas at once (allOf), simply: properties joined, the tighter bound wins."""
    if b is True or b == {}:
        return a
    if a is True or a == {}:
        return b
    if a is False or b is False:
        return False
    out = dict(a)
    extra_all_of: list[Any] = []
    for key, bv in b.items():
        if key not in out:
            out[key] = bv
            continue
        av = out[key]
        if av == bv:
            continue
        if key == "properties" and isinstance(av, Mapping) and isinstance(bv, Mapping):
            props = dict(av)
            for pk, pv in bv.items():
                props[pk] = {"allOf": [props[pk], pv]} if pk in props else pv
            out[key] = props
        elif key == "required" and isinstance(av, list) and isinstance(bv, list):
            out[key] = list(dict.fromkeys([*av, *bv]))
        elif key == "type":
            la, lb = _as_types(av), _as_types(bv)
            both: list[str] = []
            for t in la:
                if t in lb:
                    both.append(t)
                elif {t, "integer"} <= {"integer", "number"} and {"integer", "number"} & set(lb):
                    both.append("integer")
            out[key] = list(dict.fromkeys(both)) or lb
        elif key in _MIN_KEYS and _is_number(av) and _is_number(bv):
            out[key] = max(av, bv)
        elif key in _MAX_KEYS and _is_number(av) and _is_number(bv):
            out[key] = min(av, bv)
        elif key == "enum" and isinstance(av, list) and isinstance(bv, list):
            out[key] = [x for x in av if x in bv] or bv
        elif key == "allOf" and isinstance(av, list) and isinstance(bv, list):
            out[key] = [*av, *bv]
        elif key == "additionalProperties" and (av is False or bv is False):
            out[key] = False
        elif key in _JOIN_VIA_ALLOF:
            extra_all_of.append({key: bv})
        else:
            out[key] = bv
    if extra_all_of:
        out["allOf"] = [*out.get("allOf", []), *extra_all_of]
    return out


def _is_terminal(schema: Any) -> bool:
    """True when a branch holds no $ref, so choosing it ends a recursion."""
    return "$ref" not in json.dumps(schema, default=str)


# --------------------------------------------------------------------------- generator


class _Generator:
    """Walks one root schema; `rng` drives every choice so a seed fixes the document."""

    def __init__(self, root: Any, rng: random.Random, *, max_depth: int, prompt: Prompt | None = None) -> None:
        self.root = root
        self.rng = rng
        self.max_depth = max_depth
        self.prompt = prompt
        self.words: tuple[str, ...] = prompt.vocabulary(WORDS) if prompt is not None else WORDS
        self._validator: Any = None
        try:
            cls = validator_for(root) if isinstance(root, Mapping) else validator_for({})
            self._validator = cls(root)
        except Exception:  # no validation possible: accept what we generate
            self._validator = None

    # -- validation

    def is_valid(self, doc: Any, schema: Any) -> bool:
        """Whether `doc` matches `schema` (resolved against the root); True if unknowable."""
        if self._validator is None:
            return True
        try:
            return bool(self._validator.evolve(schema=schema).is_valid(doc))
        except Exception:
            return True

    # -- entry

    def generate(self) -> Any:
        return self.gen(self.root, name=None, depth=0, minimal=False, refs=())

    # -- references

    def _resolve(self, ref: str) -> Any:
        root = self.root
        if isinstance(root, Mapping):
            base = root.get("$id")
            if isinstance(base, str) and base and ref.startswith(base.split("#")[0]):
                ref = ref[len(base.split("#")[0]) :] or "#"
        if not ref.startswith("#"):
            raise DocumentGenerationError(f"cannot resolve remote $ref {ref!r}")
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            found = self._find_anchor(root, fragment)
            if found is None:
                raise DocumentGenerationError(f"cannot resolve $ref {ref!r}: no such anchor")
            return found
        node: Any = root
        for part in fragment.split("/")[1:] if fragment else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise DocumentGenerationError(f"cannot resolve $ref {ref!r}")
        return node

    def _find_anchor(self, node: Any, name: str) -> Any:
        if isinstance(node, Mapping):
            if node.get("$anchor") == name or node.get("$dynamicAnchor") == name:
                return node
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return None
        for child in children:
            found = self._find_anchor(child, name)
            if found is not None:
                return found
        return None

    # -- dispatch

    def gen(self, schema: Any, *, name: str | None, depth: int, minimal: bool, refs: tuple[str, ...]) -> Any:
        """A value for `schema`; `minimal` asks for the smallest valid one (recursion brake)."""
        if schema is False:
            raise DocumentGenerationError("the schema `false` admits no value")
        if schema is True or not isinstance(schema, Mapping):
            return self._any(minimal)
        if depth > _HARD_DEPTH or len(refs) > _HARD_DEPTH:
            raise DocumentGenerationError("the schema requires an infinitely deep document")
        if depth > self.max_depth:
            minimal = True
        kw: dict[str, Any] = {"name": name, "depth": depth, "minimal": minimal, "refs": refs}

        ref = schema.get("$ref", schema.get("$dynamicRef", schema.get("$recursiveRef")))
        if isinstance(ref, str):
            rest = {k: v for k, v in schema.items() if k not in ("$ref", "$dynamicRef", "$recursiveRef")}
            target = self._resolve(ref)
            if refs.count(ref) >= 2:
                kw["minimal"] = True
            kw["refs"] = (*refs, ref)
            meaningful = {k: v for k, v in rest.items() if k not in _ANNOTATIONS}
            return self.gen(_merge(target, meaningful) if meaningful else target, **kw)

        if isinstance(schema.get("allOf"), list):
            merged: Any = {k: v for k, v in schema.items() if k != "allOf"}
            for sub in schema["allOf"]:
                merged = _merge(merged, sub)
            return self.gen(merged, **kw)

        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                rest = {k: v for k, v in schema.items() if k != keyword}
                return self._choose(schema[keyword], rest, exclusive=keyword == "oneOf", **kw)

        if "const" in schema:
            return json.loads(json.dumps(schema["const"]))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            rest = {k: v for k, v in schema.items() if k != "enum"}
            options = [v for v in schema["enum"] if self.is_valid(v, rest)] or schema["enum"]
            heard = self.prompt.choose(options) if self.prompt is not None else None
            return json.loads(json.dumps(heard if heard is not None else self.rng.choice(options)))

        return self._typed(schema, self._pick_type(schema, minimal), **kw)

    def _choose(self, branches: list[Any], rest: dict[str, Any], *, exclusive: bool, **kw: Any) -> Any:
        """anyOf / oneOf: the first branch (seeded order) whose value is valid; oneOf: for it alone."""
        order = list(range(len(branches)))
        self.rng.shuffle(order)
        nulls = [i for i in order if branches[i] == {"type": "null"}]
        if kw["minimal"]:
            terminal = [i for i in order if _is_terminal(branches[i])]
            order = terminal + [i for i in order if i not in terminal]
        elif nulls and len(nulls) < len(order) and self.rng.random() >= 0.15:
            order = [i for i in order if i not in nulls] + nulls  # Optional[X]: mostly X
        last_error: DocumentGenerationError | None = None
        candidate: Any = None
        found = False
        for i in order:
            merged = _merge(rest, branches[i])
            try:
                value = self.gen(merged, **kw)
            except DocumentGenerationError as exc:
                last_error = exc
                continue
            if not found:
                candidate, found = value, True
            if not self.is_valid(value, merged):
                continue  # e.g. a pattern we could not satisfy: another branch may do better
            if not exclusive or sum(self.is_valid(value, b) for b in branches) == 1:
                return value
        if not found:
            assert last_error is not None
            raise last_error
        return candidate

    def _pick_type(self, schema: Mapping[str, Any], minimal: bool) -> str | None:
        t = schema.get("type")
        if isinstance(t, str):
            return t
        if isinstance(t, list) and t:
            types = [x for x in t if isinstance(x, str)]
            others = [x for x in types if x != "null"]
            if "null" in types and (minimal or not others or self.rng.random() < 0.15):
                return "null"
            return self.rng.choice(others)
        keys = schema.keys()
        if keys & {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}:
            return "object"
        if keys & {"items", "prefixItems", "minItems", "maxItems", "contains", "uniqueItems"}:
            return "array"
        if keys & {"minLength", "maxLength", "pattern", "format"}:
            return "string"
        if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
            return "number"
        return None

    def _typed(self, schema: Mapping[str, Any], t: str | None, **kw: Any) -> Any:
        handlers: dict[str | None, Callable[..., Any]] = {
            "object": self._object,
            "array": self._array,
            "string": self._string,
            "integer": self._integer,
            "number": self._number,
        }
        if t == "boolean":
            return self.rng.random() < 0.5
        if t == "null":
            return None
        if t in handlers:
            return handlers[t](schema, **kw)
        if t is None:
            return self._any(kw["minimal"])
        return _sentence(self.rng, vocabulary=self.words)  # an unknown type name: text is the best guess

    def _any(self, minimal: bool) -> Any:
        """A small value for the empty schema / `true` (never a container)."""
        roll = self.rng.random()
        if minimal or roll < 0.6:
            return self.rng.choice(_ASCII_WORDS)
        return self.rng.randint(0, 100) if roll < 0.8 else self.rng.random() < 0.5

    # -- objects and arrays

    def _object(
        self, schema: Mapping[str, Any], *, name: str | None, depth: int, minimal: bool, refs: tuple[str, ...]
    ) -> dict[str, Any]:
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = [k for k in schema.get("required") or [] if isinstance(k, str)]
        addl = schema.get("additionalProperties", True)
        min_p = schema.get("minProperties", 0)
        max_p = schema.get("maxProperties")
        rng = self.rng

        chosen = [k for k in props if k in required or (not minimal and rng.random() < 0.85)]
        extra_required = [k for k in required if k not in props]
        n_free = 0
        if not props and addl is not False and not minimal:
            n_free = rng.randint(1, 3) if isinstance(addl, Mapping) else rng.randint(0, 2)
        count = len(chosen) + len(extra_required) + n_free
        if isinstance(min_p, int) and count < min_p:
            for k in props:
                if count >= min_p:
                    break
                if k not in chosen:
                    chosen.append(k)
                    count += 1
            chosen.sort(key=list(props).index)
            if count < min_p and addl is not False:
                n_free += min_p - count
                count = min_p
        if isinstance(max_p, int) and count > max_p:
            drop_free = min(n_free, count - max_p)
            n_free -= drop_free
            count -= drop_free
            for k in reversed(list(chosen)):
                if count <= max_p:
                    break
                if k not in required:
                    chosen.remove(k)
                    count -= 1

        child: dict[str, Any] = {"depth": depth + 1, "minimal": minimal, "refs": refs}
        out: dict[str, Any] = {}
        for k in chosen:
            out[k] = self.gen(props[k], name=k, **child)
        free_schema = addl if isinstance(addl, Mapping) else True
        for k in extra_required:
            out[k] = self.gen(free_schema, name=k, **child)
        pool = [w for w in _ASCII_WORDS if w not in out]
        rng.shuffle(pool)
        for i in range(n_free):
            key = pool[i] if i < len(pool) else f"key{i}"
            out[key] = self.gen(free_schema, name=key, **child)
        return out

    def _array(
        self, schema: Mapping[str, Any], *, name: str | None, depth: int, minimal: bool, refs: tuple[str, ...]
    ) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft-07 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        min_i = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        max_i = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
        if items is False:
            max_i = len(prefix) if max_i is None else min(max_i, len(prefix))
        if prefix:
            n = len(prefix)
        elif minimal:
            n = min_i
        else:
            n = self.rng.randint(max(min_i, 1), max(min_i, 1) + 2)
        n = max(n, min_i)
        if max_i is not None:
            n = min(n, max_i)

        child: dict[str, Any] = {"name": name, "depth": depth + 1, "minimal": minimal, "refs": refs}
        out: list[Any] = []
        seen: set[str] = set()
        for i in range(n):
            sub = prefix[i] if i < len(prefix) else (True if items is None else items)
            value = self.gen(sub, **child)
            if schema.get("uniqueItems") is True:
                key = json.dumps(value, sort_keys=True)
                for _ in range(10):
                    if key not in seen:
                        break
                    value = self.gen(sub, **child)
                    key = json.dumps(value, sort_keys=True)
                if key in seen and len(out) >= min_i:
                    break  # the item schema ran out of distinct values: a shorter array is valid
                seen.add(key)
            out.append(value)
        return out

    # -- scalars

    def _string(self, schema: Mapping[str, Any], *, name: str | None, **_: Any) -> str:
        rng = self.rng
        min_l = schema.get("minLength", 0) if isinstance(schema.get("minLength"), int) else 0
        max_l = schema.get("maxLength") if isinstance(schema.get("maxLength"), int) else None

        def fits(s: str) -> bool:
            return len(s) >= min_l and (max_l is None or len(s) <= max_l)

        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                node = _PatternParser(pattern).parse()
                compiled = re.compile(pattern)
            except (_UnsupportedPattern, re.error, ValueError):
                pass
            else:
                s = ""
                for _attempt in range(30):
                    s = _render(node, rng)
                    if compiled.search(s) and fits(s):
                        return s
                return s

        fmt = schema.get("format")
        if isinstance(fmt, str):
            s2 = self._formatted(fmt, name)
            if s2 is not None and fits(s2):
                return s2

        tokens = _name_tokens(name)
        if tokens and tokens[-1] in _LONG_TEXT_NAMES:
            s = _long_text(rng, self.words)
        elif tokens and tokens[-1] in _TITLE_NAMES:
            s = " ".join(rng.choice(self.words).capitalize() for _ in range(rng.randint(1, 3)))
        elif tokens and tokens[-1] == "email":
            s = self._formatted("email", name) or ""
        elif tokens and tokens[-1] in _URL_NAMES:
            s = self._formatted("uri", name) or ""
        else:
            s = " ".join(rng.choice(self.words) for _ in range(rng.randint(1, 3)))
        while len(s) < min_l:
            s += " " + (
                _sentence(rng, allow_quotes=False, vocabulary=self.words) if min_l - len(s) > 40 else rng.choice(WORDS)
            )
        if max_l is not None and len(s) > max_l:
            s = s[:max_l].rstrip()
        while len(s) < min_l:
            s += rng.choice(string.ascii_lowercase)
        return s

    def _formatted(self, fmt: str, name: str | None) -> str | None:
        rng = self.rng
        y, mo, d = rng.randint(2020, 2026), rng.randint(1, 12), rng.randint(1, 28)
        h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        a, b = rng.choice(_ASCII_WORDS), rng.choice(_ASCII_WORDS)
        if fmt == "date-time":
            return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z"
        if fmt == "date":
            return f"{y:04d}-{mo:02d}-{d:02d}"
        if fmt == "time":
            return f"{h:02d}:{mi:02d}:{s:02d}Z"
        if fmt in ("email", "idn-email"):
            return f"{a}.{b}@example.com"
        if fmt == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if fmt in ("uri", "iri", "uri-reference", "iri-reference", "url"):
            return f"https://example.com/{a}/{b}"
        if fmt in ("hostname", "idn-hostname"):
            return f"{a}.example.com"
        if fmt == "ipv4":
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        if fmt == "ipv6":
            return "2001:db8::" + format(rng.randint(1, 0xFFFF), "x")
        if fmt == "duration":
            return f"PT{rng.randint(1, 59)}M"
        return None

    def _integer(self, schema: Mapping[str, Any], **_: Any) -> int:
        lo_f, lo_x, hi_f, hi_x = _bounds(schema)
        lo = None if lo_f is None else (math.floor(lo_f) + 1 if lo_x else math.ceil(lo_f))
        hi = None if hi_f is None else (math.ceil(hi_f) - 1 if hi_x else math.floor(hi_f))
        mult = schema.get("multipleOf")
        if _is_number(mult) and mult > 0:
            value = self._multiple(
                mult, lo, hi, integer=True, ok=lambda v: (lo is None or v >= lo) and (hi is None or v <= hi)
            )
            if value is not None:
                return int(value)
        a, b = _window(lo, hi)
        a_i, b_i = math.ceil(a), math.floor(b)
        return self.rng.randint(a_i, b_i) if a_i <= b_i else int(a_i)

    def _number(self, schema: Mapping[str, Any], **_: Any) -> float:
        lo, lo_x, hi, hi_x = _bounds(schema)

        def ok(v: float) -> bool:
            above = lo is None or (v > lo if lo_x else v >= lo)
            below = hi is None or (v < hi if hi_x else v <= hi)
            return above and below

        mult = schema.get("multipleOf")
        if _is_number(mult) and mult > 0:
            value = self._multiple(mult, lo, hi, integer=False, ok=ok)
            if value is not None:
                return value
        a, b = _window(lo, hi)
        raw = self.rng.uniform(a, b)
        for v in (round(raw, 2), raw, (a + b) / 2):
            if ok(v):
                return float(v)
        return float(a)

    def _multiple(
        self,
        of: float,
        lo: float | None,
        hi: float | None,
        *,
        integer: bool,
        ok: Callable[[float], bool] | None = None,
    ) -> float | None:
        """A multiple of `of` inside the bounds that passes jsonschema's own multipleOf test."""
        a, b = _window(lo, hi, span=max(100, 100 * of))
        k_lo, k_hi = math.ceil(a / of - 1e-9), math.floor(b / of + 1e-9)
        if k_lo > k_hi:
            return None
        ks = [self.rng.randint(k_lo, k_hi) for _ in range(10)]
        if k_lo <= 0 <= k_hi:
            ks.append(0)
        # Prefer the exact decimal (0.7, not 0.7000000000000001) when jsonschema accepts it.
        candidates = [float(Decimal(str(of)) * k) for k in ks]
        candidates += [k * of for k in ks] + [round(k * of, 12) for k in ks]
        for v in candidates:
            if integer and v != int(v):
                continue
            if _is_multiple(v, of) and (ok is None or ok(v)):
                return int(v) if integer else v
        return None
