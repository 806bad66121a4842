#!/bin/sh
# Install the real servers the e2e "servers" tests use (Debian 12 packages): nginx, haproxy,
# apache2 (mod_ssl is in it), tomcat10 (its JRE brings java and keytool), openssl. Idempotent: installs only what is missing and runs `apt-get update` only when
# something must be installed and the package lists are missing or older than a day.
# Safe in CI: when not root and something is missing, prints what is missing and exits 0
# (the tests then skip with a reason); set INSTALL_SERVERS_STRICT=1 to exit 1 instead.
set -eu

need=""
# binary (a name on PATH or in /usr/sbin, or an absolute path):package
# (/usr/share/tomcat10 is cert_rollout.localcloud.real_servers.TOMCAT_HOME)
for pair in nginx:nginx haproxy:haproxy apache2:apache2 /usr/share/tomcat10/bin/catalina.sh:tomcat10 \
            keytool:tomcat10 openssl:openssl; do
    bin=${pair%:*}
    pkg=${pair##*:}
    if command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ]; then
        echo "install_servers: $bin already installed ($(command -v "$bin" 2>/dev/null || echo "/usr/sbin/$bin"))"
    else
        case " $need " in *" $pkg "*) ;; *) need="$need $pkg" ;; esac
    fi
done

if [ -z "$need" ]; then
    echo "install_servers: nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_servers: missing:$need; not root, skipping (run as root to install them)"
    [ "${INSTALL_SERVERS_STRICT:-0}" = "1" ] && exit 1
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_servers: missing:$need; no apt-get on this machine, skipping"
    [ "${INSTALL_SERVERS_STRICT:-0}" = "1" ] && exit 1
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
lists=/var/lib/apt/lists
if [ -z "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
    echo "install_servers: apt-get update (package lists missing or older than a day)"
    apt-get update -qq
else
    echo "install_servers: package lists are fresh; no apt-get update"
fi

echo "install_servers: installing$need"
# shellcheck disable=SC2086 - word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $need >/dev/null
# the Debian packages start a system nginx/haproxy/apache2/tomcat10 only when systemd runs; the
# tests start their own instances with their own prefix and ports, so nothing else is needed.
for pkg in $need; do
    echo "install_servers: installed $pkg ($(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo '?'))"
done
