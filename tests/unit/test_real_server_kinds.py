"""The real server kinds of the local cloud (src/cert_rollout/localcloud/real_servers.py): the
scenario's ``server:`` choices, the inventory kinds they register as and the server kinds'
defaults (rollout_core/target_defaults.py) agree; the generated Apache and Tomcat configs name
the target's files and the "reload-fails" edit breaks exactly the config the test command reads.
No server is started here (tests/e2e/test_real_apache_tomcat.py runs them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import get_args

import pytest
from rollout_core.target_defaults import DEFAULT_DIRECTORIES, SERVER_KINDS

from cert_rollout.localcloud import real_servers
from cert_rollout.localcloud.real_servers import RealServer, Site
from cert_rollout.localcloud.scenario import TargetSpec
from cert_rollout.localcloud.targets import Fault


def test_scenario_server_choices_are_embedded_and_the_real_kinds() -> None:
    choices = set(get_args(TargetSpec.model_fields["server"].annotation))
    assert choices == {"embedded", *real_servers.KINDS}


def test_each_real_kind_registers_as_a_server_kind_with_defaults() -> None:
    assert set(real_servers.INVENTORY_KIND) == set(real_servers.KINDS)
    for kind in real_servers.INVENTORY_KIND.values():
        assert kind in SERVER_KINDS and kind in DEFAULT_DIRECTORIES


def test_real_faults_are_scenario_faults() -> None:
    assert real_servers.REAL_FAULTS - {None} <= set(get_args(Fault))


def test_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(real_servers.RealServerError, match="server lighttpd is not a real server kind"):
        real_servers.add(None, "lighttpd", "t", "arn", "web.example")  # type: ignore[arg-type]


def apache(tmp_path: Path) -> RealServer:
    sites = [Site("web-1", "web.example", tmp_path / "web-1.crt", tmp_path / "web-1.key", chain=tmp_path / "web-1.chain.pem"),
             Site("shop-1", "shop.example", tmp_path / "shop-1.crt", tmp_path / "shop-1.key",
                  chain=tmp_path / "shop-1.chain.pem")]
    return RealServer("apache", 38443, tmp_path / "apache-38443", sites)


def test_apache_config_has_one_virtual_host_per_site_with_leaf_chain_and_key(tmp_path: Path) -> None:
    text = apache(tmp_path).apache_config()
    assert text.count("<VirtualHost 127.0.0.1:38443>") == 2 and "Listen 127.0.0.1:38443 https" in text
    for name in ("web-1", "shop-1"):
        for directive, suffix in (("SSLCertificateFile", ".crt"), ("SSLCertificateChainFile", ".chain.pem"),
                                  ("SSLCertificateKeyFile", ".key")):
            assert f"    {directive} {tmp_path / name}{suffix}\n" in text
    assert text.index("ServerName web.example") < text.index("ServerName shop.example")  # the first is the default


def test_apache_reload_fails_edit_is_a_directive_apache2_t_rejects(tmp_path: Path) -> None:
    server = apache(tmp_path)
    server.prefix.mkdir()
    server.write_config()
    server.break_config()
    text = server.config.read_text()
    assert text.count("ThisDirectiveIsATypo") == 1 and "ThisDirectiveIsATypo on\nSSLProtocol" in text


def tomcat(tmp_path: Path) -> RealServer:
    site = Site("app-1", "app.example", tmp_path / "app-1.p12", password_file=tmp_path / "app-1.p12.pass")
    return RealServer("tomcat", 38444, tmp_path / "tomcat-38444", [site], shutdown_port=38445)


def test_tomcat_server_xml_names_the_keystore_and_its_password_file(tmp_path: Path) -> None:
    root = ET.fromstring(tomcat(tmp_path).tomcat_config())
    assert root.get("port") == "38445"
    connector = root.find("./Service/Connector")
    assert connector is not None and connector.get("port") == "38444" and connector.get("bindOnInit") == "false"
    cert = connector.find("./SSLHostConfig[@hostName='app.example']/Certificate")
    assert cert is not None
    assert cert.get("certificateKeystoreFile") == str(tmp_path / "app-1.p12")
    assert cert.get("certificateKeystorePasswordFile") == str(tmp_path / "app-1.p12.pass")
    assert cert.get("certificateKeyAlias") == "app-1"  # the installer's default alias: the targetId


def test_tomcat_reload_fails_edit_makes_server_xml_unparseable(tmp_path: Path) -> None:
    server = tomcat(tmp_path)
    (server.prefix / "conf").mkdir(parents=True)
    server.config.write_text(server.tomcat_config())
    server.break_config()
    with pytest.raises(ET.ParseError):
        ET.fromstring(server.config.read_text())


def test_a_missing_server_is_named_and_reads_as_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(real_servers, "TOMCAT_HOME", tmp_path / "no-tomcat")
    with pytest.raises(real_servers.RealServerError, match=r"tomcat10 is not installed \(.*no-tomcat/bin/catalina.sh"):
        real_servers.catalina()
    assert not real_servers.available("tomcat")
    monkeypatch.setattr(real_servers.shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(real_servers.RealServerError, match="apache2 is not installed"):
        real_servers.require("apache")
    assert not real_servers.available("apache") and not real_servers.available("apache2")
