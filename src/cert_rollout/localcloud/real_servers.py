"""Real nginx and HAProxy (Debian packages) as local targets on 127.0.0.1.

Each server instance has its own prefix directory in the run's workdir
(``<workdir>/nginx-<port>/``, ``<workdir>/haproxy-<port>/``) with its config, pid file and
logs; nothing under /etc, /run or /var is used. Targets of one scenario that name the same
server kind and port share one instance: one ``server`` block (nginx) or one ``crt`` (HAProxy)
per target, chosen by SNI; the first target is the default for an unknown name.

Each target's own files live in ``<workdir>/targets/<id>/`` (nginx: fullchain.pem +
privkey.pem; HAProxy: haproxy.pem = leaf, chain, key), hold the certificate's current (old)
version as the operator had installed it, and are registered in the inventory like
targets.py does, with the server's real commands:

  nginx    test   nginx -t -q -p DIR -c DIR/nginx.conf -e DIR/logs/error.log
           reload nginx -s reload -p DIR -c DIR/nginx.conf -e DIR/logs/error.log
           (the master runs as root in the foreground of a child process, ``daemon off``;
           the pid file is named in nginx.conf so ``-s reload`` finds it)
  haproxy  test   haproxy -c -q -f DIR/haproxy.cfg
           reload /bin/sh DIR/reload.sh: checks the config, then starts a new daemon
                  ``haproxy -D -f CFG -p PID -sf <old pid>`` (the old one finishes softly)

Faults (scenario ``fault:``) supported here:
  down           the server is not started (nothing listens)
  agent-offline  the node's SSM Agent never picks up commands
  stale          the reload command does nothing (/bin/true): the server keeps the old files
  reload-fails   (nginx) the operator left a broken edit in nginx.conf after the last reload:
                 the installer's config test (``nginx -t``) fails, the files are restored and
                 nginx is not reloaded, so it keeps serving the old certificate.
                 (haproxy) the same with haproxy.cfg and ``haproxy -c``.
  wrong-cert     not available for real servers (ScenarioError)
  crash-mid-swap the node's installer is killed after the first file is renamed in (once),
                 as for embedded targets (targets.py)

``LocalTargets.stop`` stops them: each LocalTarget.process is a handle with the
``subprocess.Popen`` methods stop_server uses (poll / terminate / wait / kill / returncode).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cert_rollout.localcloud.cloud import free_port
from cert_rollout.localcloud.targets import NODE_FAULTS, LocalTarget, LocalTargets

REAL_FAULTS = {None, "down", "agent-offline", "stale", "reload-fails", "crash-mid-swap"}
BROKEN_DIRECTIVE = "    this_directive_is_a_typo on;  # an operator's unfinished edit\n"


class RealServerError(RuntimeError):
    """A real server could not be found, configured or started (names the binary / log)."""


def binary(name: str) -> str:
    """Absolute path of nginx / haproxy (also in /usr/sbin when PATH lacks it)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise RealServerError(f"{name} is not installed (scripts/install_servers.sh installs it)")
    return found


def available(name: str) -> bool:
    try:
        binary(name)
    except RealServerError:
        return False
    return True


