"""Embedded TLS target server: a small stand-in for nginx used as local targets.

One process serves many TLS listeners (asyncio, one event loop: hundreds of ports are
fine). Each listener has one or more *sites* chosen by SNI; the first site is the
default for an absent or unknown SNI name (like nginx's default_server). After the
handshake the server closes the connection, or answers a tiny ``HTTP/1.1 200`` if the
client sends data first.

Command line (``python -m cert_rollout.localcloud.target_server ...``)::

    serve  --config CONFIG.json --pid-file PID [--log FILE]
        Listen on every listener, then write PID (atomically). SIGHUP reloads every
        site's cert/key files; a site whose new files fail to load keeps its previous
        certificate and the error is logged (like nginx keeps the old config).
        SIGTERM/SIGINT stop the server and remove the pid file. Exits 1 if a file
        cannot be loaded at start or a port cannot be bound.
    check  --config CONFIG.json
        Config test (like ``nginx -t``): loads every site's cert+key into an
        SSLContext, which also checks that the key matches the first certificate.
        stdout "configuration test is successful", exit 0; or stderr
        "configuration test failed: <file>: <reason>", exit 1.
        --print-key-text: first print every site's key with ``openssl pkey -text -noout``
        (a debugging test command an operator might write; fault prints-key-text).
        --key-text-file FILE: write that text to FILE instead (relative: the command's cwd,
        the node's working directory; fault leaves-key-text).
    reload --pid-file PID [--config CONFIG.json]
        Like ``systemctl try-reload-or-restart``: SIGHUP to the running server, exit 0;
        "not running; nothing to reload", exit 0, when no server runs; when the config
        marks a listener with fault "reload-fails": stderr "reload failed: ...", exit 1.
    stop   --pid-file PID
        SIGTERM, bounded wait, then SIGKILL; exit 0 (also when not running).

Config format (JSON)::

    {"listeners": [
        {"host": "127.0.0.1", "port": 8443,
         "fault": null,                # null or one of FAULTS (below)
         "fault_cert": null, "fault_key": null,   # only for "wrong-cert"
         "backends": [9001, 9002, 9003, 9004],    # optional: ports of a load balancer's backends
         "sites": [
            {"server_names": ["web.internal.example"],
             "cert": "/path/fullchain.pem",   # PEM: leaf first, then the chain
             "key": "/path/privkey.pem"}     # PEM, plain (unencrypted) private key
         ]}
    ]}

Relative paths are resolved against the config file's directory. ``server_names``
match the SNI name case-insensitively; ``"*.example.com"`` matches one label.

``backends`` (optional, at least 2 ports): the listener is a load balancer in front of that
many backends, each holding its own copy of the sites (loaded at start, reloaded on SIGHUP on
its own). ``port`` answers from them round-robin, one backend per connection; each backend also
listens on ``host:<its port>`` so a client can check it directly (like a backend's own address
behind an ELB). ``fault`` applies to every backend, except ``one-stale-backend``.

Faults (per listener), to reproduce what operators see on real servers:
    stale        ignores SIGHUP: keeps serving what it loaded at start.
    wrong-cert   always serves fault_cert/fault_key, whatever the SNI or the files.
    reload-fails the ``reload`` command refuses (exit 1) and sends no signal.
    dies-after-reload  a SIGHUP that reloads a site's changed files successfully is followed by
                 the process exiting (code 70, pid file left behind, like a crash): the reload
                 command itself succeeded, then nothing answers on any port.
    missing-intermediate  serves only the leaf: the certificate file may hold leaf + chain, but
                 everything after its first certificate is dropped whenever an SSL context is
                 built (at start and at every reload), like a server pointed at cert.pem instead
                 of fullchain.pem. The ``check`` command still reads the whole file.
    one-stale-backend  needs ``backends``: the last backend never reloads (keeps serving what
                 it loaded at start); the others reload as usual, so after a reload 1 connection
                 in N to ``port`` gets the old certificate.

Python API (tests, local cloud): :func:`start_server`, :func:`stop_server`,
:func:`check_config`, :func:`reload_server`, :func:`load_config`.
Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "TargetServerError",
    "check_config",
    "load_config",
    "main",
    "reload_server",
    "start_server",
    "stop_server",
]

FAULTS = (None, "stale", "wrong-cert", "reload-fails", "dies-after-reload", "missing-intermediate",
          "one-stale-backend")
DIES_AFTER_RELOAD_EXIT = 70
LOG = logging.getLogger("target_server")
IDLE_SECONDS = 2.0  # how long to wait for a request after the handshake
HANDSHAKE_TIMEOUT = 10.0


class ConfigError(Exception):
    """The config file, or a cert/key file it names, is invalid. ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class TargetServerError(RuntimeError):
    """start_server could not bring the server up (exit, timeout); message says why."""


