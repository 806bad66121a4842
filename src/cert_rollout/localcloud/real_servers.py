"""Real nginx, HAProxy, Apache and Tomcat (Debian packages) as local targets on 127.0.0.1.

Each server instance has its own prefix directory in the run's workdir
(``<workdir>/<kind>-<port>/``) with its config, pid file and logs; nothing under /etc, /run or
/var is used. Targets of one scenario that name the same server kind and port share one
instance: one ``server`` block (nginx), ``crt`` (HAProxy), ``<VirtualHost>`` (Apache) or
``<SSLHostConfig>`` (Tomcat) per target, chosen by SNI; the first target is the default for an
unknown name.

Each target's own files live in ``<workdir>/targets/<id>/`` (nginx: fullchain.pem +
privkey.pem; HAProxy: haproxy.pem = leaf, chain, key; Apache and Tomcat: the files of the
apache / java kinds' defaults, rollout_core.target_defaults.default_files: ID.crt (leaf),
ID.chain.pem, ID.key; ID.p12 (PKCS#12, alias ID) + ID.p12.pass), hold the certificate's
current (old) version as the operator had installed it, and are registered in the inventory
like targets.py does, with the server's real commands:

  nginx    test   nginx -t -q -p DIR -c DIR/nginx.conf -e DIR/logs/error.log
           reload nginx -s reload -p DIR -c DIR/nginx.conf -e DIR/logs/error.log
           (the master runs as root in the foreground of a child process, ``daemon off``;
           the pid file is named in nginx.conf so ``-s reload`` finds it)
  haproxy  test   haproxy -c -q -f DIR/haproxy.cfg
           reload /bin/sh DIR/reload.sh: checks the config, then starts a new daemon
                  ``haproxy -D -f CFG -p PID -sf <old pid>`` (the old one finishes softly)
  apache   test   apache2 -t -d DIR -f DIR/httpd.conf    (mod_ssl, SSLCertificateFile = leaf,
                                                          SSLCertificateChainFile, ...KeyFile)
           reload apache2 -d DIR -f DIR/httpd.conf -k graceful
           (started with ``-k start``: a daemon known by its PidFile; as root its children run
           as nobody, the parent reads the key files before it forks them)
  tomcat   test   /bin/sh DIR/configtest.sh: ``keytool -list -storetype PKCS12 -keystore ID.p12
                  -storepass:file ID.p12.pass`` for each keystore (Tomcat's own configtest does
                  not load keystores), then ``catalina.sh configtest`` (parses server.xml)
           reload /bin/sh DIR/restart.sh: ``catalina.sh stop 20 -force``, ``catalina.sh start``,
                  wait for "Server startup in". A RESTART, not a reload: Tomcat reloads TLS
                  files only through JMX / the Manager's sslReload (reloadSslHostConfigs), which
                  needs a JMX client or the manager webapp and its credentials on the node.
           (CATALINA_HOME /usr/share/tomcat10, CATALINA_BASE = DIR with its own server.xml:
           one NIO Connector, SSLHostConfig per target, certificateKeystorePasswordFile; the
           inventory kind is "java")

Faults (scenario ``fault:``) supported here:
  down           the server is not started (nothing listens)
  agent-offline  the node's SSM Agent never picks up commands
  stale          the reload command does nothing (/bin/true): the server keeps the old files
  reload-fails   (nginx) the operator left a broken edit in nginx.conf after the last reload:
                 the installer's config test (``nginx -t``) fails, the files are restored and
                 nginx is not reloaded, so it keeps serving the old certificate.
                 (haproxy) the same with haproxy.cfg and ``haproxy -c``, (apache) with
                 httpd.conf and ``apache2 -t``, (tomcat) an unclosed tag in server.xml and
                 ``catalina.sh configtest``.
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

from rollout_core.models import PASSWORD_SUFFIX
from rollout_core.target_defaults import default_files

from cert_rollout.localcloud.cloud import free_port
from cert_rollout.localcloud.targets import NODE_FAULTS, LocalTarget, LocalTargets
from cert_rollout.processes import process_alive

REAL_FAULTS = {None, "down", "agent-offline", "stale", "reload-fails", "crash-mid-swap"}
BROKEN_DIRECTIVE = "    this_directive_is_a_typo on;  # an operator's unfinished edit\n"


class RealServerError(RuntimeError):
    """A real server could not be found, configured or started (names the binary / log)."""


KINDS = ("nginx", "haproxy", "apache", "tomcat")
#: the inventory's server kind (rollout_core.models.ServerKind) of each real server kind
INVENTORY_KIND = {"nginx": "nginx", "haproxy": "haproxy", "apache": "apache", "tomcat": "java"}
#: Debian's tomcat10 package: CATALINA_HOME (each instance has its own CATALINA_BASE)
TOMCAT_HOME = Path("/usr/share/tomcat10")
_NEEDS = {"nginx": ("nginx",), "haproxy": ("haproxy",), "apache": ("apache2",), "tomcat": ("java", "keytool")}


def binary(name: str) -> str:
    """Absolute path of nginx / haproxy / apache2 / java / keytool (also in /usr/sbin when PATH
    lacks it). Raises RealServerError naming the missing binary."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise RealServerError(f"{name} is not installed (scripts/install_servers.sh installs it)")
    return found


