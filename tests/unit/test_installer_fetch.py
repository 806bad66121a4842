"""The installer's bundle fetch without the AWS CLI (installer/install_bundle.py "fetch" section).

Signature Version 4 is checked against the published test suite's post-vanilla vector and
against botocore's own signer, which also verifies every request a fake Secrets Manager (a
loopback HTTP server speaking JSON 1.1) receives. The credential sources (environment, shared
credentials file, IMDSv2 on a fake metadata server), the path order (botocore, the
standard-library client, the AWS CLI fallback) and each named reason are tested in process; the
whole installer runs once without `aws` on its PATH and once refused by Secrets Manager, and
refuses a target whose openssl or commands are missing before anything is touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tests.unit.test_installer import INSTALLER, INSTALLER_PYTHON, SECRET_ARN, Node, files_for, node, pki

__all__ = ["node", "pki"]
ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
KEY_ID, SECRET_KEY, TOKEN = "AKIDNODE", "node/secret+key", "node-session-token"
VERSION = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"


def _load_installer() -> Any:
    spec = importlib.util.spec_from_file_location("_install_bundle_fetch", INSTALLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ib = _load_installer()


def botocore_signature(method: str, url: str, headers: dict[str, str], body: bytes, region: str, service: str,
                       key: str, secret: str, token: str | None) -> str:
    """The signature botocore's SigV4Auth computes for the same request (its X-Amz-Date)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    request.context["timestamp"] = {k.lower(): v for k, v in headers.items()}["x-amz-date"]
    auth = SigV4Auth(BotoCredentials(key, secret, token), service, region)
    return str(auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request))


class FakeSecretsManager:
    """JSON 1.1 Secrets Manager on loopback: verifies each request's SigV4 signature with
    botocore, records it, and answers from ``answers`` (status, body) in turn (the last repeats)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";") if auth else []
                headers = {name: self.headers[name] for name in signed}
                scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if auth else []
                expected = botocore_signature("POST", f"http://{self.headers['Host']}{self.path}", headers, body,
                                              scope[2], scope[3], KEY_ID, SECRET_KEY,
                                              self.headers.get("X-Amz-Security-Token")) if auth else None
                fake.requests.append({"headers": dict(self.headers), "body": json.loads(body or b"{}"),
                                      "signed": signed, "valid": bool(expected) and auth.endswith(
                                          f"Signature={expected}"), "scope": scope})
                status, answer = fake.answers[min(len(fake.requests), len(fake.answers)) - 1]
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, secret: dict[str, Any] | str) -> None:
        text = secret if isinstance(secret, str) else json.dumps(secret)
        self.answers = [(200, {"ARN": SECRET_ARN, "Name": "rollout/web", "SecretString": text, "VersionId": "v1"})]


class FakeImds:
    """IMDSv2 on loopback: token PUT, role name, the role's credentials; records the paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802
                fake.paths.append("PUT " + self.path)
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._answer(200 if ok else 400, "imds-token")

            def do_GET(self) -> None:  # noqa: N802
                fake.paths.append("GET " + self.path)
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
                    return self._answer(401, "")
                if self.path == "/latest/meta-data/iam/security-credentials/":
                    return self._answer(200, "node-role")
                if self.path == "/latest/meta-data/iam/security-credentials/node-role":
                    return self._answer(200, json.dumps({"Code": "Success", "AccessKeyId": KEY_ID,
                                                         "SecretAccessKey": SECRET_KEY, "Token": TOKEN}))
                return self._answer(404, "")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def sm() -> Iterator[FakeSecretsManager]:
    fake = FakeSecretsManager()
    yield fake
    fake.httpd.shutdown()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No credentials, endpoint, region or fetch setting from this machine; HOME is tmp_path,
    instance metadata off, PATH without any `aws`."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "CERT_ROLLOUT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path


def fail_reason(call: Any) -> tuple[int, str | None, str]:
    with pytest.raises(ib.RolloutFailure) as info:
        call()
    return info.value.code, info.value.reason, str(info.value)