# --------------------------------------------------------------------------- config


@dataclass
class SiteConfig:
    server_names: list[str]
    cert: str
    key: str


@dataclass
class ListenerConfig:
    host: str
    port: int
    fault: str | None
    sites: list[SiteConfig]
    fault_cert: str | None = None
    fault_key: str | None = None
    backends: list[int] = field(default_factory=list)  # ports of the backends ([]: a plain server)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ports(self) -> list[int]:
        """Every port this listener binds: its own, then each backend's."""
        return [self.port, *self.backends]


@dataclass
class ServerConfig:
    path: str
    listeners: list[ListenerConfig] = field(default_factory=list)


def _resolve(base: Path, value: Any, what: str, config_path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(config_path, f"{what} must be a non-empty path string")
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))


def load_config(config_path: str | os.PathLike[str]) -> ServerConfig:
    """Read and validate the JSON config (shape in the module docstring).
    Raises ConfigError naming the config file and what is wrong."""
    path = str(config_path)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"invalid JSON: {exc}") from exc
    base = Path(path).resolve().parent
    if not isinstance(raw, dict) or not isinstance(raw.get("listeners"), list) or not raw["listeners"]:
        raise ConfigError(path, '"listeners" must be a non-empty list')
    cfg = ServerConfig(path=path)
    seen: set[tuple[str, int]] = set()
    for i, item in enumerate(raw["listeners"]):
        listener = _listener(item, f"listeners[{i}]", base, path)
        for port in listener.ports:
            if (listener.host, port) in seen:
                raise ConfigError(path, f"listeners[{i}]: duplicate listener {listener.host}:{port}")
            seen.add((listener.host, port))
        cfg.listeners.append(listener)
    return cfg


def _listener(item: Any, where: str, base: Path, path: str) -> ListenerConfig:
    """One listener of the config (``where`` names it in errors). Raises ConfigError."""
    if not isinstance(item, dict):
        raise ConfigError(path, f"{where} must be an object")
    host = item.get("host", "127.0.0.1")
    port = item.get("port")
    if not isinstance(host, str) or not host:
        raise ConfigError(path, f"{where}.host must be a string")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(path, f"{where}.port must be an int in 1..65535")
    fault = item.get("fault")
    if fault not in FAULTS:
        raise ConfigError(path, f"{where}.fault must be one of {FAULTS}, got {fault!r}")
    sites_raw = item.get("sites")
    if not isinstance(sites_raw, list) or not sites_raw:
        raise ConfigError(path, f"{where}.sites must be a non-empty list")
    sites = [_site(s, f"{where}.sites[{j}]", base, path) for j, s in enumerate(sites_raw)]
    backends = item.get("backends") or []
    if not isinstance(backends, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) and 0 < b < 65536 for b in backends):
        raise ConfigError(path, f"{where}.backends must be a list of ports (ints in 1..65535)")
    if backends and len(backends) < 2:
        raise ConfigError(path, f"{where}.backends must name at least 2 backend ports (or be left out)")
    if fault == "one-stale-backend" and not backends:
        raise ConfigError(path, f"{where}: fault one-stale-backend needs backends (at least 2 ports)")
    listener = ListenerConfig(host=host, port=port, fault=fault, sites=sites, backends=list(backends))
    if fault == "wrong-cert":
        listener.fault_cert = _resolve(base, item.get("fault_cert"), f"{where}.fault_cert", path)
        listener.fault_key = _resolve(base, item.get("fault_key"), f"{where}.fault_key", path)
    return listener


