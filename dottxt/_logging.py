"""The SDK's logging on stderr, key blanked out: `DOTTXT_LOG=debug|info` (as `OPENAI_LOG`), and `dottxt --verbose`.

`info` shows what the SDK itself reports (each client made, retries); `debug` adds urllib3's
connection and request lines. Without the variable nothing is configured, so an application's
own logging setup is left alone. Standard library only, so the CLI can import it at start-up.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from ._errors import redact

__all__ = ["LOG_ENV", "RedactingFilter", "redactor", "enable", "log_from_env"]

#: The environment variable that turns the SDK's logging on.
LOG_ENV = "DOTTXT_LOG"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_HANDLER_NAME = "dottxt-log"
_FORMAT = "[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s"

log = logging.getLogger("dottxt")


class RedactingFilter(logging.Filter):
    """Blanks every registered secret (API keys) out of a log record's text before any handler prints it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = redact(text, secret)
        record.msg, record.args = text, None
        return True


#: The one filter every handler installed here carries; register a key with `redactor.secrets.add(key)`.
redactor = RedactingFilter()


def enable(
    level: int, *, stream: TextIO | None = None, fmt: str = _FORMAT, stamp: logging.Filter | None = None
) -> None:
    """Log the SDK ("dottxt") at `level` to `stream` (stderr), and urllib3 too at DEBUG; keys redacted.

    Idempotent: calling it again (a second client, `--verbose` on top of DOTTXT_LOG) replaces
    the handler instead of adding one, so no line is printed twice.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(redactor)
    if stamp is not None:  # a filter adding a field the format uses (the CLI's time since start)
        handler.addFilter(stamp)
    for name in ("dottxt", "urllib3") if level <= logging.DEBUG else ("dottxt",):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
            logger.removeHandler(old)
        logger.setLevel(level)
        logger.addHandler(handler)


def log_from_env(api_key: str, description: str) -> None:
    """Called by each client made: turn logging on when DOTTXT_LOG says so, and say which client it is."""
    level = _LEVELS.get(os.environ.get(LOG_ENV, "").strip().lower())
    if level is None:
        return
    redactor.secrets.add(api_key)
    if not any(h.get_name() == _HANDLER_NAME for h in log.handlers):
        enable(level)
    log.info("client made: %s", description)
