"""Per-server-kind defaults: complete a short inventory entry into a full Target item.

An operator registers a target with as little as
    {"targetId": "web-1", "certificateArn": ..., "host": ..., "port": 443, "instanceId": ...,
     "server": "nginx", "paths": {"directory": "/etc/nginx/tls", "name": "web"}}
and ``complete_target`` fills what that kind of server expects:

  kind     files (in paths.directory, named after paths.name)        test / reload
  nginx    NAME.fullchain.pem (fullchain 0644), NAME.key (key 0600)   nginx -t / nginx -s reload
  apache   NAME.crt (leaf), NAME.chain.pem (chain), NAME.key (key)    apachectl configtest / apachectl graceful
  haproxy  NAME.pem (combined: leaf, chain, key; 0600)                haproxy -c -f CFG /
                                                                      systemctl reload haproxy
  java     NAME.p12 (pkcs12 0600, alias NAME; password file           none / none (operator's restart
           NAME.p12.pass, see installer/install_bundle.py; with        command; Tomcat reloads on its own
           paths.passwordSecret the password comes from that           with reloadSSLHostConfigs)
           Secrets Manager secret and is written to NAME.p12.pass)
  generic  nothing: files, testCommand and reloadCommand must be given
  embedded nothing (the local test server; its entries are always complete)

Rules (kept simple on purpose):
- Whatever the entry already has wins: ``files`` given -> no default files; ``testCommand`` /
  ``reloadCommand`` present (even null) -> kept as given.
- ``paths`` keys: ``directory`` (absolute, default per kind below), ``name`` (default the
  targetId), ``config`` (haproxy only: the config file for ``haproxy -c -f``, default
  /etc/haproxy/haproxy.cfg), ``reload`` ("signal" | "systemctl", default "signal" for nginx
  and apache, "systemctl" for haproxy), ``owner`` / ``group`` (applied to every default file),
  ``passwordSecret`` (java only: the Secrets Manager secret, name or ARN, whose SecretString is
  the keystore password, e.g. "cert-rollout/keystores/web"; it must be under the stack's
  SecretPrefix, which TargetNodePolicy lets the node read; rules in models.TargetFile).
- ``paths`` is an input hint only: it is removed from the returned item.
- Default directories: nginx /etc/nginx/tls, apache /etc/apache2/tls, haproxy /etc/haproxy/certs,
  java /etc/ssl/java.

Java keystore password: with ``paths.passwordSecret`` the node's installer fetches it from
Secrets Manager for every install and also writes it to NAME.p12.pass (0600, rolled back with
the keystore) for the server's config; without it the installer keeps the password file
(creating a random password once).
The returned item is then validated by ``rollout_core.models.Target`` as usual.
"""

from __future__ import annotations

import copy
import posixpath
import re
from typing import Any

from rollout_core.models import PASSWORD_SUFFIX, default_mode

SERVER_KINDS = ("nginx", "apache", "haproxy", "java", "generic", "embedded")
DEFAULT_DIRECTORIES = {"nginx": "/etc/nginx/tls", "apache": "/etc/apache2/tls", "haproxy": "/etc/haproxy/certs",
                       "java": "/etc/ssl/java"}
HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # whole string: "$" would allow "web\n"


class TargetDefaultsError(ValueError):
    """The short entry cannot be completed (names the field)."""


_DEFAULT_FILES: dict[str, tuple[tuple[str, str], ...]] = {  # kind -> (file name suffix, content)
    "nginx": ((".fullchain.pem", "fullchain"), (".key", "key")),
    "apache": ((".crt", "leaf"), (".chain.pem", "chain"), (".key", "key")),
    "haproxy": ((".pem", "combined"),),
    "java": ((".p12", "pkcs12"),),
}


def default_files(kind: str, directory: str, name: str) -> list[dict[str, Any]]:
    """The files an operator of ``kind`` expects, in ``directory``, named after ``name``.

    Modes come from ``rollout_core.models.default_mode``: 0600 for key material (key,
    combined, pkcs12: never more than owner read/write + group read, models.KEY_MODE_FORBIDDEN),
    0644 for certificates; so every default file passes the Target model's mode rules."""
    files = []
    for suffix, content in _DEFAULT_FILES.get(kind, ()):
        files.append({"path": posixpath.join(directory, f"{name}{suffix}"), "content": content,
                      "mode": default_mode(content)})
    return files


def default_test_command(kind: str, paths: dict[str, Any]) -> list[str] | None:
    """The config test an operator of ``kind`` runs before a reload (None: no default)."""
    if kind == "nginx":
        return ["nginx", "-t"]
    if kind == "apache":
        return ["apachectl", "configtest"]
    if kind == "haproxy":
        config = paths.get("config") or HAPROXY_CONFIG
        if not isinstance(config, str) or not config.startswith("/"):
            raise TargetDefaultsError("paths.config must be an absolute path")
        return ["haproxy", "-c", "-f", config]
    return None


