"""Start research on each step of a plan as soon as the planner writes it.

The planner's answer is a list of research `steps`, each a `Step` object.
`stream.completed("steps/*")` yields a `FieldDone` the moment each step is
finished (when the next op outside it arrives), with `done.value` already a
validated `Step` (the `*` matches one path segment). Each one is submitted to a
`ThreadPoolExecutor`, where a task makes its own `client.generate(...)` call:
one DotTxt client is shared by the stream and every worker thread.

What to watch for: the `step N arrived` lines (with their millisecond stamps)
come while the plan is still streaming, before `plan complete`; research
results may be printed before the plan is even finished; at the end every step
has a finding.

    DOTTXT_API_KEY=... python examples/stream_fanout.py
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import DotTxt

MODEL = os.environ.get("DOTTXT_MODEL") or "openai/gpt-oss-20b"


class Step(BaseModel):
    question: str = Field(description="one self-contained research question")


class ResearchPlan(BaseModel):
    goal: str
    steps: list[Step] = Field(min_length=2, max_length=5)
    deliverable: str = Field(description="what the final report will contain")


class Finding(BaseModel):
    answer: str = Field(max_length=300)
    confidence: Literal["low", "medium", "high"]


QUESTION = "Should our 12-person team move its CI from self-hosted runners to a hosted service?"

_print_lock = threading.Lock()
_started = time.monotonic()


def say(message: str) -> None:
    """Print one whole line from any thread, stamped with ms since start."""
    with _print_lock:
        print(f"{(time.monotonic() - _started) * 1000:6.0f} ms  {message}", flush=True)


def research(client: DotTxt, index: int, question: str) -> Finding:
    finding: Finding = client.generate(
        model=MODEL,
        response_format=Finding,
        input=f"Answer briefly, for a report on: {QUESTION}\nQuestion: {question}",
    )
    say(f"step {index} researched ({finding.confidence} confidence)")
    return finding


def main() -> None:
    findings: dict[int, Future[Finding]] = {}
    with DotTxt() as client, ThreadPoolExecutor(max_workers=4) as pool:
        with client.stream(
            model=MODEL,
            response_format=ResearchPlan,
            input=f"Break this question into research steps: {QUESTION}",
        ) as stream:
            for done in stream.completed("steps/*"):
                index, step = done.path[1], done.value  # ("steps", 2), a validated Step
                assert isinstance(index, int) and isinstance(step, Step)
                findings[index] = pool.submit(research, client, index, step.question)
                say(f"step {index} arrived, research started: {step.question}")
            plan = stream.result()  # the validated ResearchPlan, already read: nothing more to wait for
        say(f"plan complete: {len(plan.steps)} steps; deliverable: {plan.deliverable}")

        for index in sorted(findings):
            finding = findings[index].result()
            print(f"  [{index}] {plan.steps[index].question}\n      -> {finding.answer}")


if __name__ == "__main__":
    main()