# --------------------------------------------------------------------------- signature


def test_sigv4_matches_the_published_post_vanilla_vector() -> None:
    # AWS Signature Version 4 test suite, post-vanilla (AKIDEXAMPLE, us-east-1, service "service")
    credentials = ib.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, "test vector")
    auth = ib.sigv4_authorization("POST", "https://example.amazonaws.com/",
                                  {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}, b"",
                                  "us-east-1", "service", credentials, "20150830T123600Z")
    assert auth == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                    "SignedHeaders=host;x-amz-date, "
                    "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")


@pytest.mark.parametrize("token", [None, "session/token+="])
def test_sigv4_matches_botocore_on_a_get_secret_value_request(token: str | None) -> None:
    body = json.dumps({"SecretId": SECRET_ARN, "VersionId": VERSION}).encode()
    headers = {"Host": "secretsmanager.eu-west-1.amazonaws.com", "X-Amz-Date": "20261202T151500Z",
               "Content-Type": ib.JSON_11, "X-Amz-Target": ib.TARGET_GET_SECRET_VALUE}
    if token:
        headers["X-Amz-Security-Token"] = token
    auth = ib.sigv4_authorization("POST", "https://secretsmanager.eu-west-1.amazonaws.com/", headers, body,
                                  REGION, "secretsmanager", ib.Credentials(KEY_ID, SECRET_KEY, token, "test"),
                                  headers["X-Amz-Date"])
    expected = botocore_signature("POST", "https://secretsmanager.eu-west-1.amazonaws.com/", headers, body, REGION,
                                  "secretsmanager", KEY_ID, SECRET_KEY, token)
    assert auth.endswith("Signature=" + expected)
    assert f"Credential={KEY_ID}/20261202/{REGION}/secretsmanager/aws4_request" in auth


def test_partition_dns_suffixes_are_botocores() -> None:
    import botocore

    partitions = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())["partitions"]
    samples = {"aws": "eu-west-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1", "aws-iso": "us-iso-east-1",
               "aws-iso-b": "us-isob-east-1", "aws-iso-e": "eu-isoe-west-1", "aws-iso-f": "us-isof-south-1",
               "aws-eusc": "eusc-de-east-1"}
    assert {p["id"] for p in partitions} <= set(samples), "a new partition: add it to PARTITION_DNS_SUFFIXES"
    for partition in partitions:
        assert ib.partition_dns_suffix(samples[partition["id"]]) == partition["outputs"]["dnsSuffix"], partition["id"]


def test_endpoint_order(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ib.secrets_manager_endpoint("cn-northwest-1") == "https://secretsmanager.cn-northwest-1.amazonaws.com.cn"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert ib.secrets_manager_endpoint(REGION) == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:2")
    assert ib.secrets_manager_endpoint(REGION) == "http://127.0.0.1:2"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert ib.secrets_manager_endpoint(REGION) == "https://secretsmanager.eu-west-1.amazonaws.com"


def test_user_agent_is_versioned_and_counted_as_a_node_by_the_bench() -> None:
    from cert_rollout.localcloud.bench import NODE_USER_AGENT, ApiCounter

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"acm-cert-rollout-installer/{version}" == ib.USER_AGENT
    assert ib.USER_AGENT.startswith(NODE_USER_AGENT)
    counter = ApiCounter()
    auth = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20261202/{REGION}/secretsmanager/aws4_request, SignedHeaders=host"
    for ua in (ib.USER_AGENT, f"Botocore/1.43.127 ua/2.1 md/x {ib.USER_AGENT}", "aws-cli/1.46.3 Python/3.12"):
        counter._count({"HTTP_USER_AGENT": ua, "HTTP_AUTHORIZATION": auth,
                        "HTTP_X_AMZ_TARGET": ib.TARGET_GET_SECRET_VALUE}, None)
    assert counter.counts == {"node:secretsmanager:GetSecretValue": 3}


# --------------------------------------------------------------------------- credentials and paths


def test_stdlib_client_with_environment_credentials(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                    sm: FakeSecretsManager) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sm.url)
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "stdlib")
    sm.serve({"certificate": "x"})
    result: dict[str, Any] = {}
    assert json.loads(ib.secret_string(SECRET_ARN, VERSION, 10, result)) == {"certificate": "x"}
    [request] = sm.requests
    assert result["fetchPath"] == "stdlib" and request["valid"], request
    assert request["body"] == {"SecretId": SECRET_ARN, "VersionId": VERSION}
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-amz-target"] == "secretsmanager.GetSecretValue"
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers["user-agent"] == ib.USER_AGENT and headers["x-amz-security-token"] == TOKEN
    assert request["scope"][2:4] == [REGION, "secretsmanager"]  # the ARN's region