def default_reload_command(kind: str, paths: dict[str, Any]) -> list[str] | None:
    """The graceful reload of ``kind`` (None: no default). paths.reload picks the style."""
    style = paths.get("reload") or ("systemctl" if kind == "haproxy" else "signal")
    if style not in ("signal", "systemctl"):
        raise TargetDefaultsError('paths.reload must be "signal" or "systemctl"')
    if kind == "nginx":
        return ["nginx", "-s", "reload"] if style == "signal" else ["systemctl", "reload", "nginx"]
    if kind == "apache":
        return ["apachectl", "graceful"] if style == "signal" else ["systemctl", "reload", "apache2"]
    if kind == "haproxy":
        if style == "signal":
            raise TargetDefaultsError('haproxy has no "signal" reload default (a new process with -sf is '
                                      'needed): use paths.reload "systemctl" or give reloadCommand')
        return ["systemctl", "reload", "haproxy"]
    return None


_PATHS_KEYS = frozenset({"directory", "name", "config", "reload", "owner", "group", "passwordSecret"})


def _paths_hint(item: dict[str, Any], kind: str) -> dict[str, Any]:
    """Remove the ``paths`` hint from ``item`` and return it ({} when absent), checked: a
    mapping of the keys the module docstring lists; ``passwordSecret`` only for java, a
    non-empty secret name or ARN. Raises TargetDefaultsError naming the field."""
    paths = item.pop("paths", None) or {}
    if not isinstance(paths, dict):
        raise TargetDefaultsError("paths must be a mapping")
    unknown = set(paths) - _PATHS_KEYS
    if unknown:
        raise TargetDefaultsError(f"paths: unknown key(s) {', '.join(sorted(unknown))}")
    password_secret = paths.get("passwordSecret")
    if password_secret is not None:
        if kind != "java":
            raise TargetDefaultsError("paths.passwordSecret is for java targets only (the keystore password)")
        if not isinstance(password_secret, str) or not password_secret:
            raise TargetDefaultsError("paths.passwordSecret must be a Secrets Manager secret name or ARN")
    return paths


def _files_directory(kind: str, paths: dict[str, Any]) -> str:
    """``paths.directory`` or the kind's default directory, normalized; it must be absolute
    and printable (no newline, NUL ...). Raises TargetDefaultsError."""
    directory = paths.get("directory") or DEFAULT_DIRECTORIES[kind]
    if not isinstance(directory, str) or not directory.startswith("/"):
        raise TargetDefaultsError("paths.directory must be an absolute path")
    if not directory.isprintable():
        raise TargetDefaultsError("paths.directory must not contain control characters (newline, NUL, ...)")
    return posixpath.normpath(directory)


def _files_name(item: dict[str, Any], paths: dict[str, Any]) -> str:
    """``paths.name`` or the targetId: a plain file name (_NAME). Raises TargetDefaultsError."""
    name = paths.get("name") or item.get("targetId")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TargetDefaultsError("paths.name (or targetId) must be a plain file name")
    return name


def _completed_files(item: dict[str, Any], kind: str, paths: dict[str, Any]) -> list[dict[str, Any]]:
    """The kind's default files for ``item`` with ``paths.owner`` / ``paths.group`` applied to
    each, and for the java keystore ``paths.passwordSecret`` with its password file."""
    files = default_files(kind, _files_directory(kind, paths), _files_name(item, paths))
    password_secret = paths.get("passwordSecret")
    for f in files:
        for owner_key in ("owner", "group"):
            if paths.get(owner_key):
                f[owner_key] = paths[owner_key]
        if password_secret is not None and f["content"] == "pkcs12":
            f["passwordSecret"] = password_secret  # checked by models.TargetFile
            f["passwordFile"] = f["path"] + PASSWORD_SUFFIX  # for the server's config, as before
    return files


def complete_target(entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``entry`` with missing files / testCommand / reloadCommand filled from the
    server kind's defaults and the ``paths`` hint (removed from the result).

    Raises TargetDefaultsError for an unknown kind, a bad ``paths`` hint, or a generic entry
    without files."""
    item = copy.deepcopy(entry)
    kind = item.get("server") or "generic"
    if kind not in SERVER_KINDS:
        raise TargetDefaultsError(f"server must be one of {', '.join(SERVER_KINDS)} (got {kind!r})")
    paths = _paths_hint(item, kind)
    if kind in ("generic", "embedded"):
        if not item.get("files"):
            raise TargetDefaultsError(f"a {kind} target has no defaults: give files (and commands)")
        return item

    if not item.get("files"):
        item["files"] = _completed_files(item, kind, paths)
    if "testCommand" not in item:
        item["testCommand"] = default_test_command(kind, paths)
    if "reloadCommand" not in item:
        item["reloadCommand"] = default_reload_command(kind, paths)
    return item
