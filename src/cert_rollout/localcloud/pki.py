"""A private CA and ACM private certificates for the local cloud (stands in for AWS Private CA
issuing through ACM, and for ACM's managed renewal).

moto's ACM issues "private" certificates that its CA never signed, and has no
RenewCertificate. Here the CA is moto's ACM-PCA (root + subordinate, which really sign), each
ACM certificate's key pair is generated as ACM would (RSA_2048 ... EC_secp384r1) and its
certificate issued by the subordinate CA, and the chain ACM exports is subordinate + root.
Renewal issues a new certificate (new key, new serial, real signature) under the same ARN.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from rollout_core.domain.arns import build_arn, partition_for_region
from rollout_core.domain.managed import MANAGED_TAG_KEY

if TYPE_CHECKING:
    from cert_rollout.localcloud.cloud import ServiceName

KEY_ALGORITHMS = ("RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1")


def generate_key(algorithm: str) -> Any:
    """A private key of one of ACM's KeyAlgorithm values."""
    if algorithm.startswith("RSA_"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    curves = {"EC_prime256v1": ec.SECP256R1(), "EC_secp384r1": ec.SECP384R1()}
    if algorithm not in curves:
        raise ValueError(f"key_algorithm must be one of {', '.join(KEY_ALGORITHMS)}, not {algorithm!r}")
    return ec.generate_private_key(curves[algorithm])


class LocalPrivateCA:
    """Root and subordinate CA in moto's ACM-PCA, and ACM certificates issued by them."""

    def __init__(self, client: Callable[[ServiceName], Any], region: str, account_id: str, name: str = "Local Private",
                 on_key: Callable[[bytes], None] | None = None, managed_tag: str | None = None) -> None:
        """``managed_tag``: the deployment's ManagedCertificateTag; every certificate requested is
        tagged acm-cert-rollout=<it> (rollout_core.domain.managed), None: untagged."""
        self.client = client
        self.managed_tag = managed_tag
        self.on_key = on_key
        self.region = region
        self.account_id = account_id
        self._lock = threading.Lock()
        pca = client("acm-pca")
        partition = partition_for_region(region)
        self.root_arn, root_pem = self._make_ca(pca, partition, "ROOT", f"{name} Root CA", None, None)
        self.sub_arn, sub_pem = self._make_ca(pca, partition, "SUBORDINATE", f"{name} Issuing CA", self.root_arn,
                                              root_pem)
        self.root_pem, self.sub_pem = root_pem, sub_pem
        self.chain_pem = sub_pem.strip() + "\n" + root_pem.strip() + "\n"

    @staticmethod
    def _make_ca(pca: Any, partition: str, kind: str, common_name: str, parent: str | None,
                 parent_pem: str | None) -> tuple[str, str]:
        arn = pca.create_certificate_authority(
            CertificateAuthorityConfiguration={"KeyAlgorithm": "RSA_2048", "SigningAlgorithm": "SHA256WITHRSA",
                                               "Subject": {"CommonName": common_name, "Organization": "Example"}},
            CertificateAuthorityType=kind)["CertificateAuthorityArn"]
        csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
        # AWS would use SubordinateCACertificate_PathLen0/V1 for the subordinate; moto applies CA
        # extensions (CA:TRUE, keyCertSign) only for RootCACertificate/V1, so that one is used.
        template = build_arn(partition, "acm-pca", "", "", "template/RootCACertificate/V1")
        signer = parent or arn
        cert_arn = pca.issue_certificate(CertificateAuthorityArn=signer, Csr=csr, SigningAlgorithm="SHA256WITHRSA",
                                         TemplateArn=template, Validity={"Value": 3650, "Type": "DAYS"})["CertificateArn"]
        issued = pca.get_certificate(CertificateAuthorityArn=signer, CertificateArn=cert_arn)
        kwargs = {"CertificateChain": parent_pem} if parent_pem else {}
        pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=issued["Certificate"], **kwargs)
        return arn, issued["Certificate"]

    def _issue(self, domain: str, sans: list[str], key: Any) -> str:
        names = [x509.DNSName(n) for n in dict.fromkeys([domain, *sans])]
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .sign(key, hashes.SHA256()))
        pca = self.client("acm-pca")
        arn = pca.issue_certificate(CertificateAuthorityArn=self.sub_arn, Csr=csr.public_bytes(serialization.Encoding.PEM),
                                    SigningAlgorithm="SHA256WITHRSA",
                                    Validity={"Value": 395, "Type": "DAYS"})["CertificateArn"]
        return pca.get_certificate(CertificateAuthorityArn=self.sub_arn, CertificateArn=arn)["Certificate"]

    def request_certificate(self, domain: str, sans: list[str], key_algorithm: str = "RSA_2048", *,
                            managed: bool = True) -> str:
        """RequestCertificate with this CA (PRIVATE, exportable), issued for real; returns the ARN.
        Tagged as managed by the deployment (``managed_tag``) unless ``managed`` is False."""
        tags = ([{"Key": MANAGED_TAG_KEY, "Value": self.managed_tag}]
                if managed and self.managed_tag is not None else [])
        arn = self.client("acm").request_certificate(
            DomainName=domain, SubjectAlternativeNames=list(dict.fromkeys([domain, *sans])),
            CertificateAuthorityArn=self.sub_arn, KeyAlgorithm=key_algorithm,
            Options={"Export": "ENABLED"}, **({"Tags": tags} if tags else {}))["CertificateArn"]
        self._reissue(arn, domain, sans, key_algorithm, renewal=False)
        return arn

    def renew(self, arn: str) -> str:
        """ACM managed renewal of a private certificate: a new key pair and certificate, same ARN.

        Returns the new serial (decimal string, as moto's DescribeCertificate shows it)."""
        bundle = self._bundle(arn)
        return self._reissue(arn, bundle.common_name, list(bundle.sans), bundle._local_key_algorithm, renewal=True)

    def _bundle(self, arn: str) -> Any:
        from moto.acm.models import acm_backends

        return acm_backends[self.account_id][self.region].get_certificate(arn)

    def _reissue(self, arn: str, domain: str, sans: list[str], key_algorithm: str, renewal: bool) -> str:
        key = generate_key(key_algorithm)
        cert_pem = self._issue(domain, sans, key)
        with self._lock:
            bundle = self._bundle(arn)
            bundle.cert = cert_pem.encode()
            bundle.key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
            bundle._key = key
            if self.on_key:
                self.on_key(bundle.key)
            bundle._cert = x509.load_pem_x509_certificate(bundle.cert)
            bundle.chain = self.chain_pem.encode()
            bundle.issuer_common_name = self.sub_pem and "Local Private Issuing CA"
            bundle.common_name = domain
            bundle.sans = list(dict.fromkeys([domain, *sans]))
            bundle.type = "PRIVATE"
            bundle.status = "ISSUED"
            bundle._local_key_algorithm = key_algorithm
            bundle._local_renewal = ({"RenewalStatus": "SUCCESS", "DomainValidationOptions": [],
                                      "UpdatedAt": datetime.now(UTC).timestamp()} if renewal else None)
            bundle.created_at = datetime.now(UTC).replace(tzinfo=None)
            return str(bundle._cert.serial_number)

    def adopt_arn(self, arn: str, wanted_arn: str) -> None:
        """Move a certificate to ``wanted_arn`` (same account and region): lets sample events
        that name a fixed certificate ARN refer to a real one (cert-rollout invoke)."""
        from moto.acm.models import acm_backends

        backend = acm_backends[self.account_id][self.region]
        with self._lock:
            bundle = backend._certificates.pop(arn)
            bundle.arn = wanted_arn
            backend._certificates[wanted_arn] = bundle

    def fail_renewal(self, arn: str, reason: str = "PCA_ACCESS_DENIED") -> None:
        """Mark the certificate's renewal as failed (what ACM shows after AWS_ACM_RENEWAL_FAILURE)."""
        with self._lock:
            bundle = self._bundle(arn)
            bundle._local_renewal = {"RenewalStatus": "FAILED", "RenewalStatusReason": reason,
                                     "UpdatedAt": datetime.now(UTC).timestamp()}

    def current(self, arn: str) -> tuple[str, str, bytes]:
        """(certificate PEM, chain PEM, plain private key PEM) as the local cloud holds them.

        For the local targets' *initial* install only: the old certificate the operator had
        exported and installed before this product took over."""
        bundle = self._bundle(arn)
        return bundle.cert.decode(), bundle.chain.decode(), bundle.key
