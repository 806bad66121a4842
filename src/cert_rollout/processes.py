"""Process checks shared by the local cloud's server handles and `local up` / `local down`
(standard library only, so the CLI starts without importing the local cloud)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: False when it is gone or a zombie (ended, not yet reaped:
    state Z or X in /proc/PID/stat), True when it exists, also when it is another user's."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
