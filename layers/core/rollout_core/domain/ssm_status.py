"""Classify SSM Run Command invocation status (D3).

Source: AWS Systems Manager API Reference, "GetCommandInvocation" (response elements
``Status``, ``StatusDetails``, ``ResponseCode``) and the Systems Manager User Guide page
"Understanding command statuses".

* ``Status`` is one of ``Pending | InProgress | Delayed | Success | Cancelled | TimedOut |
  Failed | Cancelling``.
* ``StatusDetails`` is finer: ``Pending``, ``In Progress``, ``Delayed``, ``Success``,
  ``Delivery Timed Out``, ``Execution Timed Out``, ``Failed``, ``Canceled`` (one L),
  ``Undeliverable``, ``Terminated``.
* ``ResponseCode`` is the script's exit code; ``-1`` means "not yet executed / not
  applicable", and it may be absent (moto, plugins without exit code).

Decisions (documented, tested):

* ``StatusDetails`` wins when it names a specific terminal cause, because ``Status``
  folds several causes together (e.g. an undeliverable invocation is not a script
  failure, and must not be reported as "command failed").
* ``Delivery Timed Out``, ``Execution Timed Out`` and ``TimedOut`` -> TIMED_OUT.
* ``Undeliverable`` (node missing, stopped, agent not responding) and ``Terminated``
  (the system cancelled the invocation before it ran on this node because the parent
  command exceeded MaxErrors) -> UNDELIVERABLE: in both cases the install never ran on
  this target; retry or fix the node. Operator/API cancellation stays CANCELLED.
* ``Cancelling`` -> CANCELLED: the cancellation was requested; the install result is
  not trustworthy, so we stop polling.
* ``Status`` is authoritative for success: ``Success`` is SUCCEEDED whatever the
  response code (-1 or missing included); a missing response code is never a failure.
* ``InvocationDoesNotExist`` right after SendCommand is transient (the invocation is
  not registered yet): see :func:`is_transient_invocation_error`.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import UnknownCommandStatus

__all__ = [
    "INSTALLER_REASONS",
    "CommandState",
    "installer_reason",
    "classify_invocation",
    "is_transient_invocation_error",
    "TRANSIENT_INVOCATION_ERRORS",
]


class CommandState(StrEnum):
    """Outcome class of one SSM command invocation on one node."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    UNDELIVERABLE = "UNDELIVERABLE"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True for every state except PENDING (polling stops)."""
        return self is not CommandState.PENDING


def _norm(value: str | None) -> str:
    return "".join(ch for ch in (value or "").casefold() if ch.isalnum())


# Normalized (casefolded, no spaces/underscores) Status/StatusDetails -> state.
_SPECIFIC_DETAILS: dict[str, CommandState] = {
    "deliverytimedout": CommandState.TIMED_OUT,
    "executiontimedout": CommandState.TIMED_OUT,
    "undeliverable": CommandState.UNDELIVERABLE,
    "terminated": CommandState.UNDELIVERABLE,
}

_STATUS: dict[str, CommandState] = {
    "pending": CommandState.PENDING,
    "inprogress": CommandState.PENDING,
    "delayed": CommandState.PENDING,
    "success": CommandState.SUCCEEDED,
    "failed": CommandState.FAILED,
    "cancelled": CommandState.CANCELLED,
    "canceled": CommandState.CANCELLED,
    "cancelling": CommandState.CANCELLED,
    "canceling": CommandState.CANCELLED,
    "timedout": CommandState.TIMED_OUT,
    **_SPECIFIC_DETAILS,
}

#: Error codes of GetCommandInvocation that mean "not registered yet, poll again".
TRANSIENT_INVOCATION_ERRORS = frozenset({"InvocationDoesNotExist"})