def _site(s: Any, where: str, base: Path, path: str) -> SiteConfig:
    """One site (server names, certificate, key) of a listener. Raises ConfigError."""
    if not isinstance(s, dict):
        raise ConfigError(path, f"{where} must be an object")
    names = s.get("server_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(path, f"{where}.server_names must be a list of strings")
    return SiteConfig(server_names=[n.lower().rstrip(".") for n in names],
                      cert=_resolve(base, s.get("cert"), f"{where}.cert", path),
                      key=_resolve(base, s.get("key"), f"{where}.key", path))


def _no_password() -> bytes:
    raise ConfigError("", "private key is encrypted and no password is configured")


def first_certificate(pem: str) -> str:
    """The first PEM certificate block of ``pem`` (the leaf of a fullchain), with its markers
    and a final newline. Raises ValueError when ``pem`` holds no complete certificate block."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start + len(begin)) if start >= 0 else -1
    if stop < 0:
        raise ValueError("no complete PEM certificate block")
    return pem[start:stop + len(end)] + "\n"


def _load_leaf_only(ctx: ssl.SSLContext, cert_text: str, key: str) -> None:
    """load_cert_chain with only the first certificate of ``cert_text`` (fault missing-intermediate).
    ssl loads certificates from files only: the leaf goes to a private temporary file (0600 in
    a fresh 0700 directory), removed at once."""
    with tempfile.TemporaryDirectory(prefix="target-server-leaf-") as directory:
        leaf = Path(directory) / "leaf.pem"
        leaf.write_text(first_certificate(cert_text), encoding="ascii")
        ctx.load_cert_chain(str(leaf), key, password=_no_password)


def load_site_context(cert: str, key: str, *, leaf_only: bool = False) -> ssl.SSLContext:
    """Server SSLContext with ``cert`` (fullchain PEM, leaf first) and ``key``; ``leaf_only``:
    with the first certificate of ``cert`` only (the chain dropped: fault missing-intermediate).
    Raises ConfigError naming the faulty file: missing/unreadable file, no
    certificate, no or encrypted key, key not matching the first certificate."""
    texts = {}
    for p, marker, what in ((cert, "-----BEGIN CERTIFICATE-----", "certificate"),
                            (key, "PRIVATE KEY-----", "private key")):
        try:
            texts[what] = Path(p).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ConfigError(p, f"cannot read {what} file: {exc.strerror or exc}") from exc
        if marker not in texts[what]:
            raise ConfigError(p, f"no PEM {what} found")
    if "ENCRYPTED" in texts["private key"]:
        raise ConfigError(key, "private key is encrypted and no password is configured")
    try:  # parse every certificate of the file on its own, to blame the right file
        ssl.create_default_context(cadata=texts["certificate"])
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(cert, f"invalid certificate PEM: {exc}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        if leaf_only:
            _load_leaf_only(ctx, texts["certificate"], key)
        else:
            ctx.load_cert_chain(cert, key, password=_no_password)
    except ConfigError as exc:
        raise ConfigError(key, exc.reason) from None
    except ssl.SSLError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise ConfigError(key, "private key does not match the certificate (first in "
                                   f"{os.path.basename(cert)}) [KEY_VALUES_MISMATCH]") from None
        raise ConfigError(key, f"cannot load private key: {exc}") from None
    except OSError as exc:
        raise ConfigError(cert, f"cannot load: {exc}") from None
    return ctx


def _config_errors(cfg: ServerConfig) -> list[ConfigError]:
    errors = []
    for listener in cfg.listeners:
        pairs = [(s.cert, s.key) for s in listener.sites]
        if listener.fault == "wrong-cert" and listener.fault_cert and listener.fault_key:
            pairs.append((listener.fault_cert, listener.fault_key))
        for cert, key in pairs:
            try:
                load_site_context(cert, key)
            except ConfigError as exc:
                errors.append(exc)
    return errors


def key_text(config_path: str | os.PathLike[str]) -> str:
    """Every site's private key as ``openssl pkey -text -noout`` prints it (the real binary),
    concatenated: the "show me what was installed" step of a careless test command (faults
    prints-key-text / leaves-key-text). Raises ConfigError when the config cannot be read and
    subprocess.CalledProcessError when openssl refuses a key."""
    cfg = load_config(config_path)
    keys = [site.key for listener in cfg.listeners for site in listener.sites]
    return "".join(subprocess.run(["openssl", "pkey", "-in", key, "-text", "-noout"], capture_output=True,
                                  check=True, text=True, timeout=30).stdout for key in keys)


def check_config(config_path: str | os.PathLike[str]) -> list[str]:
    """Config test. Returns a list of "<file>: <reason>" errors (empty = ok)."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return [str(exc)]
    return [str(e) for e in _config_errors(cfg)]


# --------------------------------------------------------------------------- serving


@dataclass
class _Site:
    config: SiteConfig
    context: ssl.SSLContext
    stamp: tuple[float, float, int, int] = (0.0, 0.0, 0, 0)


class _Backend:
    """One copy of a listener's sites, each with its current SSLContext: a plain listener has
    one, a load balancer (``backends`` in the config) one per backend. ``stale``: never reloads."""

    def __init__(self, config: ListenerConfig, name: str, *, stale: bool) -> None:
        self.config = config
        self.name = name  # in the log: the listener's address, "+ backend host:port" for a backend
        self.stale = stale
        self.leaf_only = config.fault == "missing-intermediate"
        self.sites = [_Site(s, load_site_context(s.cert, s.key, leaf_only=self.leaf_only), _stamp(s))
                      for s in config.sites]

    def site_for(self, server_name: str | None) -> _Site:
        if server_name:
            name = server_name.lower().rstrip(".")
            for site in self.sites:
                if name in site.config.server_names:
                    return site
            for site in self.sites:
                for pattern in site.config.server_names:
                    if pattern.startswith("*.") and name.count(".") >= 1 and name.split(".", 1)[1] == pattern[2:]:
                        return site
        return self.sites[0]

    def reload(self) -> int:
        """Re-read every site whose files changed; returns how many were reloaded successfully."""
        if self.stale:
            LOG.info("%s: SIGHUP ignored (fault: %s)", self.name, self.config.fault)
            return 0
        reloaded = 0
        for site in self.sites:
            names = ",".join(site.config.server_names) or "(default)"
            stamp = _stamp(site.config)
            if stamp == site.stamp:
                continue  # files unchanged: one process may serve a thousand sites
            try:
                site.context = load_site_context(site.config.cert, site.config.key, leaf_only=self.leaf_only)
                site.stamp = stamp
            except ConfigError as exc:
                LOG.error("%s site %s: reload failed, keeping the previous certificate: %s",
                          self.name, names, exc)
            else:
                reloaded += 1
                LOG.info("%s site %s: reloaded %s%s", self.name, names, site.config.cert,
                         " (leaf only, fault: missing-intermediate)" if self.leaf_only else "")
        return reloaded


class _Listener:
    """One listening port (and its backends' ports): SNI dispatch to the current SSLContext of
    each site; a load balancer's port picks the backend round-robin, one per connection."""

    def __init__(self, config: ListenerConfig) -> None:
        self.config = config
        if config.backends:
            last = len(config.backends) - 1
            self.backends = [
                _Backend(config, f"{config.address} backend {config.host}:{port}",
                         stale=config.fault == "stale" or (config.fault == "one-stale-backend" and i == last))
                for i, port in enumerate(config.backends)]
        else:
            self.backends = [_Backend(config, config.address, stale=config.fault == "stale")]
        self._turn = itertools.count()
        self.fault_context: ssl.SSLContext | None = None
        fallback_cert, fallback_key = config.sites[0].cert, config.sites[0].key
        if config.fault == "wrong-cert":
            assert config.fault_cert and config.fault_key
            self.fault_context = load_site_context(config.fault_cert, config.fault_key)
            fallback_cert, fallback_key = config.fault_cert, config.fault_key
        # The dispatch contexts: their SNI callback (called also without SNI) swaps in the
        # site's current context, so a reload takes effect for every new handshake. Their
        # own certificate (the default site's at start, the wrong one for that fault) is only
        # a fallback. ``dispatch`` serves ``port``; ``backend_dispatch[i]`` backend i's own port.
        self.dispatch = self._dispatch_context(fallback_cert, fallback_key, self._next_backend)
        self.backend_dispatch = [self._dispatch_context(fallback_cert, fallback_key, lambda b=b: b)
                                 for b in self.backends] if config.backends else []
        self.servers: list[asyncio.base_events.Server] = []

    def _dispatch_context(self, cert: str, key: str, backend: Any) -> ssl.SSLContext:
        """A server context whose SNI callback picks the site of ``backend()`` (a callable)."""
        if self.config.fault == "missing-intermediate" and self.fault_context is None:
            context = load_site_context(cert, key, leaf_only=True)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)

        def select(sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            try:
                sslobj.context = self.fault_context or backend().site_for(server_name).context
            except Exception:  # never let a callback error go unnoticed
                LOG.exception("%s: SNI selection failed for %r", self.config.address, server_name)
            return None

        context.sni_callback = select
        return context

    def _next_backend(self) -> _Backend:
        return self.backends[next(self._turn) % len(self.backends)]

    def reload(self) -> int:
        """Reload every backend (a stale one ignores it); returns how many sites were reloaded."""
        reloaded = sum(backend.reload() for backend in self.backends)
        if self.fault_context is not None:
            LOG.info("%s: serving the fault certificate (fault: wrong-cert)", self.config.address)
        return reloaded


def _stamp(site: SiteConfig) -> tuple[float, float, int, int]:
    """(mtime, mtime, inode, inode) of the cert and key files: a reload re-reads a site only
    when one of them changed (an atomic rename changes the inode)."""
    try:
        c, k = os.stat(site.cert), os.stat(site.key)
    except OSError:
        return (0.0, 0.0, 0, 0)
    return (c.st_mtime, k.st_mtime, c.st_ino, k.st_ino)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout=IDLE_SECONDS)
        if data:
            body = b"ok\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await asyncio.wait_for(writer.drain(), timeout=IDLE_SECONDS)
    except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def _raise_nofile_limit(wanted: int) -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
        if soft != resource.RLIM_INFINITY and soft < min(wanted, target):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(wanted, soft), target), hard))
    except (ImportError, ValueError, OSError):
        pass


