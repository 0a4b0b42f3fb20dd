"""Field streaming from token deltas (patch_source="sse"): our parser vs re-parsing the buffer.

A document arrives as 4-character deltas, the size of typical LLM tokens. We
compare `IncrementalJSONParser` (each delta scanned once, ops emitted as values
complete) with what peer SDKs do: append the delta to a buffer, close whatever
is open (string, containers, a dangling `,` or `:`) and `json.loads` the whole
buffer again, keeping the last successful parse. That baseline does less than
ours (it yields snapshots, not ops; finding the changed fields would need a
diff on top) and is still quadratic; its ops/s counts the document's ops over
its time. Its closing step scans with a regex, far faster than the per-character
Python loops peers use, and the "floor" column is the json.loads time alone
(as if closing were free). Sizes up to 100 KB are re-parsed in full; above
that, when it would take more than ~30 s, the baseline is timed on an evenly
spaced sample of the deltas and extrapolated; the output says so.

Prints time, ops/s and the ratio per size, and the scaling exponent (log-log
slope of time against size, 1.0 is linear). Targets: ours <= 1.05, and at
least 20x faster than re-parsing at 100 KB.

Run: python benchmarks/sse_synthesis.py
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from typing import Any

from dottxt._incremental import IncrementalJSONParser
from dottxt._patch import ops_from_document

SIZES = [1_000, 10_000, 100_000, 1_000_000]
PIECE = 4
REPARSE_BUDGET_S = 30.0
SAMPLES = 400  # deltas timed when the re-parse baseline is sampled

WORDS = ["refund", "invoice", "card", "charged", "twice", "order", "shipping", "delayed", "please", "thanks"]


def make_document(target_chars: int, seed: int = 0) -> Any:
    """A realistic structured reply: a ticket header and an array of records with nested objects and long text."""
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        text = " ".join(rng.choice(WORDS) for _ in range(n))
        return text.capitalize() + rng.choice([".", '!\n"quoted"', "\t\\path\\to", " é😀 ✓."])

    doc: dict[str, Any] = {
        "intent": "billing",
        "urgency": "high",
        "summary": sentence(12),
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold", "vip": True},
        "records": [],
    }
    i = 0
    while len(json.dumps(doc, ensure_ascii=False)) < target_chars:
        doc["records"].append(
            {
                "id": i,
                "title": sentence(6),
                "amount": round(rng.uniform(1, 500), 2),
                "refunded": rng.random() < 0.3,
                "tags": [rng.choice(WORDS) for _ in range(rng.randint(0, 4))],
                "address": {"city": "Paris", "zip": f"750{i % 20:02d}", "lines": [sentence(3), None]},
                "notes": "\n".join(sentence(rng.randint(5, 20)) for _ in range(rng.randint(1, 3))),
            }
        )
        i += 1
    return doc


def split(text: str) -> list[str]:
    return [text[k : k + PIECE] for k in range(0, len(text), PIECE)]


def run_ours(pieces: list[str]) -> int:
    parser = IncrementalJSONParser()
    ops = 0
    for piece in pieces:
        ops += len(parser.feed(piece))
    return ops + len(parser.close())


_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(")?|[\[\]{}]')
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?$")


def close_partial(buffer: str) -> str:
    """The peers' step: close an open string and the open containers so json.loads can read the prefix."""
    stack: list[str] = []
    open_string = False
    for match in _TOKENS.finditer(buffer):
        token = match.group()
        if token[0] == '"':
            open_string = match.group(1) is None
        elif token in "[{":
            stack.append("]" if token == "[" else "}")
        elif stack:
            stack.pop()
    text = _PARTIAL_ESCAPE.sub("", buffer) + '"' if open_string else buffer.rstrip()
    if text.endswith(","):
        text = text[:-1]
    elif text.endswith(":"):
        text += "null"
    return text + "".join(reversed(stack))


def reparse_once(buffer: str, last: Any) -> Any:
    try:
        return json.loads(close_partial(buffer))
    except ValueError:
        return last