def classify_invocation(
    status: str, status_details: str | None = None, response_code: int | None = None
) -> CommandState:
    """Map GetCommandInvocation's (Status, StatusDetails, ResponseCode) to a :class:`CommandState`.

    Shapes: ``("InProgress", "In Progress", -1)`` -> PENDING; ``("Success", "Success", 0)``,
    ``("Success", None, None)`` and ``("Success", "Success", -1)`` -> SUCCEEDED;
    ``("Failed", "Failed", 2)`` -> FAILED; ``("TimedOut", "Delivery Timed Out", -1)`` ->
    TIMED_OUT; ``("Failed", "Undeliverable", -1)`` -> UNDELIVERABLE; ``("Cancelled",
    "Canceled", -1)`` -> CANCELLED. Matching ignores case, spaces and underscores.

    ``response_code`` is informational only (see module docstring); it never turns a
    Success into a failure, and its absence never makes a failure.
    Raises :class:`UnknownCommandStatus` (quoting the public status strings) when neither
    value is a known status. Source: AWS Systems Manager API Reference,
    GetCommandInvocation; User Guide, "Understanding command statuses".
    """
    del response_code  # documented as informational; kept in the signature for callers
    detail = _norm(status_details)
    if detail in _SPECIFIC_DETAILS:
        return _SPECIFIC_DETAILS[detail]
    main = _norm(status)
    if main in _STATUS:
        return _STATUS[main]
    if detail in _STATUS:
        return _STATUS[detail]
    raise UnknownCommandStatus(
        f"unknown SSM command invocation status {status!r} (StatusDetails {status_details!r})"
    )


def is_transient_invocation_error(error_code: str | None) -> bool:
    """True for GetCommandInvocation error codes that mean "poll again" (D3).

    ``InvocationDoesNotExist`` is returned for a short while right after SendCommand,
    before the invocation is registered; it is not a failure (bounded polling still
    ends in TIMED_OUT if it persists). Source: AWS Systems Manager API Reference,
    GetCommandInvocation, Errors.
    """
    return error_code in TRANSIENT_INVOCATION_ERRORS


#: The installer's named failure reasons (ROLLOUT_RESULT "reason", installer/install_bundle.py
#: and the document's bootstrap, documents/install-bundle.ssm.yaml) -> whether the target's
#: files may have changed (so a restore attempt is due). False: nothing changed, or the
#: installer itself restored the old set before it answered.
INSTALLER_REASONS: dict[str, bool] = {
    "installer-unavailable": False,        # exit 14, bootstrap: nothing ran
    "installer-checksum-mismatch": False,  # exit 15, bootstrap: nothing ran
    "installer-killed": True,              # exit 128+N: killed mid-way; the next command recovers first
    "lock-timeout": False,                 # exit 16: another install/rollback of the target held the lock
    "older-than-installed": False,         # exit 17: the serial guard (notBefore) refused the bundle
    "state-dir-unsafe": False,             # exit 18: the node's state directory is not the installer's own
    "recovery-failed": True,               # exit 18: an interrupted change could not be rolled back
    "key-mismatch": False,                 # exit 12: cert/key pair refused before reload; old set kept
    "backup-key-mismatch": False,          # exit 20: rollback refused a mismatched backup; files left
    "no-backup": False,                    # exit 20: rollback found no backup
    "node-policy-denied": False,           # exit 19: the node's policy refused a path, mode or command
    "node-policy-invalid": False,          # exit 21: the node's policy file cannot be used
    "bundle-credentials-missing": False,   # exit 13: the node has no credentials to fetch the bundle
    "bundle-access-denied": False,         # exit 13: Secrets Manager refused the node's credentials
    "bundle-endpoint-unreachable": False,  # exit 13: no connection to the Secrets Manager endpoint
    "bundle-fetch-failed": False,          # exit 13: any other fetch failure (secret gone, bad answer)
    "openssl-missing": False,              # exit 22: an encrypted-key/pkcs12 file needs openssl
    "command-missing": False,              # exit 22: the test or reload command's program is missing
    "python-missing": False,               # exit 22, bootstrap: no python3 on the node's PATH
    "python-too-old": False,               # exit 22, bootstrap: python3 older than 3.8
    # Action check only (the preflight of `cert-rollout nodes check`, which touches nothing):
    "files-not-writable": False,           # exit 12: a target file's directory is missing or not writable
    "test-failed": False,                  # exit 10: the test command ran and failed
}


def installer_reason(result: dict[str, object] | None) -> tuple[str | None, bool]:
    """(named reason, files may have changed) of an installer's ROLLOUT_RESULT dict.

    ``({"reason": "older-than-installed", ...})`` -> ``("older-than-installed", False)``;
    ``({"reason": "installer-killed"})`` -> ``("installer-killed", True)``; no result line
    (the command died without one) -> ``(None, True)``; a failure without a known reason ->
    ``(None, False)``: the installer restores after a failed test or reload itself.
    Source: INSTALLER_REASONS above.
    """
    if result is None:
        return None, True
    reason = result.get("reason")
    if isinstance(reason, str) and reason in INSTALLER_REASONS:
        return reason, INSTALLER_REASONS[reason]
    return None, False
