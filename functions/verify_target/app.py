"""VerifyTarget: TLS handshakes with SNI; would a client accept what the target serves (logic/verify.py)?
(A verifyFrom-node target: judged on its node's evidence, $.installCommand.served, with no handshake from here.)"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoInventory
from rollout_core.adapters.tls import SocketTlsProbe
from rollout_core.contracts import VerifyInput, VerifyResult
from rollout_core.logic.verify import verify_target
from rollout_core.observability import logger, tracer
from rollout_core.settings import VerifySettings, load_settings

SETTINGS = load_settings(VerifySettings)
INVENTORY = DynamoInventory(SETTINGS.inventory_table)
PROBE = SocketTlsProbe()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """VerifyInput in, VerifyResult out ($.verify)."""
    r = VerifyInput.model_validate(event)
    result: VerifyResult = verify_target(r.certificateArn, r.targetId, r.expectedSerial, r.since, r.trustAnchor,
                                         settings=SETTINGS, now=datetime.now(UTC), inventory=INVENTORY, probe=PROBE,
                                         node_evidence=r.served)
    logger.info("verification", extra={"target_id": r.targetId, "state": result.state,
                                       "served_serial": result.servedSerial, "reason": result.reason,
                                       "chain_length": result.chainLength})
    return result.model_dump(mode="json")
