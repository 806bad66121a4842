"""The local cloud deploys template.yaml itself: what the template says is what runs."""

import json

import pytest
from samtranslator.yaml_helper import yaml_parse

from cert_rollout.localcloud.cloud import PROJECT_ROOT, LocalCloud

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud() as c:
        yield c


def test_every_function_of_the_template_is_deployed_with_its_environment(cloud):
    template = yaml_parse((PROJECT_ROOT / "template.yaml").read_text())
    functions = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]
    assert sorted(s.logical_id for s in cloud.deployment.functions.values()) == sorted(functions)
    export = cloud.deployment.function_by_logical_id("ExportCertificateFunction")
    assert export.environment["KMS_KEY_ID"] == cloud.outputs["KeyMaterialKeyArn"]
    assert export.environment["INVENTORY_TABLE"] == cloud.outputs["InventoryTableName"]  # from Globals
    assert export.timeout == template["Globals"]["Function"]["Timeout"]


def test_state_machine_definition_has_every_substitution_resolved(cloud):
    sfn = cloud.client("stepfunctions")
    definition = sfn.describe_state_machine(stateMachineArn=cloud.state_machine_arn)["definition"]
    assert "${" not in definition
    assert cloud.deployment.function_by_logical_id("NotifyFunction").arn in definition


def test_rules_route_with_the_templates_own_patterns(cloud):
    template = yaml_parse((PROJECT_ROOT / "template.yaml").read_text())
    events = dict(template["Resources"]["RolloutStateMachine"]["Properties"]["Events"])
    callback = template["Resources"]["CommandCallbackFunction"]["Properties"]["Events"]["CommandStatusChange"]
    callback["Properties"]["Pattern"]["detail"]["document-name"] = [cloud.outputs["InstallBundleDocumentName"]]
    events["CommandStatusChange"] = callback
    abnormal = template["Resources"]["NotifyAbnormalEndFunction"]["Properties"]["Events"]["ExecutionAbnormalEnd"]
    abnormal["Properties"]["Pattern"]["detail"]["stateMachineArn"] = [cloud.state_machine_arn]
    events["ExecutionAbnormalEnd"] = abnormal
    deployed = sorted(json.dumps(r["pattern"], sort_keys=True) for r in cloud.deployment.rules.values())
    assert deployed == sorted(json.dumps(e["Properties"]["Pattern"], sort_keys=True) for e in events.values())
    foreign = {"version": "0", "id": "1", "detail-type": "EC2 Instance State-change Notification",
               "source": "aws.ec2", "account": cloud.account_id, "time": "2026-11-30T00:00:00Z",
               "region": cloud.region, "resources": [], "detail": {}}
    assert cloud.deliver_event(foreign) == []


def test_handler_exception_comes_back_as_lambdas_error_payload(cloud):
    payload, error = cloud.runtime.invoke(cloud.function_name("VerifyTargetFunction"), b'{"targetId": "x"}')
    assert error == "Unhandled"
    body = json.loads(payload)
    assert body["errorType"] == "ValidationError" and "certificateArn" in body["errorMessage"]
    logs = cloud.function_logs()[f"/aws/lambda/{cloud.function_name('VerifyTargetFunction')}"]
    assert any(line.startswith("REPORT RequestId") for line in logs)


def test_send_command_to_unknown_node_is_refused_like_ssm(cloud):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        cloud.client("ssm").send_command(DocumentName=cloud.outputs["InstallBundleDocumentName"],
                                         InstanceIds=["mi-0123456789abcdef0"], Parameters={"Action": ["install"]})
    assert e.value.response["Error"]["Code"] == "InvalidInstanceId"


def test_passphrase_with_forbidden_character_is_refused_like_acm(cloud):
    from botocore.exceptions import ClientError

    arn = cloud.private_ca().request_certificate("t.internal.example", [], "EC_prime256v1")
    with pytest.raises(ClientError):
        cloud.client("acm").export_certificate(CertificateArn=arn, Passphrase=b"abc$defg")
    answer = cloud.client("acm").export_certificate(CertificateArn=arn, Passphrase=b"abcdefgh")
    assert "ENCRYPTED PRIVATE KEY" in answer["PrivateKey"]


def test_callback_event_that_keeps_failing_lands_in_the_alarmed_dead_letter_queue(cloud):
    """CommandCallback is invoked asynchronously: after Lambda's two retries the event goes to its
    DeadLetterQueue (template.yaml), the one AsyncDeadLetterQueue it shares with NotifyAbnormalEnd,
    whose depth alarm notifies the operations topic."""
    import time

    spec = cloud.deployment.function_by_logical_id("CommandCallbackFunction")
    queue_arn = cloud.deployment.dead_letter_targets[spec.name]
    assert queue_arn == cloud.deployment.attributes["AsyncDeadLetterQueue"]["Arn"]
    abnormal_end = cloud.deployment.function_by_logical_id("NotifyAbnormalEndFunction")
    assert cloud.deployment.dead_letter_targets[abnormal_end.name] == queue_arn
    sqs = cloud.client("sqs")
    url = cloud.deployment.physical["AsyncDeadLetterQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["KmsMasterKeyId"] == cloud.deployment.physical["OperationsKey"]
    alarm, = cloud.client("cloudwatch").describe_alarms(
        AlarmNames=[cloud.deployment.physical["AsyncDeadLetterAlarm"]])["MetricAlarms"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_arn.rsplit(":", 1)[-1]}]
    assert alarm["AlarmActions"] == [cloud.deployment.physical["OperationsAlarmTopic"]]

    event = {"version": "0", "id": "dlq-1", "detail-type": "EC2 Command Invocation Status-change Notification",
             "source": "aws.ssm", "account": cloud.account_id, "time": "2026-11-30T00:00:00Z",
             "region": cloud.region, "resources": [], "detail": {"status": "Success"}}  # no command id: refused
    cloud.invoke_async(spec.arn, event)
    deadline = time.monotonic() + 60
    messages: list = []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"],
                                       WaitTimeSeconds=1).get("Messages", [])
    assert messages, "the failed event did not reach the dead-letter queue"
    assert json.loads(messages[0]["Body"])["id"] == "dlq-1"
    assert messages[0]["MessageAttributes"]["ErrorMessage"]["StringValue"]


def test_state_machine_log_group_is_encrypted_with_the_operations_key(cloud):
    name = cloud.deployment.physical["RolloutStateMachineLogs"]
    group, = [g for g in cloud.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
              if g["logGroupName"] == name]
    assert group["kmsKeyId"] == cloud.deployment.attributes["OperationsKey"]["Arn"]
