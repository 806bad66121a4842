"""Local targets: real TLS servers on 127.0.0.1, each on its own local managed node, with
the certificate's current (old) version installed as an operator had done before this
product took over, and registered in the inventory table.

Faults (scenario `fault:`), what operators meet in the field:
  down           nothing listens on the target's port
  stale          the server never picks up new files (ignores reload)
  reload-fails   the reload command exits non-zero with the server's error text
  wrong-cert     the server answers with another certificate whatever is installed
  agent-offline  the node's SSM Agent never picks up commands
  dies-after-reload  the server process exits right after a successful reload (a crash after
                 picking up the new files); ``restart`` starts it again without the fault
  status-event-lost  the node's first final command status event never reaches EventBridge
                 (the command itself ends normally; GetCommandInvocation knows its status)
  crash-mid-swap the installer is killed (SIGKILL) right after the first file of the set is
                 renamed into place, once; the next command on that node runs normally (and
                 finds the interrupted change first)
  prints-key-text  the test command prints the installed key with ``openssl pkey -text -noout``
                 before its config test (a debugging step left in): the installer's redaction
                 must keep it out of the SSM output and the report
  leaves-key-text  the test command writes that text to ``key-text.txt`` in its working
                 directory (the node's) instead: it never passes a redaction, and the leak
                 check's node_files surface must find it
  no-credentials  the node has no AWS credentials at all (no environment, no shared file, no
                 instance metadata): its installer fails bundle-credentials-missing
  foreign-credentials  the node signs with a node-role session of another instance, not a
                 target of the certificate: the staged bundle's policy denies it
                 (bundle-access-denied)
  missing-intermediate  the server sends only the leaf: its file holds leaf + chain, but it
                 drops the chain whenever it loads the file (a server pointed at cert.pem)
  one-stale-backend  a load balancer: the target's port answers round-robin from
                 STALE_BACKEND_COUNT backends, one of which never reloads; each backend also
                 listens on its own 127.0.0.1 port, and the inventory item lists them all as
                 ``backends`` (host:port), the stale one last
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cert_rollout.localcloud.cloud import LocalCloud, NodeCredentials, NodeFetch, free_port
from cert_rollout.localcloud.target_server import start_server, stop_server

Fault = Literal["down", "stale", "reload-fails", "wrong-cert", "agent-offline", "dies-after-reload",
                "status-event-lost", "crash-mid-swap", "prints-key-text", "leaves-key-text",
                "missing-intermediate", "one-stale-backend", "no-credentials", "foreign-credentials"]
#: Faults of the embedded server itself (target_server.py's listener ``fault``).
SERVER_FAULTS = {"stale", "reload-fails", "wrong-cert", "dies-after-reload", "missing-intermediate",
                 "one-stale-backend"}
#: How many backends a one-stale-backend target's load balancer answers from (one of them stale).
STALE_BACKEND_COUNT = 4
#: Faults of the node's installer (nodes.LocalNode.fault_once -> the installer's test hook).
NODE_FAULTS = {"crash-mid-swap": "crash-after-rename-1"}
#: Faults of the node's identity (cloud.add_node credentials): none at all, or another instance's.
NODE_CREDENTIAL_FAULTS: dict[str, NodeCredentials] = {"no-credentials": "none", "foreign-credentials": "foreign"}
#: Faults of the target's test command (target_server check's flags).
TEST_COMMAND_FAULTS = {"prints-key-text": ["--print-key-text"], "leaves-key-text": ["--key-text-file", "key-text.txt"]}


@dataclass
class LocalTarget:
    target_id: str
    certificate_arn: str
    sni: str
    port: int
    instance_id: str
    directory: Path
    fault: str | None = None
    server: str = "embedded"
    process: Any = None
    inventory_item: dict[str, Any] = field(default_factory=dict)
    backends: list[str] = field(default_factory=list)  # "127.0.0.1:PORT" of each backend (one-stale-backend)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1: all bound at once (so they differ), then
    released for the server to bind."""
    import socket

    holders = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            holders.append(s)
        return [int(s.getsockname()[1]) for s in holders]
    finally:
        for s in holders:
            s.close()


