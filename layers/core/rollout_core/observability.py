"""Logger, Tracer and Metrics, created once per process (Powertools).

The tracer never captures responses or errors' payloads (capture_response=False on every
decorated function): responses may be large and must never carry key material anyway.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
