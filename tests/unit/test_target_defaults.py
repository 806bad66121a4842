"""rollout_core.target_defaults: completing a short inventory entry per server kind."""

from __future__ import annotations

import pytest
from rollout_core.models import Target
from rollout_core.target_defaults import TargetDefaultsError, complete_target

BASE = {"certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555",
        "targetId": "web-1", "host": "web.internal.example", "port": 443, "instanceId": "mi-0123456789abcdef0"}


def entry(**kw):
    return {**BASE, **kw}


def test_nginx_defaults_from_paths_hint():
    item = complete_target(entry(server="nginx", paths={"directory": "/etc/nginx/tls", "name": "web"}))
    assert "paths" not in item
    assert item["files"] == [
        {"path": "/etc/nginx/tls/web.fullchain.pem", "content": "fullchain", "mode": "0644"},
        {"path": "/etc/nginx/tls/web.key", "content": "key", "mode": "0600"}]
    assert item["testCommand"] == ["nginx", "-t"]
    assert item["reloadCommand"] == ["nginx", "-s", "reload"]
    Target.model_validate(item)  # a complete, valid inventory item


def test_nginx_systemctl_reload_and_default_directory_and_name():
    item = complete_target(entry(server="nginx", paths={"reload": "systemctl", "owner": "root", "group": "www-data"}))
    assert [f["path"] for f in item["files"]] == ["/etc/nginx/tls/web-1.fullchain.pem", "/etc/nginx/tls/web-1.key"]
    assert all(f["owner"] == "root" and f["group"] == "www-data" for f in item["files"])
    assert item["reloadCommand"] == ["systemctl", "reload", "nginx"]


def test_apache_cert_chain_key():
    item = complete_target(entry(server="apache", paths={"directory": "/etc/apache2/tls/", "name": "site"}))
    assert [(f["path"], f["content"]) for f in item["files"]] == [
        ("/etc/apache2/tls/site.crt", "leaf"), ("/etc/apache2/tls/site.chain.pem", "chain"),
        ("/etc/apache2/tls/site.key", "key")]
    assert item["testCommand"] == ["apachectl", "configtest"]
    assert item["reloadCommand"] == ["apachectl", "graceful"]
    Target.model_validate(item)


def test_haproxy_one_combined_pem_and_config_check():
    item = complete_target(entry(server="haproxy", paths={"directory": "/etc/haproxy/certs", "name": "web",
                                                          "config": "/etc/haproxy/haproxy.cfg"}))
    assert item["files"] == [{"path": "/etc/haproxy/certs/web.pem", "content": "combined", "mode": "0600"}]
    assert item["testCommand"] == ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]
    assert item["reloadCommand"] == ["systemctl", "reload", "haproxy"]
    Target.model_validate(item)


def test_haproxy_signal_reload_needs_an_explicit_command():
    with pytest.raises(TargetDefaultsError, match="reloadCommand"):
        complete_target(entry(server="haproxy", paths={"reload": "signal"}))
    item = complete_target(entry(server="haproxy", paths={"reload": "signal"}, reloadCommand=["/usr/local/bin/hup"]))
    assert item["reloadCommand"] == ["/usr/local/bin/hup"]


def test_java_pkcs12_keystore():
    item = complete_target(entry(server="java", paths={"directory": "/opt/tomcat/conf", "name": "tomcat"}))
    assert item["files"] == [{"path": "/opt/tomcat/conf/tomcat.p12", "content": "pkcs12", "mode": "0600"}]
    assert item["testCommand"] is None and item["reloadCommand"] is None


def test_given_values_win_and_input_is_not_changed():
    files = [{"path": "/srv/tls/cert.pem", "content": "fullchain"}, {"path": "/srv/tls/key.pem", "content": "key"}]
    raw = entry(server="nginx", files=files, testCommand=None, reloadCommand=["systemctl", "restart", "nginx"],
                paths={"directory": "/ignored"})
    item = complete_target(raw)
    assert item["files"] == files and item["testCommand"] is None
    assert item["reloadCommand"] == ["systemctl", "restart", "nginx"]
    assert raw["paths"] == {"directory": "/ignored"}  # the caller's dict is untouched


