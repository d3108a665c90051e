"""The embedded server's API key: explicit, from the environment, or kept on disk."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

API_KEY_ENV = "TILED_API_KEY"
_VALID = re.compile(r"[A-Za-z0-9]+")


def _check(key: str, origin: str) -> str:
    if not _VALID.fullmatch(key):
        raise ValueError(f"the Tiled API key from {origin} must be letters and digits only")
    return key


def load_or_create_api_key(path: Path, api_key: str | None = None) -> str:
    """Return the API key for an embedded server whose data directory holds ``path``.

    Parameters
    ----------
    path : Path
        Key file; created with permissions 0600 when no key is given or stored.
    api_key : str, optional
        Explicit key; wins over ``$TILED_API_KEY`` and the file.

    Returns
    -------
    str
        The key clients must present to read or write.
    """
    if api_key:
        return _check(api_key, "the api_key argument")
    if env_key := os.environ.get(API_KEY_ENV):
        return _check(env_key, f"${API_KEY_ENV}")
    if path.exists():
        return _check(path.read_text().strip(), str(path))
    key = secrets.token_hex(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + mode: the key is never world-readable, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key