def test_shared_credentials_file_and_profile(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                             sm: FakeSecretsManager) -> None:
    aws = clean_env / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(f"[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n\n"
                                     f"[node]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET_KEY}\n")
    monkeypatch.setenv("AWS_PROFILE", "node")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sm.url)
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "stdlib")
    sm.serve("{}")
    assert ib.secret_string(SECRET_ARN, "", 10) == "{}"
    [request] = sm.requests
    assert request["valid"] and request["body"] == {"SecretId": SECRET_ARN}  # no VersionId: AWSCURRENT
    assert "X-Amz-Security-Token" not in request["headers"]
    other = clean_env / "elsewhere.ini"  # AWS_SHARED_CREDENTIALS_FILE wins over ~/.aws/credentials
    other.write_text(f"[node]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET_KEY}\n")
    (aws / "credentials").unlink()
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(other))
    assert ib.secret_string(SECRET_ARN, "", 10) == "{}"


def test_imdsv2_credentials(clean_env: Path, monkeypatch: pytest.MonkeyPatch, sm: FakeSecretsManager) -> None:
    imds = FakeImds()
    try:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", sm.url)
        monkeypatch.setenv("CERT_ROLLOUT_FETCH", "stdlib")
        sm.serve("{}")
        assert ib.secret_string(SECRET_ARN, "", 10) == "{}"
    finally:
        imds.httpd.shutdown()
    assert imds.paths == ["PUT /latest/api/token", "GET /latest/meta-data/iam/security-credentials/",
                          "GET /latest/meta-data/iam/security-credentials/node-role"]
    [request] = sm.requests
    assert request["valid"] and request["headers"]["X-Amz-Security-Token"] == TOKEN


def test_no_credentials_anywhere_is_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "stdlib")
    code, reason, message = fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))
    assert (code, reason) == (13, "bundle-credentials-missing")
    assert "AWS_ACCESS_KEY_ID" in message and "credentials" in message and "AWS_EC2_METADATA_DISABLED" in message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)  # half a key pair is no credentials either
    assert fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))[1] == "bundle-credentials-missing"


@pytest.mark.parametrize(("status", "answer", "reason"), [
    (400, {"__type": "AccessDeniedException", "message": "User: node is not authorized"}, "bundle-access-denied"),
    (400, {"__type": "com.amazonaws#UnrecognizedClientException"}, "bundle-access-denied"),
    (400, {"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find it"}, "bundle-fetch-failed"),
])
def test_error_answers_are_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch, sm: FakeSecretsManager,
                                 status: int, answer: dict[str, Any], reason: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sm.url)
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "stdlib")
    sm.answers = [(status, answer)]
    code, named, message = fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))
    assert (code, named) == (13, reason) and answer["__type"].rsplit("#")[-1] in message
    assert SECRET_KEY not in message and len(sm.requests) == 1  # a refusal is not retried


def test_throttling_and_server_errors_are_retried(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                  sm: FakeSecretsManager) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sm.url)
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "stdlib")
    sm.answers = [(400, {"__type": "ThrottlingException"}), (500, {"__type": "InternalServiceError"}),
                  (200, {"SecretString": "{}"})]
    assert ib.secret_string(SECRET_ARN, "", 10) == "{}" and len(sm.requests) == 3
    sm.requests.clear()
    sm.answers = [(500, {"__type": "InternalServiceError"})]
    assert fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))[1] == "bundle-fetch-failed"
    assert len(sm.requests) == ib.FETCH_ATTEMPTS