def _write_pid_file(pid_file: str) -> None:
    tmp = f"{pid_file}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, pid_file)


def _reload_all(listeners: list[_Listener]) -> bool:
    """Reload every listener; True when a dies-after-reload listener reloaded a site (then the
    process must exit)."""
    dies = False
    for listener in listeners:
        if listener.reload() and listener.config.fault == "dies-after-reload":
            dies = True
    return dies


def _die_after_reload() -> None:
    """The dies-after-reload fault: exit at once, as a crash would (no cleanup, pid file kept)."""
    LOG.error("exiting right after a successful reload (fault: dies-after-reload)")
    for handler in LOG.handlers:
        handler.flush()
    os._exit(DIES_AFTER_RELOAD_EXIT)


async def _listen(listeners: list[_Listener]) -> bool:
    """Bind every listener's port and its backends' ports. False (every server opened so far
    closed, the error logged and on stderr) when a port cannot be bound."""
    for listener in listeners:
        contexts = [(listener.config.port, listener.dispatch),
                    *zip(listener.config.backends, listener.backend_dispatch, strict=True)]
        for port, context in contexts:
            try:
                listener.servers.append(await asyncio.start_server(
                    _handle,
                    listener.config.host,
                    port,
                    ssl=context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                    reuse_address=True,
                    backlog=128,
                ))
            except OSError as exc:
                address = f"{listener.config.host}:{port}"
                LOG.error("cannot listen on %s: %s", address, exc)
                print(f"cannot listen on {address}: {exc.strerror or exc}", file=sys.stderr)
                for other in listeners:
                    for server in other.servers:
                        server.close()
                return False
    return True


