"""Named errors for AWS API failures, so that the state machine's Retry and Catch can tell
transient from permanent by name (Step Functions matches a Lambda error on its errorType,
which is the exception's class name).

Transient (retried with backoff and jitter by statemachine/rollout.asl.json):
  AwsThrottled            ThrottlingException, Throttling, TooManyRequestsException,
                          RequestLimitExceeded, ProvisionedThroughputExceededException
  AwsRequestInProgress    ACM RequestInProgressException (the certificate is being renewed or
                          exported; ACM API reference, ExportCertificate "Errors")
  AwsServiceUnavailable   InternalServerError, InternalFailure, ServiceUnavailable, HTTP 5xx
Permanent: AwsPermanentError (carries the error code; AccessDenied, ResourceNotFound, ...).
"""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "ThrottledException",
})
IN_PROGRESS_CODES = frozenset({"RequestInProgressException"})
UNAVAILABLE_CODES = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable",
                               "InternalServerException", "InternalServiceError"})


class AwsError(Exception):
    """Base of the named AWS errors; ``code`` is AWS's error code, ``operation`` the API call."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.operation = operation
        self.code = code


class AwsThrottled(AwsError):
    """Transient: AWS throttled the call."""


class AwsRequestInProgress(AwsError):
    """Transient: ACM is still working on the certificate (RequestInProgressException)."""


class AwsServiceUnavailable(AwsError):
    """Transient: a 5xx or a connection failure to the AWS endpoint."""


class AwsPermanentError(AwsError):
    """Permanent: retrying the same call will not help (access denied, not found, invalid)."""


def named_aws_error(error: Exception, operation: str) -> AwsError:
    """Map a botocore exception to one of the named errors above.

    Args:
        error: a botocore ClientError, EndpointConnectionError or ReadTimeoutError.
        operation: the API operation name, e.g. "ExportCertificate" (for the message).
    Returns: the named error to raise (``raise named_aws_error(e, op) from e``).
    """
    if isinstance(error, (EndpointConnectionError, ReadTimeoutError)):
        return AwsServiceUnavailable(operation, type(error).__name__, str(error))
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "Unknown"))
        message = str(error.response.get("Error", {}).get("Message", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES:
            return AwsThrottled(operation, code, message)
        if code in IN_PROGRESS_CODES:
            return AwsRequestInProgress(operation, code, message)
        if code in UNAVAILABLE_CODES or status >= 500:
            return AwsServiceUnavailable(operation, code, message)
        return AwsPermanentError(operation, code, message)
    return AwsPermanentError(operation, type(error).__name__, str(error))


def error_code(error: Exception) -> str | None:
    """AWS's error code of a ClientError (or of a named AwsError), else None."""
    if isinstance(error, AwsError):
        return error.code
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code"))
    return None
