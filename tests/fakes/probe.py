"""A scripted TLS probe (port rollout_core/ports.py TlsProbe; adapter adapters/tls.py).

Per (host, port): a queue of answers, each a chain the target serves (a tuple of certificates,
leaf first, as a server sends them; a lone certificate is a server sending only its leaf), parsed
by the real rollout_core.probe.parse_served_certificate from its DER, or a ProbeError to raise;
the last answer repeats once the queue is down to one. An endpoint never scripted is
unreachable (TargetUnreachable), as a closed port is.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rollout_core.probe import ProbeError, ServedCertificate, TargetUnreachable, parse_served_certificate

from tests.fakes.recording import Recording

Answer = x509.Certificate | tuple[x509.Certificate, ...] | ProbeError


class FakeProbe(Recording):
    def __init__(self) -> None:
        super().__init__()
        self._answers: dict[tuple[str, int], list[Answer]] = {}

    def script(self, host: str, port: int, *answers: Answer) -> None:
        """Answers for ``host:port`` in order (replacing any earlier script)."""
        if not answers:
            raise ValueError("script at least one answer")
        self._answers[(host, port)] = list(answers)

    def served_certificate(self, host: str, port: int, sni: str | None, *, timeout: float) -> ServedCertificate:
        self._record("served_certificate", host=host, port=port, sni=sni, timeout=timeout)
        queue = self._answers.get((host, port))
        if not queue:
            raise TargetUnreachable(f"{host}:{port}: connection refused", host=host, port=port, sni=sni,
                                    cause="ConnectionRefusedError", reason="refused")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, ProbeError):
            raise answer
        chain = answer if isinstance(answer, tuple) else (answer,)
        ders = tuple(c.public_bytes(Encoding.DER) for c in chain)
        return parse_served_certificate(ders[0], chain_length=len(ders), verified=None, chain_der=ders,
                                        tls_version="TLSv1.3", host=host, port=port, sni=sni)

    def handshakes(self, host: str | None = None, port: int | None = None) -> int:
        """How many handshakes were made (to ``host:port`` when given)."""
        return sum(1 for name, args in self.calls if name == "served_certificate"
                   and (host is None or args["host"] == host) and (port is None or args["port"] == port))
