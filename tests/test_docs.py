"""Every ```python block in README.md and docs/*.md runs, so the documentation cannot drift from the code.

Each block is written to a file of its own and run in a fresh interpreter, with
DOTTXT_BASE_URL and DOTTXT_API_KEY pointing at one FakeGateway that serves the
model ids the docs use. A block defining `test_...` functions is run with pytest
instead (its fixtures are then really exercised). A block preceded by the line
`<!-- not-run -->` is skipped on purpose. All blocks run at once, in a module
fixture; each block is then its own test, named after the file and line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dottxt.testing import FakeGateway
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The model ids the docs may use; the gateway serves them all.
DOC_MODELS = ("openai/gpt-oss-20b", "dottxt/fake-model")
NOT_RUN = "<!-- not-run -->"
TIMEOUT = 60.0

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, what it says, and whether the docs ask to run it."""

    file: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    run: bool

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def is_pytest(self) -> bool:
        return re.search(r"^def test_\w*\(", self.code, re.MULTILINE) is not None


def extract_blocks(text: str, file: str = "<text>") -> list[Block]:
    """The fenced code blocks of a Markdown text, with the `<!-- not-run -->` marker honoured."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        blocks.append(Block(file, i + 1, opening["info"].lower(), "\n".join(body) + "\n", previous != NOT_RUN))
        i = j + 1
    return blocks


def _python_blocks() -> list[Block]:
    blocks = []
    for path in DOC_FILES:
        relative = path.relative_to(ROOT).as_posix()
        blocks += [
            b for b in extract_blocks(path.read_text(encoding="utf-8"), relative) if b.language in ("python", "py")
        ]
    return blocks


BLOCKS = _python_blocks()


@dataclass
class Outcome:
    returncode: int
    output: str
    seconds: float


def _run(block: Block, workdir: Path, base_url: str) -> Outcome:
    name = re.sub(r"\W", "_", block.id) + ".py"
    script = workdir / ("test_" + name if block.is_pytest else name)
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOTTXT_")}
    env.update(
        DOTTXT_BASE_URL=base_url,
        DOTTXT_API_KEY=TEST_KEY,
        XDG_CONFIG_HOME=str(workdir / "config"),  # never a real `dottxt login` key
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONIOENCODING="utf-8",
    )
    if block.is_pytest:
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(workdir), str(script)]
    else:
        argv = [sys.executable, str(script)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)
    return Outcome(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Every runnable block, run concurrently against one gateway (closed before the tests look)."""
    workdir = tmp_path_factory.mktemp("doc-blocks")
    with FakeGateway(api_key=TEST_KEY, models=DOC_MODELS, op_delay=0.001) as gateway:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = {b.id: pool.submit(_run, b, workdir, gateway.base_url) for b in BLOCKS if b.run}
            results = {block_id: future.result() for block_id, future in futures.items()}
    yield results


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block_runs(block: Block, outcomes: dict[str, Outcome]) -> None:
    if not block.run:
        pytest.skip(f"marked {NOT_RUN}")
    outcome = outcomes[block.id]
    assert outcome.returncode == 0, f"{block.id} failed:\n{block.code}\n--- output ---\n{outcome.output}"


def test_the_docs_have_python_blocks_to_run() -> None:
    """Guards the extractor: the README and the client guide both keep runnable examples."""
    runnable = {b.file for b in BLOCKS if b.run}
    assert {"README.md", "docs/client.md"} <= runnable
    assert sum(b.file == "docs/client.md" and b.run for b in BLOCKS) >= 15


def test_extract_blocks_honours_languages_fences_and_the_not_run_marker() -> None:
    text = "\n".join(
        [
            "# Title",
            "```python",
            "print(1)",
            "```",
            "",
            NOT_RUN,
            "",
            "```python",
            "this is not python",
            "```",
            "````py",
            "```python nested fence text```",
            "````",
            "```bash",
            "pip install dottxt",
            "```",
            "- item",
            "  ```python",
            "  x = 1",
            "  ```",
        ]
    )
    blocks = extract_blocks(text, "t.md")
    assert [(b.line, b.language, b.run) for b in blocks] == [
        (2, "python", True),
        (8, "python", False),
        (11, "py", True),
        (14, "bash", True),
        (18, "python", True),
    ]
    assert blocks[0].code == "print(1)\n"
    assert blocks[2].code == "```python nested fence text```\n"
    assert blocks[4].code == "x = 1\n"
