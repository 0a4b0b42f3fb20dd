"""What the fake gateway "hears" in a prompt: its content words, and which enum value they point to.

So that a generated answer follows the prompt the way a model's would: an enum (or
`Literal`) field takes the value whose words, or a few common cue words for it, appear
in the last user message ("I was charged twice" -> `billing`, "my app crashes" ->
`technical`), and free text is written partly from the prompt's own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Prompt", "last_user_text"]

_WORD = re.compile(r"[^\W\d_][\w'-]*")
_STOP_TEXT = (
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into is "
    "it its just me my no not of on or our please she so than that the their them then there these they this to too "
    "us was we were what when where which who why will with would you your hi hello thanks thank dear"
)
_STOP_WORDS = frozenset(_STOP_TEXT.split())
#: Cue words (matched by prefix) for enum values a triage / sentiment / priority schema commonly has.
_CUES: dict[str, tuple[str, ...]] = {
    "billing": ("charge", "refund", "invoice", "bill", "payment", "paid", "pay", "price", "card", "subscription"),
    "payment": ("charge", "refund", "invoice", "paid", "card"),
    "technical": ("crash", "error", "bug", "broken", "fail", "slow", "freez", "install", "load", "sync", "glitch"),
    "bug": ("crash", "error", "broken", "fail", "freez", "glitch"),
    "account": ("password", "username", "sign", "locked", "profile", "delete"),
    "feedback": ("love", "suggest", "idea", "wish", "feature", "great"),
    "critical": ("outage", "down", "security", "hacked", "emergency", "lost"),
    "high": ("urgent", "asap", "immediately", "twice", "cannot", "blocked"),
    "low": ("whenever", "minor", "curious", "someday"),
    "positive": ("love", "great", "happy", "excellent", "good", "wonderful", "amazing"),
    "negative": ("hate", "terrible", "awful", "bad", "angry", "worst", "broken", "disappoint"),
    "question": ("how", "what", "why", "when", "where", "which"),
}
_MIN_STEM = 4  # "charged" matches the cue "charge"; shorter words must match exactly


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _matches(word: str, cue: str) -> bool:
    """Same word, or one is a prefix (>= 4 letters) of the other: "crashes"/"crash", "billing"/"bill"."""
    if word == cue:
        return True
    short, long = sorted((word, cue), key=len)
    return len(short) >= _MIN_STEM and long.startswith(short)


def last_user_text(messages: Any) -> str:
    """The text of the last user message of a chat request (string or text-part content); "" if none."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass(frozen=True)
class Prompt:
    """A prompt as the document generator uses it: its words, and its content words for free text."""

    text: str

    @property
    def words(self) -> list[str]:
        """Every word, lower-cased, in order."""
        return _tokens(self.text)

    @property
    def content_words(self) -> tuple[str, ...]:
        """The words worth echoing in free text (no stop words, no repeats), in order."""
        seen: dict[str, None] = {}
        for word in _WORD.findall(self.text):
            if word.lower() not in _STOP_WORDS and len(word) > 2:
                seen.setdefault(word, None)
        return tuple(seen)

    def vocabulary(self, base: Sequence[str]) -> tuple[str, ...]:
        """`base` with the prompt's content words mixed in, as about a third of the pool."""
        own = self.content_words
        if not own:
            return tuple(base)
        return tuple(base) + own * max(1, round(len(base) / (2 * len(own))))

    def choose(self, options: Sequence[Any]) -> Any | None:
        """The option the prompt points to (its own words count most, then cue words); None when none does.

        Ties go to the option listed first, so the answer is the same for the same prompt.
        """
        words = self.words
        if not words:
            return None
        best, best_score = None, 0
        for option in options:
            if not isinstance(option, str):
                continue
            own = _tokens(re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", option))
            cues = [cue for word in own for cue in _CUES.get(word, ())]
            score = 3 * sum(any(_matches(w, o) for w in words) for o in own)
            score += sum(any(_matches(w, c) for w in words) for c in cues)
            if score > best_score:
                best, best_score = option, score
        return best
