"""TLS probe adapter: a real handshake over the network (port rollout_core/ports.py TlsProbe),
rollout_core/probe.py probe_served_certificate."""

from __future__ import annotations

from rollout_core.probe import ServedCertificate, probe_served_certificate


class SocketTlsProbe:
    """Connects from this process (the Lambda's network) to the target."""

    def served_certificate(self, host: str, port: int, sni: str | None, *, timeout: float) -> ServedCertificate:
        """The leaf and chain ``host:port`` presents for SNI ``sni``; ``timeout`` seconds for
        connect and handshake together. Raises TargetUnreachable or TlsHandshakeFailed."""
        return probe_served_certificate(host, port, sni, timeout=timeout)
