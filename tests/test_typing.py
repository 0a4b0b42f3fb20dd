"""SPEC section 11, types: `mypy --strict` on user code sees the user's class, not Any."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
import pydantic
from dottxt import AsyncDotTxt, DotTxt


class Ticket(pydantic.BaseModel):
    intent: str
    reply: str


client = DotTxt(api_key="k")
reveal_type(client.generate(model="m", response_format=Ticket, input="x"))
stream = client.stream(model="m", response_format=Ticket, input="x")
reveal_type(stream)
reveal_type(stream.result())
for done in stream.completed("steps/*"):
    reveal_type(done)
background = client.stream_in_background(
    model="m", response_format=Ticket, input="x", on_done={"reply": print}, temperature=0.2
)
reveal_type(background)
reveal_type(background.result())
reveal_type(client.generate(model="m", response_format={"type": "object"}, input="x"))


async def main() -> None:
    aclient = AsyncDotTxt(api_key="k")
    reveal_type(await aclient.generate(model="m", response_format=Ticket, input="x"))
    astream = aclient.stream(model="m", response_format=Ticket, input="x")
    reveal_type(astream)
    reveal_type(await astream.result())


ticket = client.generate(model="m", response_format=Ticket, input="x")
print(ticket.intnet)
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """mypy --strict's notes and errors on USER_CODE, by line number."""
    script = tmp_path_factory.mktemp("typing") / "user.py"
    script.write_text(USER_CODE, encoding="utf-8")
    cache = Path(tempfile.gettempdir()) / "dottxt-test-mypy-cache"
    env = {**os.environ, "MYPYPATH": str(ROOT)}  # this checkout's dottxt, whatever is installed
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", f"--cache-dir={cache}", str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    found: dict[int, str] = {}
    for line in done.stdout.splitlines():
        match = re.match(r".*user\.py:(\d+): (.*)", line)
        if match:
            found[int(match.group(1))] = found.get(int(match.group(1)), "") + match.group(2)
    return found


def _line(text: str, occurrence: int = 1) -> int:
    lines = [number for number, line in enumerate(USER_CODE.splitlines(), 1) if text in line]
    return lines[occurrence - 1]


@pytest.mark.parametrize(
    ("code", "occurrence", "revealed"),
    [
        ("reveal_type(client.generate(", 1, "user.Ticket"),
        ("reveal_type(stream)", 1, "dottxt._streaming.PatchStream[user.Ticket]"),
        ("reveal_type(stream.result())", 1, "user.Ticket"),
        ("reveal_type(done)", 1, "dottxt._fields.FieldDone"),
        ("reveal_type(background)", 1, "dottxt._background.BackgroundStream[user.Ticket]"),
        ("reveal_type(background.result())", 1, "user.Ticket"),
        ("reveal_type(client.generate(", 2, "Any"),
        ("reveal_type(await aclient.generate(", 1, "user.Ticket"),
        ("reveal_type(astream)", 1, "dottxt._async_client.AsyncPatchStream[user.Ticket]"),
        ("reveal_type(await astream.result())", 1, "user.Ticket"),
    ],
)
def test_mypy_reveals_the_users_class(mypy_output: dict[int, str], code: str, occurrence: int, revealed: str) -> None:
    assert mypy_output[_line(code, occurrence)] == f'note: Revealed type is "{revealed}"'


def test_a_typo_in_a_field_name_is_a_type_error(mypy_output: dict[int, str]) -> None:
    assert '"Ticket" has no attribute "intnet"' in mypy_output[_line("ticket.intnet")]
    errors = [message for message in mypy_output.values() if message.startswith("error")]
    assert len(errors) == 1, errors  # everything else type-checks under --strict
