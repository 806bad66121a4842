"""A scripted TLS probe (port rollout_core/ports.py TlsProbe; adapter adapters/tls.py).

Per (host, port): a queue of answers, each a certificate the target serves (parsed by the
real rollout_core.probe.parse_served_certificate from its DER) or a ProbeError to raise;
the last answer repeats once the queue is down to one. An endpoint never scripted is
unreachable (TargetUnreachable), as a closed port is.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rollout_core.probe import ProbeError, ServedCertificate, TargetUnreachable, parse_served_certificate

from tests.fakes.recording import Recording

Answer = x509.Certificate | ProbeError


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
        return parse_served_certificate(answer.public_bytes(Encoding.DER), chain_length=None, verified=None,
                                        tls_version="TLSv1.3", host=host, port=port, sni=sni)