def catalina() -> str:
    """Tomcat's catalina.sh (Debian tomcat10). Raises RealServerError when absent."""
    path = TOMCAT_HOME / "bin" / "catalina.sh"
    if not path.is_file():
        raise RealServerError(f"tomcat10 is not installed ({path} is missing; scripts/install_servers.sh "
                              "installs it)")
    return str(path)


def require(kind: str) -> None:
    """Raise RealServerError naming what server ``kind`` (KINDS; apache2 for apache) lacks."""
    kind = "apache" if kind == "apache2" else kind
    for name in _NEEDS.get(kind, (kind,)):
        binary(name)
    if kind == "tomcat":
        catalina()


def available(name: str) -> bool:
    """Whether server kind / binary ``name`` can run here (see require)."""
    try:
        require(name)
    except RealServerError:
        return False
    return True


# --------------------------------------------------------------------------- process handles


class PidFileProcess:
    """A daemon known by its pid file (HAProxy: the pid changes at each -sf reload), with the
    Popen methods stop_server calls."""

    def __init__(self, pid_file: Path, *, sticky: bool = True) -> None:
        self.pid_file = pid_file
        self.returncode: int | None = None
        # sticky=False (Tomcat, restarted as its reload: its pid file is gone for a moment):
        # poll() looks again each time instead of keeping the first exit it saw
        self.sticky = sticky

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def poll(self) -> int | None:
        if self.returncode is None or not self.sticky:
            self.returncode = None
            pid = self.pid()
            if pid is None or not process_alive(pid):
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


def _wait_pid_file(pid_file: Path, log: Path, what: str, timeout: float = 30.0) -> None:
    """Wait until a daemon has written its pid file (before that, its PidFileProcess would
    read as exited). Raises RealServerError with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if PidFileProcess(pid_file).pid() is not None:
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise RealServerError(f"{what} wrote no pid file {pid_file}: {tail}")


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
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.02)


def wait_serving(port: int, site: Site, timeout: float = 10.0) -> None:
    """Wait until the server answers ``site.server_name`` with the site's certificate file."""
    want = site.leaf_der()
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
    cert: Path  # nginx: fullchain; haproxy: combined PEM; apache: leaf; tomcat: PKCS#12 keystore
    key: Path | None = None
    chain: Path | None = None  # apache's SSLCertificateChainFile
    password_file: Path | None = None  # tomcat's keystore password (first line)

    def leaf_der(self) -> bytes:
        """DER of the leaf certificate in this site's certificate file (PEM, or PKCS#12)."""
        import ssl

        if self.password_file is not None:
            from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

            password = self.password_file.read_text().splitlines()[0].encode()
            leaf = pkcs12.load_pkcs12(self.cert.read_bytes(), password).cert
            if leaf is None:
                raise RealServerError(f"{self.cert} holds no certificate")
            return leaf.certificate.public_bytes(Encoding.DER)
        text = self.cert.read_text()
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        return ssl.PEM_cert_to_DER_cert(text[start:end] + "\n")


