"""Writing a file so that a reader never sees half of it: `atomic_write`.

Used for checkpoints (written again at every evaluation of a training run) and for the app's
offline HTML report: an interrupted write leaves the previous file, or none, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write `path` atomically: `write(tmp)` fills a temporary file in the same folder, which then
    replaces `path` in one rename (the folder must exist). The file gets the permissions
    open() would give it (mkstemp's own are 0600). If `write` raises, the temporary file is
    removed and `path` is left as it was. Returns path as a Path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
