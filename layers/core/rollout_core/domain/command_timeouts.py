"""How the install document's execution timeout is split into per-subprocess timeouts.

The document (documents/install-bundle.ssm.yaml) runs for at most ExecutionTimeout seconds
(the stack's CommandTimeoutSeconds); SSM kills the script after that. On the node, the
installer download and every subprocess (aws, openssl, the config test, the reload) get
CommandTimeout seconds each (installer/install_bundle.py, ROLLOUT_COMMAND_TIMEOUT).

Rule: CommandTimeout = ExecutionTimeout // 5, at least 1. The common install is five bounded
steps in a row: download, secret fetch, test, reload and, when the reload fails, the reload
after the files are restored. Once the files are swapped in, up to 3 x CommandTimeout (test,
reload, reload after restore) may still be needed; the installer checks before the swap that
this much (plus 1 s) is left of ExecutionTimeout and otherwise stops with nothing changed,
so SSM's kill can never land between a failed reload and the restore.
A verifyFrom-node target's probe after a successful reload takes the slot of the reload after
restore (that path is not taken then): at most one CommandTimeout, and never past
ExecutionTimeout less the restore margin (installer/install_bundle.py node_probe_deadline).
"""

from __future__ import annotations

STEPS_PER_EXECUTION = 5
#: ExecutionTimeout's bounds: the template's CommandTimeoutSeconds MinValue / MaxValue.
MIN_EXECUTION_TIMEOUT = 5
MAX_EXECUTION_TIMEOUT = 3600


def subprocess_timeout_seconds(execution_timeout_seconds: int) -> int:
    """Seconds for each download or subprocess on the node, from the document's execution
    timeout (seconds, 5..3600): ``execution_timeout_seconds // 5``, at least 1.

    Raises ValueError for an execution timeout outside 5..3600 (the template's bounds).
    """
    if not MIN_EXECUTION_TIMEOUT <= execution_timeout_seconds <= MAX_EXECUTION_TIMEOUT:
        raise ValueError(f"execution timeout must be {MIN_EXECUTION_TIMEOUT}..{MAX_EXECUTION_TIMEOUT} "
                         f"seconds, got {execution_timeout_seconds}")
    return max(1, execution_timeout_seconds // STEPS_PER_EXECUTION)