# --------------------------------------------------------------------------- process handles


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PidFileProcess:
    """A daemon known by its pid file (HAProxy: the pid changes at each -sf reload), with the
    Popen methods stop_server calls."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.returncode: int | None = None

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid = self.pid()
            if pid is None or not _alive(pid):
                self.returncode = 0
        return self.returncode

    def _signal(self, sig: int) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid file {self.pid_file}", timeout or 0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode


class NginxProcess:
    """The nginx master started in the foreground (``daemon off``) as a child process."""

    def __init__(self, proc: subprocess.Popen[bytes], pid_file: Path) -> None:
        self.proc = proc
        self.pid_file = pid_file

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        self.proc.terminate()  # SIGTERM: nginx's fast shutdown

    def kill(self) -> None:
        self.proc.kill()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)


def _wait_listening(port: int, check: Any, log: Path, what: str, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check() is not None:
            break
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise RealServerError(f"{what} did not start listening on 127.0.0.1:{port}: {tail}")


def served_leaf(port: int, sni: str, timeout: float = 1.0) -> bytes | None:
    """DER of the leaf served on 127.0.0.1:port for SNI ``sni`` (None when unreachable)."""
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=sni) as tls:
            return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def children(pid: int) -> set[int]:
    """Live child pids of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                    found.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def wait_gone(pids: set[int], timeout: float = 10.0) -> None:
    """Wait until none of ``pids`` is alive (nginx's old workers after a reload)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)


def wait_serving(port: int, site: Site, timeout: float = 10.0) -> None:
    """Wait until the server answers ``site.server_name`` with the site's certificate file."""
    import ssl

    text = site.cert.read_text()
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    want = ssl.PEM_cert_to_DER_cert(text[start:end] + "\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_leaf(port, site.server_name) == want:
            return
        time.sleep(0.02)
    raise RealServerError(f"127.0.0.1:{port} does not serve {site.server_name}'s certificate after reload")


# --------------------------------------------------------------------------- instances


@dataclass
class Site:
    target_id: str
    server_name: str
    cert: Path  # nginx: fullchain; haproxy: combined PEM
    key: Path | None = None


@dataclass
class RealServer:
    kind: str
    port: int
    prefix: Path
    sites: list[Site] = field(default_factory=list)
    fault: str | None = None
    process: Any = None

    @property
    def config(self) -> Path:
        return self.prefix / ("nginx.conf" if self.kind == "nginx" else "haproxy.cfg")

    @property
    def pid_file(self) -> Path:
        return self.prefix / ("nginx.pid" if self.kind == "nginx" else "haproxy.pid")

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    # ---------------------------------------------------------------- nginx

    def nginx_args(self) -> list[str]:
        return ["-p", str(self.prefix) + "/", "-c", str(self.config), "-e", str(self.error_log)]

    def nginx_config(self) -> str:
        p = self.prefix
        servers = []
        for i, site in enumerate(self.sites):
            servers.append(
                f"    server {{\n"
                f"        listen 127.0.0.1:{self.port} ssl{' default_server' if i == 0 else ''};\n"
                f"        server_name {site.server_name};\n"
                f"        ssl_certificate {site.cert};\n"
                f"        ssl_certificate_key {site.key};\n"
                f"        location / {{ return 200 \"{site.target_id}\\n\"; }}\n"
                f"    }}\n")
        return (
            f"# generated by cert_rollout.localcloud.real_servers\n"
            f"worker_processes 1;\n"
            f"pid {self.pid_file};\n"
            f"error_log {self.error_log} notice;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n"
            f"    access_log {p}/logs/access.log;\n"
            f"    client_body_temp_path {p}/tmp/body;\n"
            f"    proxy_temp_path {p}/tmp/proxy;\n"
            f"    fastcgi_temp_path {p}/tmp/fastcgi;\n"
            f"    uwsgi_temp_path {p}/tmp/uwsgi;\n"
            f"    scgi_temp_path {p}/tmp/scgi;\n"
            f"    ssl_protocols TLSv1.2 TLSv1.3;\n"
            + "".join(servers) + "}\n")

    # ---------------------------------------------------------------- haproxy

    def haproxy_config(self) -> str:
        crts = " ".join(f"crt {site.cert}" for site in self.sites)
        return (
            "# generated by cert_rollout.localcloud.real_servers\n"
            "global\n"
            "    maxconn 256\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 5s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "frontend tls\n"
            f"    bind 127.0.0.1:{self.port} ssl {crts}\n"
            "    http-request return status 200 content-type text/plain string ok\n")

    def haproxy_reload_script(self) -> Path:
        script = self.prefix / "reload.sh"
        hap = binary("haproxy")
        script.write_text(
            "#!/bin/sh\n"
            "# Graceful HAProxy reload: check, then a new daemon takes over with -sf (old pid finishes).\n"
            "set -eu\n"
            f"CFG='{self.config}'\nPID='{self.pid_file}'\nHAPROXY='{hap}'\n"
            f"LOG='{self.prefix / 'logs' / 'stdout.log'}'\n"
            '"$HAPROXY" -c -q -f "$CFG"\n'
            "OLD=\n"
            'if [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then OLD="-sf $(cat "$PID")"; fi\n'
            "# the daemon must not hold the caller's stdout/stderr open: its output goes to LOG\n"
            'if "$HAPROXY" -D -f "$CFG" -p "$PID" $OLD </dev/null >>"$LOG" 2>&1; then exit 0; fi\n'
            'echo "haproxy reload failed:" >&2\n'
            'tail -n 20 "$LOG" >&2\n'
            "exit 1\n")
        script.chmod(0o755)
        return script

    # ---------------------------------------------------------------- common

    def write_config(self) -> None:
        text = self.nginx_config() if self.kind == "nginx" else self.haproxy_config()
        self.config.write_text(text)

    def test_command(self) -> list[str]:
        if self.kind == "nginx":
            return [binary("nginx"), "-t", "-q", *self.nginx_args()]
        return [binary("haproxy"), "-c", "-q", "-f", str(self.config)]

    def reload_command(self) -> list[str]:
        if self.fault == "stale":
            return ["/bin/true"]
        if self.kind == "nginx":
            return [binary("nginx"), "-s", "reload", *self.nginx_args()]
        return ["/bin/sh", str(self.prefix / "reload.sh")]

    def start(self) -> None:
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.write_config()
        check = subprocess.run(self.test_command(), capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RealServerError(f"{self.kind} config test failed: {check.stdout}{check.stderr}")
        log = self.prefix / "logs" / "stdout.log"
        if self.kind == "nginx":
            with open(log, "ab") as out:
                proc = subprocess.Popen([binary("nginx"), *self.nginx_args(), "-g", "daemon off;"],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            self.process = NginxProcess(proc, self.pid_file)
            _wait_listening(self.port, proc.poll, self.error_log, "nginx")
        else:
            self.haproxy_reload_script()
            with open(log, "ab") as out:
                launcher = subprocess.run([binary("haproxy"), "-D", "-f", str(self.config), "-p", str(self.pid_file)],
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          timeout=30, start_new_session=True)
            if launcher.returncode != 0:
                raise RealServerError(f"haproxy did not start: {log.read_text(errors='replace')[-1500:]}")
            self.process = PidFileProcess(self.pid_file)
            _wait_listening(self.port, self.process.poll, log, "haproxy")
        for site in self.sites:
            wait_serving(self.port, site)

    def reload_now(self) -> None:
        """Apply a config change (another site on a running instance)."""
        self.write_config()
        if self.process is None or self.process.poll() is not None:
            return
        argv = ([binary("nginx"), "-s", "reload", *self.nginx_args()] if self.kind == "nginx"
                else ["/bin/sh", str(self.prefix / "reload.sh")])
        old_workers = children(self.process.proc.pid) if isinstance(self.process, NginxProcess) else set()
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if run.returncode != 0:
            raise RealServerError(f"{self.kind} reload failed: {run.stdout}{run.stderr}")
        # a reload takes effect a few ms later, and nginx's old workers keep answering some
        # handshakes with the old config for ~100 ms: wait until they are gone, then poll.
        wait_gone(old_workers)
        for site in self.sites:
            wait_serving(self.port, site)


    def break_config(self) -> None:
        """The operator's unfinished edit: the running server is fine, the next config test fails."""
        text = self.config.read_text()
        if self.kind == "nginx":
            marker = "    ssl_protocols"
        else:
            marker = "frontend tls\n"
            text = text.replace(marker, marker + "    this_keyword_is_a_typo on\n", 1)
            self.config.write_text(text)
            return
        self.config.write_text(text.replace(marker, BROKEN_DIRECTIVE + marker, 1))


def _servers(targets: LocalTargets) -> dict[tuple[str, int], RealServer]:
    """The real server instances of this LocalTargets (kept on the object itself)."""
    found = getattr(targets, "_real_servers", None)
    if found is None:
        found = {}
        targets._real_servers = found  # type: ignore[attr-defined]
    return found


def _add(targets: LocalTargets, kind: str, target_id: str, certificate_arn: str, sni: str, *,
         port: int | None, fault: str | None) -> LocalTarget:
    if fault not in REAL_FAULTS:
        raise RealServerError(f"target {target_id}: fault {fault} is not available for a {kind} target")
    binary(kind)
    directory = targets.workdir / "targets" / target_id
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, chain_pem, key_pem = targets.cloud.private_ca().current(certificate_arn)
    if kind == "nginx":
        fullchain, privkey = directory / "fullchain.pem", directory / "privkey.pem"
        fullchain.write_text(cert_pem.strip() + "\n" + chain_pem.strip() + "\n")
        privkey.write_bytes(key_pem)
        privkey.chmod(0o600)
        site = Site(target_id, sni, fullchain, privkey)
        files = [{"path": str(fullchain), "content": "fullchain", "mode": "0644"},
                 {"path": str(privkey), "content": "key", "mode": "0600"}]
    else:
        combined = directory / "haproxy.pem"
        combined.write_text(cert_pem.strip() + "\n" + chain_pem.strip() + "\n"
                            + key_pem.decode().strip() + "\n")
        combined.chmod(0o600)
        site = Site(target_id, sni, combined)
        files = [{"path": str(combined), "content": "combined", "mode": "0600"}]

    registry = _servers(targets)
    port = port or free_port()
    server = registry.get((kind, port))
    if server is None:
        server = RealServer(kind, port, targets.workdir / f"{kind}-{port}", [site], fault)
        registry[(kind, port)] = server
        if fault != "down":
            server.start()
    else:
        if fault != server.fault:
            raise RealServerError(f"target {target_id}: targets sharing {kind} port {port} must share its fault")
        server.sites.append(site)
        server.reload_now()
    if fault == "reload-fails":
        server.break_config()

    instance_id = "mi-" + secrets.token_hex(8) + "a"
    node = targets.cloud.add_node(instance_id, online=fault != "agent-offline")
    node.fault_once = NODE_FAULTS.get(fault or "")
    target = LocalTarget(target_id, certificate_arn, sni, port, instance_id, directory, fault, server=kind)
    target.process = server.process
    target.inventory_item = {
        "certificateArn": certificate_arn, "targetId": target_id, "host": "127.0.0.1", "port": port,
        "sni": sni, "server": kind, "instanceId": instance_id, "files": files,
        "testCommand": server.test_command(), "reloadCommand": server.reload_command(),
    }
    targets.allow_on_node(target)
    targets.register(target)
    targets.targets[target_id] = target
    return target


def add_nginx(targets: LocalTargets, target_id: str, certificate_arn: str, sni: str, *,
              port: int | None = None, fault: str | None = None) -> LocalTarget:
    """A real nginx target serving the certificate's current version; targets given the same
    port share one nginx (one server block each, chosen by SNI)."""
    return _add(targets, "nginx", target_id, certificate_arn, sni, port=port, fault=fault)


def add_haproxy(targets: LocalTargets, target_id: str, certificate_arn: str, sni: str, *,
                port: int | None = None, fault: str | None = None) -> LocalTarget:
    """A real HAProxy target (one combined PEM per target, `crt` per target on a shared port)."""
    return _add(targets, "haproxy", target_id, certificate_arn, sni, port=port, fault=fault)


def add(targets: LocalTargets, kind: str, target_id: str, certificate_arn: str, sni: str, *,
        port: int | None = None, fault: str | None = None) -> LocalTarget:
    """Dispatch on the scenario's ``server:`` kind (nginx | haproxy)."""
    if kind not in ("nginx", "haproxy"):
        raise RealServerError(f"server {kind} is not a real server kind")
    return _add(targets, kind, target_id, certificate_arn, sni, port=port, fault=fault)
