"""Named errors of acm-cert-rollout.

Every error the project raises on purpose is a :class:`RolloutError` subclass, so a
Lambda handler can turn it into a Step Functions error name (``error.code``, the class
name) and a message an operator can act on.

Security rule (DESIGN.md, "Hard rules"): exception messages NEVER contain private key
material or export passphrases. Messages name the rule that was broken, the field, the
position in a bundle or the certificate subject/serial (all public data), never a
secret. As defence in depth, :class:`RolloutError` redacts anything that looks like a
PEM block or text-form key material from its message before storing it.
"""

from __future__ import annotations

import re

from .key_text import redact_key_text

__all__ = [
    "RolloutError",
    "ConfigurationError",
    "MalformedEvent",
    "UnsupportedEvent",
    "MissingCertificateArn",
    "ForeignCertificate",
    "InvalidPassphrase",
    "KeyDecryptionFailed",
    "ExportMismatch",
    "MalformedPem",
    "InvalidBundle",
    "InvalidSerial",
    "UnknownCommandStatus",
    "redact",
]

# A PEM block (complete, or a BEGIN line with whatever follows it) is redacted from
# every message: a certificate is public, but a private key is not, and a message
# builder cannot always tell which one it was handed.
_PEM_BLOCK = re.compile(r"-----BEGIN [^-\r\n]*-----.*?(?:-----END [^-\r\n]*-----|\Z)", re.DOTALL)


def redact(text: str) -> str:
    """Return ``text`` with every PEM block (or dangling PEM BEGIN..end-of-text) replaced.

    Shapes: str -> str; ``"-----BEGIN X-----...-----END X-----"`` becomes
    ``"[PEM block redacted]"``; text-form key material (openssl ``-text`` colon-hex blocks,
    colon-hex runs of 24 bytes or more) becomes ``"[redacted key text]"``
    (:func:`rollout_core.domain.key_text.redact_key_text`). Never raises. Rule source: DESIGN.md hard rules
    (no key material in exception messages).
    """
    return redact_key_text(_PEM_BLOCK.sub("[PEM block redacted]", text))


class RolloutError(Exception):
    """Base class of every named error of the project.

    ``code`` is the class name; handlers use it as the Step Functions error name so a
    state machine ``Catch``/``Retry`` can match it. The message is redacted of PEM
    blocks on construction (see :func:`redact`).
    """

    def __init__(self, message: str = "") -> None:
        self.message: str = redact(str(message))
        super().__init__(self.message)

    @property
    def code(self) -> str:
        """The error name used in Step Functions (the class name, e.g. ``"InvalidBundle"``)."""
        return type(self).__name__

    def __str__(self) -> str:
        return self.message


class ConfigurationError(RolloutError):
    """The deployment's own configuration (region, account id, ...) is invalid."""


class MalformedEvent(RolloutError):
    """The input event is not JSON, lacks a required field or has a field of the wrong shape."""


class UnsupportedEvent(RolloutError):
    """A well-formed event this product does not act on (other source, detail-type, action...)."""


class MissingCertificateArn(MalformedEvent):
    """The event carries no certificate ARN (neither in ``resources`` nor ``affectedEntities``)."""


class ForeignCertificate(RolloutError):
    """The certificate ARN belongs to another region or account than the deployment."""


class InvalidPassphrase(RolloutError):
    """An export passphrase breaks the ACM ExportCertificate rule (message states the rule)."""


class KeyDecryptionFailed(RolloutError):
    """The exported private key could not be loaded/decrypted (wrong passphrase, bad format)."""


class ExportMismatch(RolloutError):
    """The exported private key does not belong to the exported certificate (K2)."""


class MalformedPem(RolloutError):
    """Text that should be PEM is not (no block, unterminated block, bad base64...)."""


class InvalidBundle(RolloutError):
    """A certificate bundle breaks K5: order, missing issuer, bad signature, key mismatch."""


class InvalidSerial(RolloutError):
    """A certificate serial number could not be parsed (the value is public and is quoted)."""


class UnknownCommandStatus(RolloutError):
    """SSM returned a command invocation status this code does not know (D3)."""
