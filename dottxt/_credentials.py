"""Where `dottxt login` keeps the API key: `$XDG_CONFIG_HOME/dottxt/credentials.json`, mode 0600."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["credentials_path", "load_api_key", "save_api_key", "delete_api_key"]


def credentials_path() -> Path:
    """The credentials file: under `$XDG_CONFIG_HOME`, or `~/.config` when that is unset or empty."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "dottxt" / "credentials.json"


def load_api_key() -> str | None:
    """The stored key, or None when there is no readable credentials file holding one."""
    try:
        data = json.loads(credentials_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = data.get("api_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else None


def save_api_key(api_key: str) -> Path:
    """Store the key, creating the file with mode 0600 from the start (never readable by others)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"api_key": api_key}, handle)
            handle.write("\n")
        _make_private(tmp)
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
