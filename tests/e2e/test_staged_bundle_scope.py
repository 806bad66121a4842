"""Issue 11, Done when: two certificates on two nodes; the node of certificate A cannot read B's
staged bundle (AccessDenied on the local cloud, decided by the enforced policies: the node role's
identity policy and the staged secret's resource policy, localcloud/iam.py + policy.py), it reads
its own while its rollout runs, and after the rollouts no staged bundle remains readable.

Each read is made with the node's own session (the credentials its installer signs with) the
moment the rollout's bundle value is put (a hook on moto's backend, in this process), while the
rollout is still installing; the secret is deleted when its rollout ends.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.secretsmanager.models import SecretsManagerBackend

from cert_rollout.localcloud.cloud import LocalCloud
from cert_rollout.localcloud.nodes import LocalNode
from cert_rollout.localcloud.scenario import ScenarioRunner

from .conftest import explain, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

HEALTH = "events/eventbridge/health-renewal-completed.json"
STAGED = "cert-rollout/staged/"


def _read(cloud: LocalCloud, node: LocalNode, name: str) -> str:
    client = boto3.client("secretsmanager", region_name=cloud.region, endpoint_url=cloud.endpoint,
                          aws_access_key_id=node.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=node.env["AWS_SECRET_ACCESS_KEY"],
                          aws_session_token=node.env["AWS_SESSION_TOKEN"],
                          config=Config(retries={"max_attempts": 1}))
    try:
        client.get_secret_value(SecretId=name)
        return "read"
    except ClientError as e:
        return str(e.response["Error"]["Code"])


def test_a_node_reads_only_the_bundle_of_its_own_certificate_and_none_remains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    nodes: dict[str, tuple[LocalCloud, LocalNode]] = {}
    add_node = LocalCloud.add_node

    def recording_add_node(self: LocalCloud, instance_id: str, *args: Any, **kwargs: Any) -> LocalNode:
        node = add_node(self, instance_id, *args, **kwargs)
        nodes[instance_id] = (self, node)
        return node

    monkeypatch.setattr(LocalCloud, "add_node", recording_add_node)
    reads: dict[tuple[str, str], str] = {}  # (staged secret name, instance id) -> read / error code
    readers: list[threading.Thread] = []
    put_value = SecretsManagerBackend.put_secret_value

    def try_every_node(name: str) -> None:
        for instance_id, (cloud, node) in list(nodes.items()):
            reads[(name, instance_id)] = _read(cloud, node, name)

    def recording_put_value(self: SecretsManagerBackend, secret_id: str, *args: Any, **kwargs: Any) -> Any:
        answer = put_value(self, secret_id, *args, **kwargs)
        if secret_id.startswith(STAGED):  # the value is there, under its policy: every node tries now
            reader = threading.Thread(target=try_every_node, args=(secret_id,), daemon=True)
            readers.append(reader)
            reader.start()
        return answer

    monkeypatch.setattr(SecretsManagerBackend, "put_secret_value", recording_put_value)

    def after(runner: ScenarioRunner, report: dict[str, Any]) -> dict[str, Any]:
        assert runner.cloud is not None
        for reader in readers:
            reader.join(timeout=30)
        sm = runner.cloud.client("secretsmanager")
        listed = [s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [STAGED]}])["SecretList"]]
        return {"left": [n for n in listed if n.startswith(STAGED)],
                "after": {(name, iid): _read(cloud, node, name) for name, iid in reads
                          for cloud, node in [nodes[iid]]}}

    report, data = run_scenario({
        "name": "staged-bundle-scope",
        "certificates": {"a": {"domain": "a.internal.example", "key_algorithm": "EC_prime256v1"},
                         "b": {"domain": "b.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [{"id": "a-1", "certificate": "a"}, {"id": "b-1", "certificate": "b"}],
        "steps": [{"renew": "a"}, {"event": HEALTH, "certificate": "a"},
                  {"renew": "b"}, {"event": HEALTH, "certificate": "b"}]}, while_running=after)
    for entry in report["events"]:
        assert (entry["status"], entry["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), explain(entry)

    node_of = {tid: t["instance_id"] for tid, t in data["targets"].items()}
    assert node_of["a-1"] != node_of["b-1"]
    cert_id = {c: arn.rsplit("/", 1)[-1] for c, arn in data["certificate_arns"].items()}
    staged = {c: [name for name, _ in reads if name.startswith(f"{STAGED}{cert_id[c]}/")] for c in ("a", "b")}
    assert all(len(set(names)) == 1 for names in staged.values()), staged
    a_bundle, b_bundle = staged["a"][0], staged["b"][0]
    # while the rollouts ran: each node read its own certificate's bundle and was refused the other's
    assert reads[(a_bundle, node_of["a-1"])] == "read"
    assert reads[(b_bundle, node_of["b-1"])] == "read"
    assert reads[(b_bundle, node_of["a-1"])] == "AccessDeniedException"
    assert reads[(a_bundle, node_of["b-1"])] == "AccessDeniedException"
    # after the rollouts: nothing staged remains, so no node reads any bundle
    assert data["while_running"]["left"] == []
    assert set(data["while_running"]["after"].values()) <= {"ResourceNotFoundException", "AccessDeniedException"}, \
        data["while_running"]["after"]
