"""Start research on each step of a plan as soon as the planner writes it, with asyncio.

The asyncio twin of `stream_fanout.py`. `async for done in
stream.completed("steps/*")` yields each step the moment it is finished, as a
validated `Step`; a task is started for it at once (`asyncio.create_task`), and
each task awaits its own `client.generate(...)` on the same AsyncDotTxt client,
while the plan keeps streaming.

What to watch for: the `step N arrived` lines come before `plan complete`; some
`researched` lines may already appear while the plan is still streaming; at the
end every step has a finding.

    DOTTXT_API_KEY=... python examples/stream_fanout_async.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

from pydantic import BaseModel, Field

from dottxt import AsyncDotTxt

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

_started = time.monotonic()


def say(message: str) -> None:
    print(f"{(time.monotonic() - _started) * 1000:6.0f} ms  {message}", flush=True)


async def research(client: AsyncDotTxt, index: int, question: str) -> Finding:
    finding: Finding = await client.generate(
        model=MODEL,
        response_format=Finding,
        input=f"Answer briefly, for a report on: {QUESTION}\nQuestion: {question}",
    )
    say(f"step {index} researched ({finding.confidence} confidence)")
    return finding


async def main() -> None:
    tasks: dict[int, asyncio.Task[Finding]] = {}
    async with AsyncDotTxt() as client:
        async with client.stream(
            model=MODEL,
            response_format=ResearchPlan,
            input=f"Break this question into research steps: {QUESTION}",
        ) as stream:
            async for done in stream.completed("steps/*"):
                index, step = done.path[1], done.value  # ("steps", 2), a validated Step
                assert isinstance(index, int) and isinstance(step, Step)
                tasks[index] = asyncio.create_task(research(client, index, step.question))
                say(f"step {index} arrived, research started: {step.question}")
            plan = await stream.result()
        say(f"plan complete: {len(plan.steps)} steps; deliverable: {plan.deliverable}")

        findings = await asyncio.gather(*(tasks[index] for index in sorted(tasks)))
    for index, finding in enumerate(findings):
        print(f"  [{index}] {plan.steps[index].question}\n      -> {finding.answer}")


if __name__ == "__main__":
    asyncio.run(main())
