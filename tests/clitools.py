"""Running the `dottxt` command as a subprocess and reading its pipes: shared by the CLI test files."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from typing import IO

TIMEOUT = 60.0  # an upper bound only: a broken CLI fails the test instead of hanging it
LINE_TIMEOUT = 20.0  # how long a line the CLI should have flushed may take to show up (start-up included)


def cli_command(*args: str) -> list[str]:
    """The command line that runs `dottxt ARGS` with this interpreter."""
    return [sys.executable, "-m", "dottxt", *args]


def run_cli(command: list[str], env: dict[str, str], stdin: str | None) -> tuple[int, str, str]:
    """Run `command` to its end, `stdin` as its input (None: /dev/null); its exit status, stdout and stderr."""
    result = subprocess.run(
        command,
        input=stdin.encode() if stdin is not None else None,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        env=env,
        timeout=TIMEOUT,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def read_until(stream: IO[bytes], marker: bytes, timeout: float = LINE_TIMEOUT, *, eof_ok: bool = False) -> bytes:
    """Bytes from a pipe until `marker` has arrived, waiting at most `timeout`.

    The pipe closing first is an AssertionError, unless `eof_ok`: then what came before it is returned.
    """
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while marker not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no {marker!r} within {timeout} s (got {data!r})")
            piece = os.read(fd, 65536)
            if not piece:
                if eof_ok:
                    break
                raise AssertionError(f"the output ended before {marker!r} (got {data!r})")
            data += piece
    return data


def read_line(stream: IO[bytes], timeout: float = LINE_TIMEOUT) -> bytes:
    """Bytes from a pipe up to and including the first newline (or all of them, if it closes first)."""
    return read_until(stream, b"\n", timeout, eof_ok=True)
