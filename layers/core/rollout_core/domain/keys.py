"""Export passphrases and private keys (K1-K4).

* K1: the passphrase given to ACM ExportCertificate and the one used to decrypt are the
  same canonical byte string, checked against ACM's rule before export.
* K2: right after export, the key is decrypted and matched to the certificate.
* K3: ACM exports an encrypted PKCS#8 key; servers usually need it decrypted.
* K4: keys and certificates are matched by public key (SubjectPublicKeyInfo), so RSA
  2048/3072/4096 and EC P-256/P-384 behave the same; never by RSA modulus.

Nothing here ever puts a passphrase or key material into an exception message, nor into
an exception chained to it: a refusal is raised after its ``except`` block has ended, so its
``__context__`` is not the low-level error (e.g. a UnicodeEncodeError, whose ``object`` is
the whole passphrase, or a UnicodeDecodeError holding the key's bytes).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from .errors import ExportMismatch, InvalidPassphrase, InvalidSerial, KeyDecryptionFailed
from .serials import canonical_serial

__all__ = [
    "PASSPHRASE_MIN_BYTES",
    "PASSPHRASE_MAX_BYTES",
    "PASSPHRASE_FORBIDDEN",
    "GENERATED_PASSPHRASE_ALPHABET",
    "generate_passphrase",
    "validate_passphrase",
    "decrypt_private_key",
    "private_key_to_pem",
    "public_key_fingerprint",
    "key_algorithm_name",
    "key_matches_certificate",
    "assert_key_matches_certificate",
]

# AWS Certificate Manager API Reference, ExportCertificate, request parameter
# "Passphrase": "Passphrase to associate with the encrypted exported private key. ...
# The passphrase can contain any printable ASCII characters except #, $, or %."
# Length constraints: minimum length of 4, maximum length of 128.
PASSPHRASE_MIN_BYTES = 4
PASSPHRASE_MAX_BYTES = 128
PASSPHRASE_FORBIDDEN = frozenset("#$%")
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))  # space .. '~'

#: Alphabet of generated passphrases: a subset of ACM's allowed set, chosen so the
#: value is also safe unquoted in shells, SSM parameters, URLs and config files
#: (no space, quotes, backslash, '#', '$', '%'). 66 symbols -> ~6.04 bits per byte.
GENERATED_PASSPHRASE_ALPHABET = string.ascii_letters + string.digits + "-_.~"

_RULE = (
    "ACM ExportCertificate passphrase rule: 4-128 bytes of printable ASCII (0x20-0x7E) "
    "without '#', '$' or '%'"
)

_PEM_KEY_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?-----END \1-----", re.DOTALL)
_PEM_ANY_BEGIN = re.compile(r"-----BEGIN ([^-\r\n]*)-----")


def generate_passphrase(length: int = 64) -> bytes:
    """Return a random export passphrase of ``length`` bytes (default 64), ACM-valid.

    Uses :mod:`secrets` (CSPRNG) over :data:`GENERATED_PASSPHRASE_ALPHABET`; 64 bytes
    give ~386 bits of entropy. The result always passes :func:`validate_passphrase`.
    Raises :class:`InvalidPassphrase` when ``length`` is outside 4-128.
    Rule source: AWS ACM API Reference, ExportCertificate, ``Passphrase``.
    """
    if isinstance(length, bool) or not isinstance(length, int):
        raise InvalidPassphrase(f"passphrase length must be an int; {_RULE}")
    if not PASSPHRASE_MIN_BYTES <= length <= PASSPHRASE_MAX_BYTES:
        raise InvalidPassphrase(f"requested passphrase length {length} is outside 4-128 bytes; {_RULE}")
    return "".join(secrets.choice(GENERATED_PASSPHRASE_ALPHABET) for _ in range(length)).encode("ascii")


def validate_passphrase(passphrase: bytes | str) -> bytes:
    """Check a passphrase against ACM's rule and return its one canonical byte string (K1).

    Shapes: ``str`` is encoded as ASCII; ``bytes``/``bytearray`` is kept byte for byte
    (never stripped: a trailing newline is refused, not silently removed, so export and
    decrypt can never disagree). Returns immutable ``bytes``.

    Raises :class:`InvalidPassphrase` naming the broken rule (and the length, never the
    passphrase or its characters) when it is: not str/bytes, non-ASCII, ends with a
    newline/carriage return, contains another control character, contains '#', '$' or
    '%', or is shorter than 4 / longer than 128 bytes.
    Rule source: AWS ACM API Reference, ExportCertificate, request parameter
    ``Passphrase`` ("any printable ASCII characters except #, $, or %", length 4-128).
    """
    if isinstance(passphrase, str):
        if not passphrase.isascii():
            # Checked, not caught: a UnicodeEncodeError would carry the passphrase, and one
            # raised here would become the __context__ of the refusal.
            raise InvalidPassphrase(f"passphrase contains non-ASCII characters; {_RULE}")
        raw = passphrase.encode("ascii")
    elif isinstance(passphrase, (bytes, bytearray)):
        raw = bytes(passphrase)
    else:
        raise InvalidPassphrase(f"passphrase must be bytes or str, got {type(passphrase).__name__}; {_RULE}")

    if any(b > 0x7F for b in raw):
        raise InvalidPassphrase(f"passphrase contains non-ASCII bytes; {_RULE}")
    if raw.endswith((b"\n", b"\r")):
        raise InvalidPassphrase(
            f"passphrase ends with a newline (e.g. read from a file or echo without -n); {_RULE}"
        )
    text = raw.decode("ascii")
    if any(ch not in _PRINTABLE_ASCII for ch in text):
        raise InvalidPassphrase(f"passphrase contains a control character (tab, newline, ...); {_RULE}")
    if any(ch in PASSPHRASE_FORBIDDEN for ch in text):
        raise InvalidPassphrase(f"passphrase contains a forbidden character ('#', '$' or '%'); {_RULE}")
    if len(raw) < PASSPHRASE_MIN_BYTES:
        raise InvalidPassphrase(f"passphrase is {len(raw)} bytes, fewer than 4; {_RULE}")
    if len(raw) > PASSPHRASE_MAX_BYTES:
        raise InvalidPassphrase(f"passphrase is {len(raw)} bytes, more than 128; {_RULE}")
    return raw


def _single_private_key_block(text: str) -> tuple[str, str]:
    blocks = [(m.group(1), m.group(0)) for m in _PEM_KEY_BLOCK.finditer(text)]
    if not blocks:
        labels = sorted({m.group(1) for m in _PEM_ANY_BEGIN.finditer(text)})
        seen = f"PEM labels seen: {', '.join(labels)}" if labels else "no PEM block at all"
        raise KeyDecryptionFailed(f"no complete PEM private key block found ({seen})")
    if len(blocks) > 1:
        raise KeyDecryptionFailed(f"expected exactly one private key block, found {len(blocks)}")
    return blocks[0]


def decrypt_private_key(encrypted_pem: str | bytes, passphrase: bytes | str | None) -> PrivateKeyTypes:
    """Load the private key ACM exported, decrypting it with ``passphrase`` (K2, K3).

    Input: PEM text with exactly one key block (other blocks, e.g. certificates, are
    ignored). Accepted:
    ``ENCRYPTED PRIVATE KEY`` (PKCS#8 EncryptedPrivateKeyInfo, RFC 5958 section 3; PBES2
    per RFC 8018 section 6.2 with PBKDF2, with or without an explicit PRF: an absent PRF
    means the default hmacWithSHA1, RFC 8018 appendix A.2) and plain ``PRIVATE KEY``
    (PKCS#8 PrivateKeyInfo, RFC 5208/5958; the passphrase is then ignored).
    Traditional ``RSA PRIVATE KEY``/``EC PRIVATE KEY`` are refused: ACM never exports them.
    ``passphrase`` is checked with :func:`validate_passphrase` for encrypted keys, so the
    bytes are exactly those given to ExportCertificate.

    Returns a ``cryptography`` private key object. Raises :class:`KeyDecryptionFailed`
    (no key block, several blocks, unsupported label, wrong passphrase, corrupt data) or
    :class:`InvalidPassphrase`; messages never contain the key or the passphrase.
    Source: AWS ACM API Reference, ExportCertificate ("PrivateKey ... encrypted PKCS #8").
    """
    if isinstance(encrypted_pem, (bytes, bytearray)):
        if not encrypted_pem.isascii():
            # Checked, not caught: a UnicodeDecodeError holds the key's bytes (see module doc).
            raise KeyDecryptionFailed("private key PEM is not ASCII text")
        text = bytes(encrypted_pem).decode("ascii")
    elif isinstance(encrypted_pem, str):
        text = encrypted_pem
    else:
        raise KeyDecryptionFailed(f"private key must be PEM str or bytes, got {type(encrypted_pem).__name__}")

    label, block = _single_private_key_block(text.replace("\r\n", "\n"))
    if label == "ENCRYPTED PRIVATE KEY":
        if passphrase is None:
            raise KeyDecryptionFailed("the private key is encrypted PKCS#8 but no passphrase was given")
        password: bytes | None = validate_passphrase(passphrase)
    elif label == "PRIVATE KEY":
        password = None
    else:
        raise KeyDecryptionFailed(
            f"unsupported private key format {label!r}: expected PKCS#8 "
            "('ENCRYPTED PRIVATE KEY' or 'PRIVATE KEY')"
        )

    # The refusal is raised after the except blocks, so no chained exception (__context__)
    # keeps the library's error, its traceback frames or what they reference.
    failure: str | None = None
    try:
        key = serialization.load_pem_private_key(block.encode("ascii"), password=password)
    except ValueError as exc:
        reason = "wrong passphrase or corrupt key" if password is not None else "corrupt key data"
        failure = f"could not load the {label} block: {reason} ({type(exc).__name__})"
    except (TypeError, UnsupportedAlgorithm) as exc:
        failure = f"could not load the {label} block: unsupported encryption or key type ({type(exc).__name__})"
    if failure is not None:
        raise KeyDecryptionFailed(failure)
    return key


def private_key_to_pem(key: PrivateKeyTypes, passphrase: bytes | str | None = None) -> str:
    """Serialize a private key as PKCS#8 PEM text (K3).

    Without ``passphrase``: plain ``-----BEGIN PRIVATE KEY-----`` (PKCS#8, RFC 5958), what
    nginx/Apache/HAProxy load without a password. With ``passphrase`` (checked by
    :func:`validate_passphrase`): ``ENCRYPTED PRIVATE KEY`` using cryptography's
    ``BestAvailableEncryption`` (PBES2, AES-256-CBC), for targets configured with an
    encrypted key and a password file. Returns str with LF line endings and a final
    newline. Raises :class:`InvalidPassphrase`.
    """
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        encryption = serialization.BestAvailableEncryption(validate_passphrase(passphrase))
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=encryption,
    ).decode("ascii")


def _public_key(key: PrivateKeyTypes | PublicKeyTypes) -> PublicKeyTypes:
    private_types = (
        rsa.RSAPrivateKey,
        ec.EllipticCurvePrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
        dsa.DSAPrivateKey,
        x25519.X25519PrivateKey,
        x448.X448PrivateKey,
    )
    if isinstance(key, private_types):
        return key.public_key()
    return key  # type: ignore[return-value]


def _spki_der(key: PrivateKeyTypes | PublicKeyTypes) -> bytes:
    return _public_key(key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _as_certificate(cert: x509.Certificate | str | bytes) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    # The text may be anything a caller handed over (even a key by mistake): check, and raise
    # outside the except block so no chained exception carries it.
    loaded: x509.Certificate | None = None
    if isinstance(cert, str) and not cert.isascii():
        data = b""
    else:
        data = cert.encode("ascii") if isinstance(cert, str) else bytes(cert)
    try:
        loaded = x509.load_pem_x509_certificate(data)
    except ValueError:
        loaded = None
    if loaded is None:
        raise ExportMismatch("the certificate to match the key against is not a PEM certificate")
    return loaded


def public_key_fingerprint(key: PrivateKeyTypes | PublicKeyTypes | x509.Certificate) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER as lowercase hex (public data, safe to log).

    Accepts a private key, a public key or a certificate (its public key). RFC 5280
    section 4.1.2.7 (SubjectPublicKeyInfo) / RFC 7469 section 2.4 (SPKI fingerprint).
    """
    if isinstance(key, x509.Certificate):
        key = key.public_key()
    return hashlib.sha256(_spki_der(key)).hexdigest()


def key_algorithm_name(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """ACM KeyAlgorithm name of a key: ``RSA_2048``, ``EC_prime256v1``, ``EC_secp384r1``...

    RSA -> ``RSA_<bits>``; EC P-256 -> ``EC_prime256v1`` (ACM's name), other curves
    ``EC_<curve name>`` (``EC_secp384r1``, ``EC_secp521r1``); Ed25519/Ed448 -> ``ED25519``/
    ``ED448``. Source: AWS ACM API Reference, CertificateDetail.KeyAlgorithm.
    """
    public = _public_key(key)
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA_{public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        name = public.curve.name
        return "EC_prime256v1" if name in ("secp256r1", "prime256v1") else f"EC_{name}"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ED25519"
    if isinstance(public, ed448.Ed448PublicKey):
        return "ED448"
    return type(public).__name__


def _serial_text(certificate: x509.Certificate) -> str:
    try:
        return canonical_serial(certificate.serial_number)
    except InvalidSerial:
        return str(certificate.serial_number)


def key_matches_certificate(
    key: PrivateKeyTypes | PublicKeyTypes, cert: x509.Certificate | str | bytes
) -> bool:
    """True when ``key`` (private or public) is the key pair of ``cert`` (K4).

    Compares the DER SubjectPublicKeyInfo of both (algorithm + parameters + key), which
    works for RSA of any size and for EC P-256/P-384/P-521 alike; an RSA modulus
    comparison would fail for EC keys and ignore the algorithm. ``cert`` is a
    ``cryptography`` certificate or PEM text. Raises :class:`ExportMismatch` only when
    ``cert`` is not a certificate. Source: RFC 5280 section 4.1.2.7.
    """
    certificate = _as_certificate(cert)
    return _spki_der(key) == _spki_der(certificate.public_key())


def assert_key_matches_certificate(
    key: PrivateKeyTypes | PublicKeyTypes, cert: x509.Certificate | str | bytes
) -> None:
    """Raise :class:`ExportMismatch` unless ``key`` belongs to ``cert`` (K2, K4).

    The message says "export mismatch" and names the certificate subject, its serial
    and both public-key fingerprints/algorithms (public data only).
    """
    certificate = _as_certificate(cert)
    if key_matches_certificate(key, certificate):
        return
    raise ExportMismatch(
        "export mismatch: the private key does not match the certificate "
        f"(subject {certificate.subject.rfc4514_string()!r}, serial {_serial_text(certificate)}; "
        f"certificate key {key_algorithm_name(certificate.public_key())} "
        f"spki-sha256 {public_key_fingerprint(certificate)}, private key {key_algorithm_name(key)} "
        f"spki-sha256 {public_key_fingerprint(key)})"
    )