def test_unreachable_endpoint_is_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for path in ("stdlib", "botocore"):
        monkeypatch.setenv("CERT_ROLLOUT_FETCH", path)
        code, reason, message = fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 5))
        assert (code, reason) == (13, "bundle-endpoint-unreachable"), (path, message)


def test_auto_takes_botocore_when_importable(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                             sm: FakeSecretsManager) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sm.url)
    sm.serve("{}")
    result: dict[str, Any] = {}
    assert ib.secret_string(SECRET_ARN, VERSION, 10, result) == "{}"
    [request] = sm.requests
    assert result["fetchPath"] == "botocore" and request["valid"]
    assert ib.USER_AGENT in request["headers"]["User-Agent"] and "Botocore/" in request["headers"]["User-Agent"]
    sm.answers = [(400, {"__type": "AccessDeniedException", "message": "denied"})]
    assert fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))[1] == "bundle-access-denied"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    assert fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))[1] == "bundle-credentials-missing"


def test_auto_without_botocore_uses_the_stdlib_client_then_the_cli(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  sm: FakeSecretsManager) -> None:
    monkeypatch.setattr(ib, "_botocore_importable", lambda: False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sm.url)
    sm.serve("{}")
    result: dict[str, Any] = {}
    assert ib.secret_string(SECRET_ARN, "", 10, result) == "{}" and result["fetchPath"] == "stdlib"
    # no credentials for the small client, and an AWS CLI on PATH: the CLI gets its chance
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    aws = clean_env / "bin" / "aws"
    aws.write_text(f"#!{sys.executable}\nimport sys; print('{{\"from\": \"cli\"}}')\n")
    aws.chmod(0o755)
    assert json.loads(ib.secret_string(SECRET_ARN, "", 10, result)) == {"from": "cli"}
    assert result["fetchPath"] == "aws-cli"


@pytest.mark.parametrize(("stderr", "reason"), [
    ("Unable to locate credentials. You can configure credentials by running \"aws configure\".",
     "bundle-credentials-missing"),
    ("An error occurred (AccessDeniedException) when calling the GetSecretValue operation: no", "bundle-access-denied"),
    ("Could not connect to the endpoint URL: \"https://secretsmanager.eu-west-1.amazonaws.com/\"",
     "bundle-endpoint-unreachable"),
    ("An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation", "bundle-fetch-failed"),
])
def test_aws_cli_errors_are_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, reason: str) -> None:
    aws = clean_env / "bin" / "aws"
    aws.write_text(f"#!{sys.executable}\nimport sys; sys.stderr.write({stderr!r}); sys.exit(254)\n")
    aws.chmod(0o755)
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "aws-cli")
    assert fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))[:2] == (13, reason)


def test_unknown_fetch_setting_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERT_ROLLOUT_FETCH", "curl")
    code, _, message = fail_reason(lambda: ib.secret_string(SECRET_ARN, "", 10))
    assert code == ib.EXIT_PARAMS and "auto, botocore, stdlib, aws-cli" in message


# --------------------------------------------------------------------------- the whole installer


def run_installer(node: Node, target: dict[str, Any], path: str, **env: str) -> tuple[int, dict[str, Any], str]:
    """The installer as the document runs it, with ``path`` as its whole PATH."""
    full = {**node.env("install", target, expected_serial=env.pop("expected_serial", "")), "PATH": path, **env}
    proc = subprocess.run([INSTALLER_PYTHON, str(INSTALLER)], env=full, capture_output=True, text=True, timeout=60)
    [line] = proc.stdout.splitlines()
    result = json.loads(line[len("ROLLOUT_RESULT "):])
    assert result["exitCode"] == proc.returncode
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr and SECRET_KEY not in proc.stdout + proc.stderr
    return proc.returncode, result, proc.stderr