@dataclass
class RealServer:
    kind: str
    port: int
    prefix: Path
    sites: list[Site] = field(default_factory=list)
    fault: str | None = None
    process: Any = None

    shutdown_port: int = 0  # tomcat's <Server port>

    @property
    def config(self) -> Path:
        names = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg", "apache": "httpd.conf",
                 "tomcat": "conf/server.xml"}
        return self.prefix / names[self.kind]

    @property
    def pid_file(self) -> Path:
        names = {"nginx": "nginx.pid", "haproxy": "haproxy.pid", "apache": "run/apache2.pid",
                 "tomcat": "tomcat.pid"}
        return self.prefix / names[self.kind]

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / ("catalina.out" if self.kind == "tomcat" else "error.log")

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

    # ---------------------------------------------------------------- apache

    def apache_args(self) -> list[str]:
        return ["-d", str(self.prefix), "-f", str(self.config)]

    def apache_config(self) -> str:
        p, modules = self.prefix, "/usr/lib/apache2/modules"
        # as root, Apache refuses to serve from root children: they run as nobody (the parent
        # opens logs and reads the key files before it forks them)
        user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
        hosts = []
        for site in self.sites:
            hosts.append(
                f"<VirtualHost 127.0.0.1:{self.port}>\n"
                f"    ServerName {site.server_name}\n"
                f"    SSLEngine on\n"
                f"    SSLCertificateFile {site.cert}\n"
                f"    SSLCertificateChainFile {site.chain}\n"
                f"    SSLCertificateKeyFile {site.key}\n"
                f"</VirtualHost>\n")
        return (
            "# generated by cert_rollout.localcloud.real_servers\n"
            f"ServerRoot {p}\n"
            + "".join(f"LoadModule {m}_module {modules}/mod_{m}.so\n"
                      for m in ("mpm_event", "authz_core", "socache_shmcb", "ssl"))
            + user
            + "ServerName localhost\n"
            f"Listen 127.0.0.1:{self.port} https\n"
            f"PidFile {self.pid_file}\n"
            f"DefaultRuntimeDir {p}/run\n"
            f"ErrorLog {self.error_log}\n"
            "LogLevel warn\n"
            "StartServers 1\nServerLimit 1\nThreadsPerChild 8\nMaxRequestWorkers 8\n"
            "MinSpareThreads 1\nMaxSpareThreads 8\n"
            f"SSLSessionCache shmcb:{p}/run/ssl_scache(102400)\n"
            "SSLProtocol -all +TLSv1.2 +TLSv1.3\n"
            + "".join(hosts))

    # ---------------------------------------------------------------- tomcat

    def tomcat_env(self) -> str:
        """Shell lines exporting what catalina.sh needs for this instance."""
        return (f"export CATALINA_HOME='{TOMCAT_HOME}' CATALINA_BASE='{self.prefix}'\n"
                f"export CATALINA_PID='{self.pid_file}' CATALINA_OUT='{self.error_log}'\n"
                f"export JAVA_HOME='{Path(os.path.realpath(binary('java'))).parent.parent}'\n"
                "export JAVA_OPTS='-Xmx128m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1'\n")

    def tomcat_config(self) -> str:
        hosts = []
        for site in self.sites:
            hosts.append(
                f'      <SSLHostConfig hostName="{site.server_name}" protocols="TLSv1.2+TLSv1.3">\n'
                f'        <Certificate certificateKeystoreFile="{site.cert}" certificateKeystoreType="PKCS12"\n'
                f'                     certificateKeystorePasswordFile="{site.password_file}"\n'
                f'                     certificateKeyAlias="{site.target_id}"/>\n'
                f'      </SSLHostConfig>\n')
        # bindOnInit="false": `catalina.sh configtest` next to the running server does not try
        # to bind its port (and so does not load the keystores: configtest.sh runs keytool)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<!-- generated by cert_rollout.localcloud.real_servers -->\n"
            f'<Server port="{self.shutdown_port}" address="127.0.0.1" shutdown="SHUTDOWN">\n'
            '  <Service name="Catalina">\n'
            f'    <Connector port="{self.port}" address="127.0.0.1" bindOnInit="false"\n'
            '               protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true"\n'
            f'               maxThreads="4" defaultSSLHostConfigName="{self.sites[0].server_name}">\n'
            + "".join(hosts)
            + "    </Connector>\n"
            '    <Engine name="Catalina" defaultHost="localhost">\n'
            '      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>\n'
            "    </Engine>\n"
            "  </Service>\n"
            "</Server>\n")

    def tomcat_scripts(self) -> None:
        """configtest.sh (keytool on each keystore, then catalina.sh configtest) and restart.sh."""
        keytool = binary("keytool")
        checks = "".join(
            f"'{keytool}' -list -storetype PKCS12 -keystore '{site.cert}' -storepass:file '{site.password_file}'"
            " >/dev/null\n" for site in self.sites)
        test = self.prefix / "configtest.sh"
        test.write_text(
            "#!/bin/sh\n"
            "# Tomcat's config test: each keystore opens with its password file, server.xml parses.\n"
            "set -eu\n" + self.tomcat_env() + checks
            + 'exec "$CATALINA_HOME/bin/catalina.sh" configtest\n')
        restart = self.prefix / "restart.sh"
        restart.write_text(
            "#!/bin/sh\n"
            "# Tomcat has no reload of its own for TLS files from the command line: restart it\n"
            "# (stop, start, wait for its \"Server startup in\" line).\n"
            "set -eu\n" + self.tomcat_env()
            + f"LOG='{self.prefix / 'logs' / 'restart.log'}'\n"
            '"$CATALINA_HOME/bin/catalina.sh" stop 20 -force </dev/null >>"$LOG" 2>&1 || true\n'
            ': > "$CATALINA_OUT"\n'
            '"$CATALINA_HOME/bin/catalina.sh" start </dev/null >>"$LOG" 2>&1\n'
            "i=0\n"
            "while [ $i -lt 600 ]; do\n"
            '    if grep -q "Server startup in" "$CATALINA_OUT"; then exit 0; fi\n'
            '    if [ -s "$CATALINA_PID" ] && ! kill -0 "$(cat "$CATALINA_PID")" 2>/dev/null; then break; fi\n'
            "    sleep 0.1\n"
            "    i=$((i + 1))\n"
            "done\n"
            'echo "tomcat restart failed:" >&2\n'
            'tail -n 20 "$CATALINA_OUT" >&2\n'
            "exit 1\n")
        for script in (test, restart):
            script.chmod(0o755)

    # ---------------------------------------------------------------- common

    def write_config(self) -> None:
        texts = {"nginx": self.nginx_config, "haproxy": self.haproxy_config, "apache": self.apache_config,
                 "tomcat": self.tomcat_config}
        self.config.write_text(texts[self.kind]())
        if self.kind == "tomcat":
            self.tomcat_scripts()

    def test_command(self) -> list[str]:
        if self.kind == "nginx":
            return [binary("nginx"), "-t", "-q", *self.nginx_args()]
        if self.kind == "apache":
            return [binary("apache2"), "-t", *self.apache_args()]
        if self.kind == "tomcat":
            return ["/bin/sh", str(self.prefix / "configtest.sh")]
        return [binary("haproxy"), "-c", "-q", "-f", str(self.config)]

    def reload_command(self) -> list[str]:
        if self.fault == "stale":
            return ["/bin/true"]
        return self._reload_argv()

    def _reload_argv(self) -> list[str]:
        if self.kind == "nginx":
            return [binary("nginx"), "-s", "reload", *self.nginx_args()]
        if self.kind == "apache":
            return [binary("apache2"), *self.apache_args(), "-k", "graceful"]
        if self.kind == "tomcat":
            return ["/bin/sh", str(self.prefix / "restart.sh")]
        return ["/bin/sh", str(self.prefix / "reload.sh")]

    def start(self) -> None:
        for sub in ("logs", "tmp", "run", "conf", "temp", "work", "webapps"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        if self.kind == "tomcat":
            self.shutdown_port = self.shutdown_port or free_port()
            shutil.copyfile(TOMCAT_HOME / "etc" / "web.xml", self.prefix / "conf" / "web.xml")
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
        elif self.kind in ("apache", "tomcat"):
            argv = ([binary("apache2"), *self.apache_args(), "-k", "start"] if self.kind == "apache"
                    else self._reload_argv())  # tomcat: restart.sh starts it (its stop finds nothing)
            with open(log, "ab") as out:
                launcher = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          timeout=90, start_new_session=True)
            if launcher.returncode != 0:
                raise RealServerError(f"{self.kind} did not start: {log.read_text(errors='replace')[-1500:]}")
            _wait_pid_file(self.pid_file, self.error_log, self.kind)  # apache2 -k start returns first
            self.process = PidFileProcess(self.pid_file, sticky=self.kind != "tomcat")
            _wait_listening(self.port, self.process.poll, self.error_log, self.kind, timeout=60)
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
        argv = self._reload_argv()
        old_workers = children(self.process.proc.pid) if isinstance(self.process, NginxProcess) else set()
        run = subprocess.run(argv, capture_output=True, text=True, timeout=90)
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
        if self.kind == "apache":
            self.config.write_text(text.replace("SSLProtocol", "ThisDirectiveIsATypo on\nSSLProtocol", 1))
            return
        if self.kind == "tomcat":  # an unclosed element: server.xml no longer parses
            marker = "    </Engine>\n"
            self.config.write_text(text.replace(
                marker, '      <Valve className="org.apache.catalina.valves.AccessLogValve"\n' + marker, 1))
            return
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


