"""A small private PKI for tests: root -> intermediate -> leaf (2 SANs), per key algorithm.

Every key algorithm ACM/AWS Private CA uses for private certificates in this project is
covered: RSA_2048, RSA_3072, RSA_4096, EC_prime256v1, EC_secp384r1. Generation is cached
for the whole test session (``functools.cache``), so the RSA-4096 keys are made once.
Nothing here talks to AWS.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

ALGORITHMS = ("RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1")
LEAF_SANS = ("web.internal.example", "web-2.internal.example")
NOW = dt.datetime(2026, 11, 28, 6, 0, 0, tzinfo=dt.UTC)


def make_key(algorithm: str) -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key for an ACM KeyAlgorithm name."""
    if algorithm.startswith("RSA_"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    curves = {"EC_prime256v1": ec.SECP256R1(), "EC_secp384r1": ec.SECP384R1()}
    return ec.generate_private_key(curves[algorithm])


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def make_certificate(
    *,
    subject_cn: str,
    public_key: CertificatePublicKeyTypes,
    issuer_cn: str,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    ca: bool,
    serial: int | None = None,
    sans: tuple[str, ...] = (),
    days: int = 395,
    path_length: int | None = None,
    issuer_name: x509.Name | None = None,
) -> x509.Certificate:
    """Sign a certificate (CA or leaf) with ``issuer_key``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject_cn))
        .issuer_name(issuer_name or _name(issuer_cn))
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if sans:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, _hash_for(issuer_key))


@dataclass(frozen=True)
class Pki:
    """Root, intermediate and leaf of one key algorithm, plus ACM-like PEM exports."""

    algorithm: str
    root_key: CertificateIssuerPrivateKeyTypes
    root_cert: x509.Certificate
    intermediate_key: CertificateIssuerPrivateKeyTypes
    intermediate_cert: x509.Certificate
    leaf_key: CertificateIssuerPrivateKeyTypes
    leaf_cert: x509.Certificate

    @property
    def leaf_pem(self) -> str:
        """ACM ExportCertificate ``Certificate``."""
        return to_pem(self.leaf_cert)

    @property
    def intermediate_pem(self) -> str:
        return to_pem(self.intermediate_cert)

    @property
    def root_pem(self) -> str:
        return to_pem(self.root_cert)

    @property
    def served(self) -> tuple[x509.Certificate, x509.Certificate]:
        """What a well-configured server sends: the leaf, then the intermediate."""
        return (self.leaf_cert, self.intermediate_cert)

    @property
    def chain_pem(self) -> str:
        """ACM ExportCertificate ``CertificateChain``: intermediate then root."""
        return self.intermediate_pem + self.root_pem

    def encrypted_key_pem(self, passphrase: bytes) -> str:
        """ACM ExportCertificate ``PrivateKey``: encrypted PKCS#8 PEM."""
        return self.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        ).decode("ascii")

    def plain_key_pem(self) -> str:
        return self.leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@functools.cache
def pki(algorithm: str = "RSA_2048", label: str = "main") -> Pki:
    """The cached PKI of ``algorithm``; ``label`` gives an independent second PKI."""
    root_key = make_key(algorithm)
    root_cn = f"Example {label} Root CA {algorithm}"
    root = make_certificate(
        subject_cn=root_cn,
        public_key=root_key.public_key(),
        issuer_cn=root_cn,
        issuer_key=root_key,
        ca=True,
        path_length=1,
        days=3650,
    )
    int_key = make_key(algorithm)
    int_cn = f"Example {label} Issuing CA {algorithm}"
    intermediate = make_certificate(
        subject_cn=int_cn,
        public_key=int_key.public_key(),
        issuer_cn=root_cn,
        issuer_key=root_key,
        ca=True,
        path_length=0,
        days=1825,
    )
    leaf_key = make_key(algorithm)
    leaf = make_certificate(
        subject_cn=LEAF_SANS[0],
        public_key=leaf_key.public_key(),
        issuer_cn=int_cn,
        issuer_key=int_key,
        ca=False,
        sans=LEAF_SANS,
    )
    return Pki(algorithm, root_key, root, int_key, intermediate, leaf_key, leaf)


@functools.cache
def other_key(algorithm: str = "RSA_2048") -> CertificateIssuerPrivateKeyTypes:
    """A cached key of ``algorithm`` that belongs to no certificate of :func:`pki`."""
    return make_key(algorithm)


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> str:
    """Plain PKCS#8 PEM of a key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def openssl_pkcs8(plain_pem: str, passphrase: bytes, tmp_path: Path, *, prf: str | None) -> str:
    """Encrypt a plain PKCS#8 key with ``openssl pkcs8 -topk8 -v2 aes-256-cbc [-v2prf PRF]``.

    With ``prf=None`` OpenSSL 3 writes an explicit hmacWithSHA256; ``prf="hmacWithSHA1"``
    (the PKCS#5 default PRF) is omitted from the DER: that is "PBES2 without explicit PRF".
    """
    openssl = shutil.which("openssl")
    assert openssl, "openssl not installed"
    src = tmp_path / "plain.pem"
    src.write_text(plain_pem)
    pass_file = tmp_path / "pass.txt"
    pass_file.write_bytes(passphrase)  # no newline: openssl file: reads the first line
    cmd = [openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(src), "-passout", f"file:{pass_file}"]
    if prf:
        cmd += ["-v2prf", prf]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def openssl_asn1parse(pem_text: str, tmp_path: Path) -> str:
    """``openssl asn1parse`` of a PEM file (to see whether a PRF OID is present)."""
    path = tmp_path / "asn1.pem"
    path.write_text(pem_text)
    return subprocess.run(
        [shutil.which("openssl") or "openssl", "asn1parse", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