def _imposter(directory: Path, sni: str) -> tuple[Path, Path]:
    """A self-signed certificate for the same name: what a wrong default server answers with."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sni)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(sni)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "imposter.pem", directory / "imposter.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class LocalTargets:
    """Creates, registers and stops the local targets of one run."""

    def __init__(self, cloud: LocalCloud, workdir: Path) -> None:
        self.cloud = cloud
        self.workdir = workdir
        self.targets: dict[str, LocalTarget] = {}

    def add_embedded(self, target_id: str, certificate_arn: str, sni: str, *, port: int | None = None,
                     fault: str | None = None, fetch: NodeFetch = "stdlib") -> LocalTarget:
        """An embedded TLS server target serving the certificate's current version, on its own
        node whose installer fetches the bundle by ``fetch`` (cloud.node_env)."""
        directory = self.workdir / "targets" / target_id
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem, chain_pem, key_pem = self.cloud.private_ca().current(certificate_arn)
        fullchain, privkey = directory / "fullchain.pem", directory / "privkey.pem"
        fullchain.write_text(cert_pem.strip() + "\n" + chain_pem.strip() + "\n")
        privkey.write_bytes(key_pem)
        privkey.chmod(0o600)
        backend_ports = free_ports(STALE_BACKEND_COUNT + 1) if fault == "one-stale-backend" else []
        if backend_ports:
            port = port or backend_ports[0]
            backend_ports = [p for p in backend_ports if p != port][:STALE_BACKEND_COUNT]
        port = port or free_port()
        listener: dict[str, Any] = {"host": "127.0.0.1", "port": port, "fault": None,
                                    "sites": [{"server_names": [sni], "cert": str(fullchain), "key": str(privkey)}]}
        if backend_ports:
            listener["backends"] = backend_ports  # the server's last backend is the stale one
        if fault in SERVER_FAULTS:
            listener["fault"] = fault
        if fault == "wrong-cert":
            imposter_cert, imposter_key = _imposter(directory, sni)
            listener["fault_cert"], listener["fault_key"] = str(imposter_cert), str(imposter_key)
        config, pid_file = directory / "server.json", directory / "server.pid"
        config.write_text(json.dumps({"listeners": [listener]}, indent=2))
        instance_id = "mi-" + secrets.token_hex(8) + "a"
        node = self.cloud.add_node(instance_id, online=fault != "agent-offline",
                                   lose_status_events=1 if fault == "status-event-lost" else 0,
                                   fetch=fetch, credentials=NODE_CREDENTIAL_FAULTS.get(fault or "", "own"))
        node.fault_once = NODE_FAULTS.get(fault or "")
        target = LocalTarget(target_id, certificate_arn, sni, port, instance_id, directory, fault,
                             backends=[f"127.0.0.1:{p}" for p in backend_ports])
        if fault != "down":
            target.process = start_server(config, pid_file, directory / "server.log")
        python = sys.executable
        target.inventory_item = {
            "certificateArn": certificate_arn, "targetId": target_id, "host": "127.0.0.1", "port": port,
            "sni": sni, "server": "embedded", "instanceId": instance_id,
            "files": [{"path": str(fullchain), "content": "fullchain", "mode": "0644"},
                      {"path": str(privkey), "content": "key", "mode": "0600"}],
            "testCommand": [python, "-m", "cert_rollout.localcloud.target_server", "check", "--config", str(config),
                            *TEST_COMMAND_FAULTS.get(fault or "", [])],
            "reloadCommand": [python, "-m", "cert_rollout.localcloud.target_server", "reload",
                              "--pid-file", str(pid_file), "--config", str(config)],
        }
        if target.backends:
            target.inventory_item["backends"] = list(target.backends)
        self.allow_on_node(target)
        self.register(target)
        self.targets[target_id] = target
        return target

    def restart(self, target_id: str) -> LocalTarget:
        """Start an embedded target's server again with its fault cleared (what systemd's
        Restart= or an operator does after the server died). Raises KeyError for an unknown
        target and ValueError for a target that is not an embedded server."""
        target = self.targets[target_id]
        if target.server != "embedded":
            raise ValueError(f"target {target_id}: only embedded targets can be restarted")
        if target.process is not None:
            stop_server(target.process)
        config, pid_file = target.directory / "server.json", target.directory / "server.pid"
        settings = json.loads(config.read_text())
        for listener in settings["listeners"]:
            listener["fault"] = None
        config.write_text(json.dumps(settings, indent=2))
        target.fault = None
        target.process = start_server(config, pid_file, target.directory / "server.log")
        return target

    def allow_on_node(self, target: LocalTarget) -> None:
        """The node owner's policy for ``target``: its temporary directory, and exactly its
        inventory item's test and reload commands as they are now (a later inventory change,
        like a scenario's inventory_overrides, is not allowed by this)."""
        item = target.inventory_item
        commands = [c for c in (item.get("testCommand"), item.get("reloadCommand")) if c]
        self.cloud.fleet.nodes[target.instance_id].allow([str(target.directory)], commands)

    def register(self, target: LocalTarget) -> None:
        table = self.cloud.outputs["InventoryTableName"]
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        self.cloud.client("dynamodb").put_item(
            TableName=table, Item={k: ser.serialize(v) for k, v in target.inventory_item.items() if v is not None})

    def stop(self) -> None:
        for target in self.targets.values():
            if target.process is not None:
                stop_server(target.process)
                target.process = None

    def add_embedded_shared(self, specs: list[tuple[str, str, str]], *,
                            start_timeout: float | None = None) -> list[LocalTarget]:
        """Many embedded targets served by ONE target_server process: one listener per target
        on its own free port, one server config, one pid file (benchmarks: 1,000 targets
        without 1,000 processes). ``specs`` is [(target_id, certificate_arn, sni), ...].

        Each target keeps its own directory, files and node. Its reloadCommand SIGHUPs the
        shared server (which re-reads only the sites whose files changed). Its testCommand
        checks a per-target config holding only its own listener: a config test of the whole
        shared config would cost O(targets) per install (O(N^2) per rollout) and would fail
        spuriously while another target's install is half-way through its renames."""
        if not specs:
            return []
        shared = self.workdir / "targets" / "_shared"
        shared.mkdir(parents=True, exist_ok=True)
        config, pid_file = shared / "server.json", shared / "server.pid"
        ports = free_ports(len(specs))  # reserved at once: the batch gets distinct ports
        pca = self.cloud.private_ca()
        python = sys.executable
        listeners: list[dict[str, Any]] = []
        created: list[LocalTarget] = []
        for (target_id, certificate_arn, sni), port in zip(specs, ports, strict=True):
            directory = self.workdir / "targets" / target_id
            directory.mkdir(parents=True, exist_ok=True)
            cert_pem, chain_pem, key_pem = pca.current(certificate_arn)
            fullchain, privkey = directory / "fullchain.pem", directory / "privkey.pem"
            fullchain.write_text(cert_pem.strip() + "\n" + chain_pem.strip() + "\n")
            privkey.write_bytes(key_pem)
            privkey.chmod(0o600)
            listener: dict[str, Any] = {"host": "127.0.0.1", "port": port, "fault": None,
                                        "sites": [{"server_names": [sni], "cert": str(fullchain),
                                                   "key": str(privkey)}]}
            listeners.append(listener)
            own_config = directory / "server.json"  # this target's view, for its config test
            own_config.write_text(json.dumps({"listeners": [listener]}, indent=2))
            instance_id = "mi-" + secrets.token_hex(8) + "a"
            self.cloud.add_node(instance_id)
            target = LocalTarget(target_id, certificate_arn, sni, port, instance_id, directory)
            target.inventory_item = {
                "certificateArn": certificate_arn, "targetId": target_id, "host": "127.0.0.1", "port": port,
                "sni": sni, "server": "embedded", "instanceId": instance_id,
                "files": [{"path": str(fullchain), "content": "fullchain", "mode": "0644"},
                          {"path": str(privkey), "content": "key", "mode": "0600"}],
                "testCommand": [python, "-m", "cert_rollout.localcloud.target_server", "check",
                                "--config", str(own_config)],
                "reloadCommand": [python, "-m", "cert_rollout.localcloud.target_server", "reload",
                                  "--pid-file", str(pid_file), "--config", str(own_config)],
            }
            self.allow_on_node(target)
            created.append(target)
        config.write_text(json.dumps({"listeners": listeners}, indent=2))
        timeout = start_timeout if start_timeout is not None else 15.0 + 0.05 * len(specs)
        process = start_server(config, pid_file, shared / "server.log", timeout=timeout)
        # The first target owns the process handle (stop() stops it once); the others share it.
        created[0].process = process
        for target in created:
            self.targets[target.target_id] = target  # stop() finds the server even if a register fails
        for target in created:
            self.register(target)
        return created