def _write_default_files(files: list[dict[str, Any]], target_id: str, sni: str, cert_pem: str,
                         chain_pem: str, key_pem: bytes) -> Site:
    """Write the current (old) version into the apache / java kinds' default files (leaf,
    chain, key; or a PKCS#12 keystore with alias ``target_id`` and its password file
    PATH.pass, as the installer reads them) and return the server's Site for them."""
    by_content = {f["content"]: Path(f["path"]) for f in files}
    for f in files:
        path = Path(f["path"])
        if f["content"] == "leaf":
            path.write_text(cert_pem.strip() + "\n")
        elif f["content"] == "chain":
            path.write_text(chain_pem.strip() + "\n")
        elif f["content"] == "key":
            path.write_bytes(key_pem)
        elif f["content"] == "pkcs12":
            password_file = Path(f["path"] + PASSWORD_SUFFIX)
            password_file.write_text(secrets.token_hex(24) + "\n")
            password_file.chmod(0o600)
            path.write_bytes(_pkcs12(target_id, cert_pem, chain_pem, key_pem,
                                     password_file.read_text().strip().encode()))
        else:
            raise RealServerError(f"file content {f['content']} is not written here")
        path.chmod(int(f["mode"], 8))
    if "pkcs12" in by_content:
        keystore = by_content["pkcs12"]
        return Site(target_id, sni, keystore, password_file=Path(str(keystore) + PASSWORD_SUFFIX))
    return Site(target_id, sni, by_content["leaf"], by_content["key"], chain=by_content["chain"])