def run_reparse(pieces: list[str]) -> Any:
    buffer, last = "", None
    for piece in pieces:
        buffer += piece
        last = reparse_once(buffer, last)
    return last


def time_reparse_sampled(text: str, n_pieces: int) -> float:
    """Time SAMPLES evenly spaced deltas and extrapolate to all of them (cost grows with the prefix)."""
    step = n_pieces / SAMPLES
    total = 0.0
    for s in range(SAMPLES):
        end = min(len(text), (int(s * step + step / 2) + 1) * PIECE)
        prefix = text[:end]
        start = time.perf_counter()
        reparse_once(prefix, None)
        total += time.perf_counter() - start
    return total * n_pieces / SAMPLES


def best_of(repeats: int, fn: Any, *args: Any) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def slope(sizes: list[int], times: list[float]) -> float:
    return math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])


def main() -> None:
    print(f"Field streaming from {PIECE}-character deltas: IncrementalJSONParser vs re-parsing the buffer\n")
    header = f"{'chars':>9} {'deltas':>8} {'ops':>7} | {'ours':>9} {'ops/s':>10} | {'re-parse':>10} {'ops/s':>10} |"
    header += f" {'ratio':>7} | {'floor':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    lengths: list[int] = []
    ours_times: list[float] = []
    reparse_times: list[float] = []
    notes: list[str] = []
    projected = 0.0
    for size in SIZES:
        text = json.dumps(make_document(size), ensure_ascii=False)
        pieces = split(text)
        n_ops = len(ops_from_document(json.loads(text)))
        parser = IncrementalJSONParser()
        got = [op for piece in pieces for op in parser.feed(piece)] + parser.close()
        assert got == ops_from_document(json.loads(text)), "parser disagrees with json.loads"

        ours = best_of(max(2, 100_000 // size), run_ours, pieces)
        sampled = size > 100_000 and projected > REPARSE_BUDGET_S
        floor = best_of(5, json.loads, text) * len(pieces) / 2  # the average prefix is half the text
        if sampled:
            reparse = time_reparse_sampled(text, len(pieces))
            notes.append(
                f"re-parse at {size // 1000} KB: projected {projected:.0f} s, so timed on {SAMPLES} of "
                f"{len(pieces)} deltas and extrapolated"
            )
        else:
            start = time.perf_counter()
            final = run_reparse(pieces)
            reparse = time.perf_counter() - start
            assert final == json.loads(text), "re-parse baseline did not reach the full document"
        projected = reparse * 100  # quadratic: 10x the size, 100x the time
        lengths.append(len(text))
        ours_times.append(ours)
        reparse_times.append(reparse)
        mark = "*" if sampled else " "
        print(
            f"{len(text):>9,} {len(pieces):>8,} {n_ops:>7,} | {ours * 1e3:>7.1f}ms {n_ops / ours:>10,.0f} | "
            f"{reparse * 1e3:>9.0f}{mark}ms {n_ops / reparse:>10,.0f} | {reparse / ours:>6.0f}x | "
            f"{floor * 1e3:>7.0f}ms {floor / ours:>5.0f}x"
        )
    print()
    for note in notes:
        print(f"* {note}")
    print("floor: json.loads alone on every prefix (estimated: deltas x json.loads(full text) / 2), closing for free")
    ours_slope, reparse_slope = slope(lengths, ours_times), slope(lengths, reparse_times)
    span = f"{lengths[0]:,} -> {lengths[-1]:,} chars"
    print(f"scaling exponent {span}: ours {ours_slope:.3f}, re-parse {reparse_slope:.3f}")
    at_100k = reparse_times[SIZES.index(100_000)] / ours_times[SIZES.index(100_000)]
    verdict_slope = "OK" if ours_slope <= 1.05 else "MISSED"
    verdict_ratio = "OK" if at_100k >= 20 else "MISSED"
    print(f"target exponent <= 1.05: {verdict_slope}; target >= 20x faster at 100 KB ({at_100k:.0f}x): {verdict_ratio}")


if __name__ == "__main__":
    main()
