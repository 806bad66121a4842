"""Which certificates this deployment manages (issue 11, item 2).

A certificate is managed by a deployment when ACM has it tagged ``acm-cert-rollout=<value>``,
``<value>`` being the stack's ManagedCertificateTag parameter. Two places enforce it:

* IAM: the ExportCertificate function's role may call ``acm:ExportCertificate`` only with the
  condition ``StringEquals aws:ResourceTag/acm-cert-rollout = ManagedCertificateTag``
  (template.yaml, statement ExportManagedCertificatesOnly; ACM's certificate resource honours
  ``aws:ResourceTag/${TagKey}``, service authorization reference);
* code: ValidateEvent reads the certificate's tags (ListTagsForCertificate) and rejects an
  unmanaged certificate with CertificateNotManaged before anything is exported.

The key is fixed (a condition key cannot take its tag key from a parameter), the value is the
deployment's; tests/unit/test_managed_scope.py ties MANAGED_TAG_KEY to the template.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import RolloutError

__all__ = ["DEFAULT_MANAGED_TAG", "MANAGED_TAG_KEY", "CertificateNotManaged", "unmanaged_reason"]

MANAGED_TAG_KEY = "acm-cert-rollout"
# template.yaml ManagedCertificateTag's default (tests/unit/test_managed_scope.py).
DEFAULT_MANAGED_TAG = "managed"


class CertificateNotManaged(RolloutError):
    """The certificate is not tagged ``acm-cert-rollout=<ManagedCertificateTag>``: this
    deployment neither exports nor installs it (IAM would deny the export anyway)."""


def unmanaged_reason(tags: Mapping[str, str], managed_value: str) -> str | None:
    """Why a certificate with ``tags`` (ACM tag key -> value; a tag without a value has "") is
    not managed by the deployment whose ManagedCertificateTag is ``managed_value``, or None when
    it is. Tag keys and values compare exactly (IAM StringEquals is case-sensitive)."""
    if MANAGED_TAG_KEY not in tags:
        return f"it has no tag {MANAGED_TAG_KEY}"
    if tags[MANAGED_TAG_KEY] != managed_value:
        return f"its tag {MANAGED_TAG_KEY} is {tags[MANAGED_TAG_KEY]!r}, this deployment manages {managed_value!r}"
    return None