def _pkcs12(alias: str, cert_pem: str, chain_pem: str, key_pem: bytes, password: bytes) -> bytes:
    """A PKCS#12 keystore (AES-256 + PBKDF2, as OpenSSL 3's default that the installer makes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        load_pem_private_key,
        pkcs12,
    )

    key = load_pem_private_key(key_pem, None)
    return pkcs12.serialize_key_and_certificates(
        alias.encode(), key, x509.load_pem_x509_certificate(cert_pem.encode()),  # type: ignore[arg-type]
        x509.load_pem_x509_certificates(chain_pem.encode()), BestAvailableEncryption(password))


def _add(targets: LocalTargets, kind: str, target_id: str, certificate_arn: str, sni: str, *,
         port: int | None, fault: str | None) -> LocalTarget:
    if fault not in REAL_FAULTS:
        raise RealServerError(f"target {target_id}: fault {fault} is not available for a {kind} target")
    require(kind)
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
    elif kind in ("apache", "tomcat"):
        # exactly the files of the kind's defaults (an operator's short inventory entry)
        files = default_files(INVENTORY_KIND[kind], str(directory), target_id)
        site = _write_default_files(files, target_id, sni, cert_pem, chain_pem, key_pem)
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
        "sni": sni, "server": INVENTORY_KIND[kind], "instanceId": instance_id, "files": files,
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
    """Dispatch on the scenario's ``server:`` kind (KINDS: nginx | haproxy | apache | tomcat)."""
    if kind not in KINDS:
        raise RealServerError(f"server {kind} is not a real server kind")
    return _add(targets, kind, target_id, certificate_arn, sni, port=port, fault=fault)