async def _serve(cfg: ServerConfig, pid_file: str) -> int:
    loop = asyncio.get_running_loop()

    def exception_handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        LOG.debug("asyncio: %s %s", context.get("message"), exc)

    loop.set_exception_handler(exception_handler)
    listeners = [_Listener(lc) for lc in cfg.listeners]
    _raise_nofile_limit(sum(len(lc.ports) for lc in cfg.listeners) * 2 + 256)
    stop = asyncio.Event()

    def on_hup() -> None:
        LOG.info("SIGHUP: reloading certificates")
        if _reload_all(listeners):
            loop.call_later(0.05, _die_after_reload)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    if not await _listen(listeners):
        return 1
    _write_pid_file(pid_file)
    LOG.info("serving %d listener(s), pid %d", len(listeners), os.getpid())
    await stop.wait()
    LOG.info("stopping")
    for listener in listeners:
        for server in listener.servers:
            server.close()
    try:
        if Path(pid_file).read_text().strip() == str(os.getpid()):
            os.unlink(pid_file)
    except OSError:
        pass
    return 0


def serve(config_path: str, pid_file: str, log_file: str | None = None) -> int:
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        cfg = load_config(config_path)
        # Refuse to start on a bad file, like nginx refuses to start on a failed config.
        errors = _config_errors(cfg)
        if errors:
            raise errors[0]
    except ConfigError as exc:
        LOG.error("configuration test failed: %s", exc)
        print(f"configuration test failed: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_serve(cfg, pid_file))


# --------------------------------------------------------------------------- control


def _read_pid(pid_file: str) -> int | None:
    try:
        text = Path(pid_file).read_text(encoding="ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _is_our_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # guard against a recycled pid
        try:
            data = cmdline.read_bytes()
        except OSError:
            return True
        if b"target_server" not in data:
            return False
        try:  # a zombie still answers kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except (OSError, IndexError):
            pass
    return True


def reload_server(pid_file: str, config_path: str | None = None) -> tuple[int, str]:
    """The ``reload`` command as a function: returns (exit code, message)."""
    if config_path:
        try:
            cfg = load_config(config_path)
        except ConfigError as exc:
            return 1, f"reload failed: configuration file {exc}"
        for listener in cfg.listeners:
            if listener.fault == "reload-fails":
                return 1, (
                    "reload failed: Job for target-server.service failed because the control process "
                    f"exited with error code. [emerg] listener {listener.address}: "
                    f'SSL_CTX_use_PrivateKey("{listener.sites[0].key}") failed (fault: reload-fails)'
                )
    pid = _read_pid(pid_file)
    if pid is None or not _is_our_process(pid):
        return 0, "not running; nothing to reload"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return 0, "not running; nothing to reload"
    return 0, f"reload signal sent to pid {pid}"


def stop_pid_file(pid_file: str, timeout: float = 10.0) -> str:
    pid = _read_pid(pid_file)
    if pid is None or not _is_our_process(pid):
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_our_process(pid):
            return f"stopped pid {pid}"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(pid_file)
    except OSError:
        pass
    return f"killed pid {pid} (did not stop within {timeout:.0f} s)"


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_tail(log_file: str | None) -> str:
    parts = []
    if log_file:
        try:
            parts.append(Path(log_file).read_text(encoding="utf-8", errors="replace")[-2000:])
        except OSError:
            pass
    return "\n".join(p for p in parts if p.strip())


def start_server(
    config_path: str | os.PathLike[str],
    pid_file: str | os.PathLike[str],
    log_file: str | os.PathLike[str] | None = None,
    *,
    timeout: float = 15.0,
    python: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``serve`` in a child process and wait (at most ``timeout`` seconds)
    until the pid file holds its pid and every listener port accepts TCP.
    Raises TargetServerError (with the server's stderr/log tail) if it exits or the
    wait times out; the child is stopped in that case. Stop it with stop_server."""
    config_path, pid_file = str(config_path), str(pid_file)
    log = str(log_file) if log_file else None
    cfg = load_config(config_path)
    try:
        os.unlink(pid_file)
    except FileNotFoundError:
        pass
    src_root = str(Path(__file__).resolve().parents[2])  # .../src, holds cert_rollout
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    cmd = [python or sys.executable, "-m", "cert_rollout.localcloud.target_server", "serve",
           "--config", config_path, "--pid-file", pid_file]
    if log:
        cmd += ["--log", log]
    errfile = tempfile.TemporaryFile()  # noqa: SIM115 - closed below once the child runs; not a pipe: nobody drains it while serving
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errfile, start_new_session=True)
    except OSError:
        errfile.close()
        raise
    deadline = time.monotonic() + timeout
    pending = [(lc.host, port) for lc in cfg.listeners for port in lc.ports]
    while True:
        code = proc.poll()
        if code is not None:
            errfile.seek(0)
            err = errfile.read()[-2000:].decode("utf-8", "replace")
            errfile.close()
            raise TargetServerError(
                f"target server exited with code {code} before serving: {err.strip()} {_log_tail(log)}"
            )
        if _read_pid(pid_file) == proc.pid:
            pending = [hp for hp in pending if not _port_accepts(*hp)]
            if not pending:
                errfile.close()  # the child keeps its own descriptor
                return proc
        if time.monotonic() > deadline:
            stop_server(proc)
            errfile.close()
            what = "pid file" if _read_pid(pid_file) != proc.pid else f"ports {pending[:5]}"
            raise TargetServerError(f"target server not ready after {timeout:.0f} s (waiting for {what})")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM the server started by start_server, wait up to ``timeout`` s, then
    SIGKILL. Returns the exit code. Safe to call twice."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="target_server", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the TLS listeners")
    p.add_argument("--config", required=True)
    p.add_argument("--pid-file", required=True)
    p.add_argument("--log")
    p = sub.add_parser("check", help="configuration test (like nginx -t)")
    p.add_argument("--config", required=True)
    p.add_argument("--print-key-text", action="store_true", help="print each key with openssl pkey -text")
    p.add_argument("--key-text-file", help="write each key's openssl pkey -text output to this file")
    p = sub.add_parser("reload", help="SIGHUP the running server (like systemctl try-reload-or-restart)")
    p.add_argument("--pid-file", required=True)
    p.add_argument("--config")
    p = sub.add_parser("stop", help="stop the running server")
    p.add_argument("--pid-file", required=True)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args.config, args.pid_file, args.log)
    if args.command == "check":
        if args.print_key_text or args.key_text_file:
            text = key_text(args.config)
            if args.key_text_file:
                Path(args.key_text_file).write_text(text)
            else:
                print(text, end="")
        errors = check_config(args.config)
        if errors:
            print(f"configuration test failed: {errors[0]}", file=sys.stderr)
            for more in errors[1:]:
                print(f"configuration test failed: {more}", file=sys.stderr)
            return 1
        print("configuration test is successful")
        return 0
    if args.command == "reload":
        code, message = reload_server(args.pid_file, args.config)
        print(message, file=sys.stderr if code else sys.stdout)
        return code
    if args.command == "stop":
        print(stop_pid_file(args.pid_file))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