def bare_path(node: Node) -> str:
    (node.bin / "aws").unlink()
    path = f"{node.bin}:/usr/bin:/bin"
    if shutil.which("aws", path=path):
        pytest.skip("this machine has an AWS CLI in /usr/bin or /bin")
    return path


def test_install_without_the_aws_cli(node: Node, pki: dict[str, Any], sm: FakeSecretsManager) -> None:
    sm.serve(pki["new"].secret())
    target = node.target(files_for(node))
    code, result, err = run_installer(node, target, bare_path(node), CERT_ROLLOUT_FETCH="stdlib",
                                      AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                                      AWS_ENDPOINT_URL=sm.url, AWS_EC2_METADATA_DISABLED="true")
    assert (code, result["status"], result["fetchPath"]) == (0, "ok", "stdlib"), result
    assert "standard-library client, credentials from the environment" in err
    assert (node.ssl / "privkey.pem").read_text() == pki["new"].key_pem
    assert sm.requests[0]["valid"]


def test_a_refused_fetch_changes_no_file(node: Node, pki: dict[str, Any], sm: FakeSecretsManager) -> None:
    (node.ssl / "fullchain.pem").write_text("old chain\n")
    sm.answers = [(400, {"__type": "AccessDeniedException", "message": "not authorized"})]
    code, result, _ = run_installer(node, node.target(files_for(node)), bare_path(node), CERT_ROLLOUT_FETCH="stdlib",
                                    AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                                    AWS_ENDPOINT_URL=sm.url, AWS_EC2_METADATA_DISABLED="true")
    assert (code, result["reason"], result["stage"]) == (13, "bundle-access-denied", "fetch"), result
    assert sorted(p.name for p in node.ssl.iterdir()) == ["fullchain.pem"]
    assert (node.ssl / "fullchain.pem").read_text() == "old chain\n"


def test_missing_openssl_is_named_before_anything_is_touched(node: Node, pki: dict[str, Any]) -> None:
    node.put_secret(pki["new"])
    files = [{"path": str(node.ssl / "keystore.p12"), "content": "pkcs12"}]
    code, result, _ = run_installer(node, node.target(files), str(node.bin))  # no openssl there
    assert (code, result["reason"]) == (ib.EXIT_PREREQUISITE, "openssl-missing"), result
    assert "keystore.p12" in result["error"] and "nothing changed" in result["error"]
    assert not node.aws_args.exists() and not node.state.exists()  # before the fetch and the lock
    assert list(node.ssl.iterdir()) == []


@pytest.mark.parametrize("which", ["test", "reload"])
def test_missing_command_program_is_named(node: Node, pki: dict[str, Any], which: str) -> None:
    node.put_secret(pki["new"])
    missing = ["certrollout-no-such-server", "-t"]
    target = node.target(files_for(node), **{which: missing})
    code, result, _ = run_installer(node, target, f"{node.bin}:/usr/bin:/bin")
    assert (code, result["reason"]) == (ib.EXIT_PREREQUISITE, "command-missing"), result
    assert "certrollout-no-such-server" in result["error"] and f"{which}Command" in result["error"]
    assert not node.aws_args.exists() and not node.state.exists()
    assert list(node.ssl.iterdir()) == []


def test_reasons_are_known_to_the_callback() -> None:
    from rollout_core.domain.ssm_status import INSTALLER_REASONS

    text = INSTALLER.read_text() + (ROOT / "documents" / "install-bundle.ssm.yaml").read_text()
    for reason in ("bundle-credentials-missing", "bundle-access-denied", "bundle-endpoint-unreachable",
                   "bundle-fetch-failed", "openssl-missing", "command-missing", "python-missing", "python-too-old"):
        assert reason in text and INSTALLER_REASONS[reason] is False, reason


def test_installer_source_parses_as_python_3_8() -> None:
    import ast

    ast.parse(INSTALLER.read_text(), feature_version=(3, 8))  # the document's floor (python3 >= 3.8)
