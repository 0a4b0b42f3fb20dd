"""Where `dottxt login` keeps the API key: `$XDG_CONFIG_HOME/dottxt/credentials.json`, mode 0600.

Read only when it is a regular file (a FIFO there must not hang `DotTxt()`), with a warning when
others can open it, as ssh warns; written through a new file of our own (never through a planted link).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import warnings
from pathlib import Path

__all__ = ["credentials_path", "load_api_key", "save_api_key", "delete_api_key"]

#: More than any credentials file holds; a larger regular file is not read past this.
_MAX_BYTES = 64 * 1024


def credentials_path() -> Path:
    """The credentials file: under `$XDG_CONFIG_HOME`, or `~/.config` when that is unset or empty."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "dottxt" / "credentials.json"


def load_api_key() -> str | None:
    """The stored key, or None when there is no readable credentials file holding one.

    ValueError (naming the path) when something other than a regular file is there;
    a UserWarning when the file is open to other users.
    """
    path = credentials_path()
    try:
        # O_NONBLOCK: opening a FIFO returns at once; what was opened is checked before anything is read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise _not_a_file(path) from None
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _not_a_file(path)
    with os.fdopen(fd, "rb") as handle:
        if info.st_mode & 0o077:
            warnings.warn(
                f"the credentials file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run `chmod 600 {path}`",
                UserWarning,
                stacklevel=4,
            )
        text = handle.read(_MAX_BYTES)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    key = data.get("api_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else None


def _not_a_file(path: Path) -> ValueError:
    return ValueError(f"the credentials path {path} is not a regular file; remove it, or run `dottxt login`")


def save_api_key(api_key: str) -> Path:
    """Store the key, creating the file with mode 0600 from the start (never readable by others).

    It is written to a new file of our own (O_EXCL|O_NOFOLLOW, an unpredictable name) that then
    replaces the old one: a link planted at either path is never written through.
    """
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"api_key": api_key}, handle)
            handle.write("\n")
        _make_private(tmp)  # mkstemp makes it 0600 already; make sure (a failure there is tolerated)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _make_private(path: Path) -> None:
    """chmod 0600, as a second guard: O_CREAT's 0600 already kept others out (umask only takes bits away).

    Some file systems refuse chmod (a FAT USB stick, some network mounts); the key is stored all the same.
    """
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass


def delete_api_key() -> bool:
    """Delete the stored key; False when nothing was stored."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True
