"""Files the service keeps on disk (embedded database, Redis dump, secret) are its owner's alone."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path


def owner_only(path: Path) -> None:
    """chmod 0600 an existing file of this user that others can read (left by an older run)."""
    with suppress(FileNotFoundError):
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            path.chmod(0o600)