def test_generic_has_no_defaults():
    with pytest.raises(TargetDefaultsError, match="generic"):
        complete_target(entry(server="generic", paths={"directory": "/etc/tls"}))
    item = complete_target(entry(files=[{"path": "/etc/x.pem", "content": "combined"}], reloadCommand=["/bin/true"]))
    assert "testCommand" not in item and item["reloadCommand"] == ["/bin/true"]


@pytest.mark.parametrize("bad, field", [
    ({"server": "iis"}, "server"),
    ({"server": "nginx", "paths": {"directory": "etc/nginx"}}, "paths.directory"),
    ({"server": "nginx", "paths": {"name": "../x"}}, "paths.name"),
    ({"server": "nginx", "paths": {"dir": "/x"}}, "unknown key"),
    ({"server": "nginx", "paths": {"reload": "kill"}}, "paths.reload"),
    ({"server": "haproxy", "paths": {"config": "haproxy.cfg"}}, "paths.config"),
])
def test_bad_hints_name_the_field(bad, field):
    with pytest.raises(TargetDefaultsError, match=field.replace(".", r"\.")):
        complete_target(entry(**bad))


# --- modes and names the defaults produce pass the Target model's rules ----------------------


@pytest.mark.parametrize("kind", ["nginx", "apache", "haproxy", "java"])
def test_every_default_file_passes_the_target_mode_rules(kind):
    extra = {"reloadCommand": ["/usr/local/bin/reload"]} if kind == "java" else {}
    item = complete_target(entry(server=kind, paths={"owner": "root", "group": "ssl-cert"}, **extra))
    target = Target.model_validate(item)
    for f in target.files:
        mode = int(f.mode, 8)
        assert mode & 0o7000 == 0, f.path
        if f.content in ("key", "combined", "encrypted-key", "pkcs12"):
            assert mode & 0o7137 == 0, f.path
            assert f.mode == "0600"
        else:
            assert f.mode == "0644"


def test_given_files_without_modes_get_modes_that_pass():
    raw = entry(server="nginx", files=[{"path": "/srv/tls/cert.pem", "content": "fullchain"},
                                       {"path": "/srv/tls/key.pem", "content": "key"}])
    target = Target.model_validate(complete_target(raw))
    assert [f.mode for f in target.files] == ["0644", "0600"]


def test_given_world_readable_key_is_refused_by_the_model():
    from pydantic import ValidationError

    raw = entry(server="nginx", files=[{"path": "/srv/tls/key.pem", "content": "key", "mode": "0644"}])
    with pytest.raises(ValidationError, match=r"/srv/tls/key\.pem holds key material.*mode & 0o7137 == 0"):
        Target.model_validate(complete_target(raw))


@pytest.mark.parametrize("bad, field", [
    ({"server": "nginx", "paths": {"name": "web\n"}}, "paths.name"),
    ({"server": "nginx", "targetId": "web-1\n"}, "paths.name"),
    ({"server": "nginx", "paths": {"directory": "/etc/nginx/tls\n"}}, "paths.directory"),
    ({"server": "nginx", "paths": {"directory": "/etc/\x00nginx"}}, "paths.directory"),
])
def test_names_and_directories_are_matched_whole(bad, field):
    with pytest.raises(TargetDefaultsError, match=field.replace(".", r"\.")):
        complete_target(entry(**bad))


def test_java_keystore_password_from_secrets_manager():
    item = complete_target(entry(server="java", paths={"directory": "/opt/tomcat/conf", "name": "web",
                                                       "passwordSecret": "cert-rollout/keystores/web"}))
    assert item["files"] == [{"path": "/opt/tomcat/conf/web.p12", "content": "pkcs12", "mode": "0600",
                              "passwordSecret": "cert-rollout/keystores/web",
                              "passwordFile": "/opt/tomcat/conf/web.p12.pass"}]
    target = Target.model_validate(item)
    assert target.files[0].passwordSecret == "cert-rollout/keystores/web"
    assert target.install_settings()["files"][0]["passwordSecret"] == "cert-rollout/keystores/web"


def test_password_secret_hint_is_java_only_and_a_string():
    with pytest.raises(TargetDefaultsError, match="passwordSecret"):
        complete_target(entry(server="nginx", paths={"passwordSecret": "cert-rollout/keystores/web"}))
    with pytest.raises(TargetDefaultsError, match="passwordSecret"):
        complete_target(entry(server="java", paths={"passwordSecret": 42}))
